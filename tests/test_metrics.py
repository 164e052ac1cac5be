"""FID, KID and IS give the numbers of the reference implementations on the same features.

References: pytorch-fid's `calculate_frechet_distance` (scipy's general matrix square
root) and torch-fidelity's KID and IS, imported from the packages themselves.
"""

from collections.abc import Iterator

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



def _offset_feature_batches(seed: int, sizes: list[int], d: int) -> Iterator[np.ndarray]:
  """float32 features around 1e3 with correlated unit-scale spread: the offset is what
  float32 accumulation, or E[x x^T] - E[x] E[x]^T, loses the spread to."""
  rng = np.random.default_rng(seed)
  loadings = rng.standard_normal((8, d)).astype(np.float32)
  offset = (1e3 + rng.standard_normal(d)).astype(np.float32)
  for size in sizes:
    shared = rng.standard_normal((size, 8), np.float32) @ loadings
    yield offset + shared + rng.standard_normal((size, d), np.float32)


@pytest.fixture(scope="module")
def streamed_statistics() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """50,000 2048-d vectors in uneven batches (one empty, one of a single vector), merged
  one batch at a time, and the same vectors' float64 mean and covariance from sums about
  a fixed shift (the textbook shifted-data formula, independent of the pairwise merge):
  (streamed, reference)."""
  d, sizes = 2048, [1, 4999, 0, 7000, 3, 13000, 997, 24000]
  moments = metrics.feature_moments(np.zeros((0, d)))
  shift, sum_1, sum_2, n = None, np.zeros(d), np.zeros((d, d)), 0
  for batch in _offset_feature_batches(0, sizes, d):
    moments = metrics.merge_moments(moments, metrics.feature_moments(batch))
    batch = batch.astype(np.float64)
    shift = batch[0] if shift is None else shift
    shifted = batch - shift
    sum_1, sum_2, n = sum_1 + shifted.sum(axis=0), sum_2 + shifted.T @ shifted, n + len(batch)
  assert n == 50_000
  reference = shift + sum_1 / n, (sum_2 - np.outer(sum_1, sum_1) / n) / (n - 1)
  return metrics.mean_and_covariance(moments), reference


def test_streamed_statistics_of_50000_offset_vectors_match_float64_numpy(streamed_statistics):
  (mu, sigma), (want_mu, want_sigma) = streamed_statistics
  mu_error = np.abs(mu - want_mu).max() / np.abs(want_mu).max()
  sigma_error = np.abs(sigma - want_sigma).max() / np.abs(want_sigma).max()
  print(f"relative error: mu {mu_error:.2g}, sigma {sigma_error:.2g}")
  assert mu_error < 1e-12 and sigma_error < 1e-10


@pytest.mark.slow  # two 2048-d eigendecompositions per distance
def test_fid_from_streamed_statistics_matches_float64_numpy(streamed_statistics):
  (mu, sigma), (want_mu, want_sigma) = streamed_statistics
  other_mu, other_sigma = want_mu + 0.1, np.diag(np.diag(want_sigma))
  want = metrics.frechet_distance(want_mu, want_sigma, other_mu, other_sigma)
  assert metrics.frechet_distance(mu, sigma, other_mu, other_sigma) == pytest.approx(want, rel=1e-9)


def _valid_statistics(d: int = 16) -> tuple[np.ndarray, np.ndarray]:
  return metrics.feature_statistics(_features(10, n=8, d=d))  # singular: 8 samples, 16-d


def _with_nan(sigma: np.ndarray) -> np.ndarray:
  sigma = sigma.copy()
  sigma[2, 3] = np.nan
  return sigma


def _asymmetric(sigma: np.ndarray) -> np.ndarray:
  sigma = sigma.copy()
  sigma[0, 1] += 0.01 * np.abs(sigma).max()
  return sigma


_MU, _SIGMA = _valid_statistics()


