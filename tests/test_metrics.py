"""FID, KID and IS give the numbers of the reference implementations on the same features.

References: pytorch-fid's `calculate_frechet_distance` (scipy's general matrix square
root) and torch-fidelity's KID and IS, imported from the packages themselves.
"""

import numpy as np
import pytest

from dcgan_jax.eval import metrics
from tests.test_inception import import_torch_reference


def _features(seed: int, n: int = 300, d: int = 64, shift: float = 0.0) -> np.ndarray:
  """Correlated, non-negative features, like pooled ReLU activations."""
  rng = np.random.default_rng(seed)
  mixing = rng.standard_normal((d, d)) / np.sqrt(d)
  return np.maximum(rng.standard_normal((n, d)) @ mixing + shift, 0.0)


# pytorch-fid passes scipy's sqrtm an argument that scipy has deprecated.
@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")
def test_fid_matches_pytorch_fid():
  fid_score = import_torch_reference("pytorch_fid.fid_score")
  features1, features2 = _features(0), _features(1, shift=0.3)
  mu1, sigma1 = metrics.feature_statistics(features1)
  mu2, sigma2 = metrics.feature_statistics(features2)
  np.testing.assert_allclose(sigma1, np.cov(features1, rowvar=False))
  want = fid_score.calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
  assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(want, rel=1e-6)
  assert metrics.fid_from_features(features1, features2) == pytest.approx(want, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_even_with_fewer_samples_than_dimensions():
  features = _features(2, n=20, d=64)
  scale = np.trace(np.cov(features, rowvar=False))
  assert abs(metrics.fid_from_features(features, features)) < 1e-9 * scale
  assert metrics.fid_from_features(features, _features(3, n=20, d=64)) > 1e-3 * scale


def test_kid_matches_torch_fidelity():
  torch = import_torch_reference("torch")
  kid = import_torch_reference("torch_fidelity.metric_kid")
  features1, features2 = _features(4, n=200), _features(5, n=200, shift=0.2)
  # With subsets as large as the sets, every subset is the whole set in another order,
  # so the value does not depend on how either side draws its subsets.
  want = kid.kid_features_to_metric(torch.from_numpy(features1), torch.from_numpy(features2),
                                    kid_subsets=3, kid_subset_size=200, verbose=False)
  ours = metrics.kernel_inception_distance(features1, features2, subsets=3, subset_size=200)
  assert ours.mean == pytest.approx(want[kid.KEY_METRIC_KID_MEAN], rel=1e-6)
  assert ours.std == pytest.approx(0.0, abs=1e-9 * abs(ours.mean))


def test_kid_subsets_clip_to_the_sample_count_and_follow_the_seed():
  same1, same2, other = _features(6, n=150), _features(7, n=150), _features(8, n=150, shift=0.5)
  near = metrics.kernel_inception_distance(same1, same2, subsets=20, seed=1)
  far = metrics.kernel_inception_distance(same1, other, subsets=20, seed=1)
  assert near == metrics.kernel_inception_distance(same1, same2, subsets=20, seed=1)
  assert near.mean == pytest.approx(metrics.polynomial_mmd2(same1, same2), rel=1e-6)
  assert abs(near.mean) < 0.05 * far.mean
  subsampled = metrics.kernel_inception_distance(same1, other, subsets=20, subset_size=50, seed=1)
  assert subsampled.std > 0
  assert subsampled != metrics.kernel_inception_distance(same1, other, subsets=20,
                                                         subset_size=50, seed=2)


def test_inception_score_matches_torch_fidelity():
  torch = import_torch_reference("torch")
  isc = import_torch_reference("torch_fidelity.metric_isc")
  # 253 samples do not split evenly in 10: the split boundaries are compared too.
  logits = 3.0 * np.random.default_rng(9).standard_normal((253, 1008))
  want = isc.isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=False)
  ours = metrics.inception_score(logits, splits=10)
  assert ours.mean == pytest.approx(want[isc.KEY_METRIC_ISC_MEAN], rel=1e-6)
  assert ours.std == pytest.approx(want[isc.KEY_METRIC_ISC_STD], rel=1e-6)


def test_inception_score_counts_confidently_and_evenly_predicted_classes():
  classes = 8
  confident = 100.0 * np.eye(1008)[np.arange(80) % classes]
  assert metrics.inception_score(confident).mean == pytest.approx(classes, rel=1e-6)
  assert metrics.inception_score(np.zeros((80, 1008))) == (pytest.approx(1.0), pytest.approx(0.0))


def test_inception_score_stays_finite_when_probabilities_underflow():
  """Four confident predictions of four different classes: IS is exactly 4 (each KL is
  log 4), though every other class's probability underflows to 0."""
  logits = np.zeros((4, 1008))
  logits[np.arange(4), np.arange(4)] = 1000.0
  score = metrics.inception_score(logits, splits=1)
  assert score.mean == pytest.approx(4.0) and score.std == 0.0


def test_inception_score_of_fewer_samples_than_splits_has_one_split_per_sample():
  logits = np.random.default_rng(0).normal(size=(3, 1008))
  score = metrics.inception_score(logits, splits=10)
  assert score == metrics.inception_score(logits, splits=3)
  assert np.isfinite(score.mean) and np.isfinite(score.std)
