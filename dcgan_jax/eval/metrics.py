"""FID, KID and Inception Score from Inception features, in float64 numpy.

Definitions and defaults follow pytorch-fid (FID) and torch-fidelity (KID, IS), so the
numbers are comparable with papers that used them; the features come from
`dcgan_jax.inception`.
"""

from typing import NamedTuple

import numpy as np


class Estimate(NamedTuple):
  """A metric averaged over subsets, with the spread across them."""

  mean: float
  std: float


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(N, D) features -> mean (D,) and unbiased covariance (D, D), float64."""
  features = np.asarray(features, np.float64)
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  eigenvalues, eigenvectors = np.linalg.eigh(matrix)
  return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """Fréchet distance |mu1 - mu2|^2 + tr(s1 + s2 - 2 (s1 s2)^(1/2)) between two Gaussians.

  tr((s1 s2)^(1/2)) is taken as the sum of the square roots of the eigenvalues of the
  symmetric PSD matrix s1^(1/2) s2 s1^(1/2), which has the same spectrum as s1 s2. Two
  symmetric eigendecompositions stay real and accurate where a general matrix square
  root of the non-symmetric s1 s2 goes complex or needs a diagonal offset (covariances
  from fewer samples than dimensions are singular).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  sqrt_sigma1 = _psd_sqrt(sigma1)
  product = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
  eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
  # Eigenvalues within rounding of zero are zero: their square roots (~1e-8 of the scale
  # each) would otherwise add up to a visible bias for singular covariances.
  rounding = eigenvalues.max(initial=0.0) * len(eigenvalues) * np.finfo(np.float64).eps
  trace_sqrt_product = np.sqrt(eigenvalues[eigenvalues > rounding]).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
  """FID between two sets of (N, 2048) pool3 features."""
  return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 of two equal-size samples under k(a, b) = (a.b / d + 1)^3.

  The within-set sums leave out the diagonal k(x_i, x_i); the cross term keeps every pair.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  m, d = x.shape
  k_xx = (x @ x.T / d + 1.0) ** 3
  k_yy = (y @ y.T / d + 1.0) ** 3
  k_xy = (x @ y.T / d + 1.0) ** 3
  within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, *,
                              subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> Estimate:
  """KID: `polynomial_mmd2` over random subsets (drawn without replacement), mean and std.

  `subset_size` is clipped to the smaller set, so small evaluations still give a value.
  """
  size = min(subset_size, len(features1), len(features2))
  rng = np.random.default_rng(seed)
  values = [polynomial_mmd2(features1[rng.choice(len(features1), size, replace=False)],
                            features2[rng.choice(len(features2), size, replace=False)])
            for _ in range(subsets)]
  return Estimate(float(np.mean(values)), float(np.std(values)))


def inception_score(logits: np.ndarray, *, splits: int = 10) -> Estimate:
  """IS = exp(E_x KL(p(y|x) || p(y))) over the softmax of the 1008 logits, per split.

  Pass the logits without the classifier bias ('logits_unbiased'), as torch-fidelity and
  the original TensorFlow code do. Splits are consecutive, sized as torch-fidelity cuts
  them (at most one split per sample); samples are taken in the given order.
  """
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  n = len(logits)
  splits = min(splits, n)  # fewer samples than splits: one sample per split, none empty
  scores = []
  for i in range(splits):
    log_p_split = log_p[i * n // splits:(i + 1) * n // splits]
    p_split = np.exp(log_p_split)
    # log of the mean of p over the split, in log space: a class whose probabilities all
    # underflow to 0 keeps a finite log, and contributes 0 * finite to the KL.
    top = log_p_split.max(axis=0)
    log_marginal = top + np.log(np.exp(log_p_split - top).mean(axis=0))
    kl = (p_split * (log_p_split - log_marginal)).sum(axis=1)
    scores.append(np.exp(kl.mean()))
  return Estimate(float(np.mean(scores)), float(np.std(scores)))