@pytest.mark.parametrize("mu, sigma, dim, error", [
    (np.zeros(1), np.eye(1), 2048, "statistics of 1-d features, expected 2048-d"),
    (np.float64(0.5), np.eye(1), None, r"mu should be a vector \(D,\), got shape \(\)"),
    (_MU, -np.eye(16), None, "sigma is not a covariance: its smallest eigenvalue is -1 "
                             r"\(largest -1\), expected >= 0"),
    (_MU, _with_nan(_SIGMA), 16, "sigma holds 1 NaN or infinite values"),
    (_MU, _asymmetric(_SIGMA), 16, r"sigma is not symmetric \(entries differ from their "
                                   r"transposes by up to .*, its largest is .*\)"),
    (_MU, _SIGMA[:15, :15], None, r"sigma should be \(16, 16\) to match mu, got shape \(15, 15\)"),
    (np.array(["a", "b"]), _SIGMA, None, "mu and sigma should be arrays of numbers"),
])
def test_damaged_statistics_are_one_line_errors_naming_their_file(mu, sigma, dim, error):
  with pytest.raises(ValueError, match=rf"^stats/b\.npz: {error}$"):
    metrics.check_statistics(mu, sigma, "stats/b.npz", dim=dim)


def test_statistics_of_real_features_pass_even_rounded_to_float32():
  """A singular covariance (fewer samples than dimensions) saved in float32: its zero
  eigenvalues come back as rounding noise of either sign, which is no damage."""
  mu, sigma = metrics.feature_statistics(_features(11, n=100, d=512, shift=1e3))
  metrics.check_statistics(mu, sigma, "stats.npz", dim=512)
  metrics.check_statistics(mu.astype(np.float32), sigma.astype(np.float32), "stats.npz")
  assert np.linalg.eigvalsh(sigma.astype(np.float32).astype(np.float64))[0] < 0


def test_a_covariance_of_one_vector_is_an_error_not_nan():
  with pytest.raises(ValueError, match="^a covariance needs at least 2 feature vectors, got 1$"):
    metrics.feature_statistics(np.ones((1, 4)))
  with pytest.raises(ValueError, match="^cannot merge moments of 4-d and 3-d features$"):
    metrics.merge_moments(metrics.feature_moments(np.ones((2, 4))),
                          metrics.feature_moments(np.ones((2, 3))))


def _reference_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 as averages over index pairs: i != j within a set, all pairs across."""
  x, y = x.astype(np.float64), y.astype(np.float64)
  d = x.shape[1]
  off_diagonal = ~np.eye(len(x), dtype=bool)
  kernel = lambda a, b: (np.einsum("id,jd->ij", a, b) / d + 1.0) ** 3
  return float(kernel(x, x)[off_diagonal].mean() + kernel(y, y)[off_diagonal].mean()
               - 2.0 * kernel(x, y).mean())


@pytest.mark.slow
def test_kid_of_50000_offset_vectors_matches_float64_pair_averages():
  """KID's subsets of two 50,000-vector float32 sets, against the same subsets scored by
  averaging the kernel over index pairs in float64."""
  x = np.concatenate(list(_offset_feature_batches(1, [25_000, 25_000], 2048))) - 1e3
  y = 1.1 * np.concatenate(list(_offset_feature_batches(2, [50_000], 2048))) - 1.1e3
  estimate = metrics.kernel_inception_distance(x, y, subsets=4, subset_size=1000, seed=3)
  rng = np.random.default_rng(3)
  values = [_reference_mmd2(x[rng.choice(len(x), 1000, replace=False)],
                            y[rng.choice(len(y), 1000, replace=False)]) for _ in range(4)]
  assert estimate.mean == pytest.approx(np.mean(values), rel=1e-3)
  assert estimate.std == pytest.approx(np.std(values), rel=1e-3)
  assert estimate.mean > 10 * estimate.std  # the sets differ: not a comparison of noise
