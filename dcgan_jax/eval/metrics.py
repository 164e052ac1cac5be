"""FID, KID and Inception Score from Inception features, in float64 numpy.

Definitions and defaults follow pytorch-fid (FID) and torch-fidelity (KID, IS), so the
numbers are comparable with papers that used them; the features come from
`dcgan_jax.inception`.
"""

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dcgan_jax import files

NAMES = ("swd", "fid", "kid", "is")  # every score an evaluation can compute
INCEPTION_NAMES = ("fid", "kid", "is")  # those that need the Inception weights


def check_names(names: list[str] | tuple[str, ...], flag: str = "--metrics") -> tuple[str, ...]:
  """`names` as a tuple if each is one of NAMES; else ValueError in one line."""
  if not names or set(names) - set(NAMES):
    raise ValueError(f"{flag} {','.join(names)}: expected some of {','.join(NAMES)}")
  return tuple(names)


class Estimate(NamedTuple):
  """A metric averaged over subsets, with the spread across them."""

  mean: float
  std: float


class Moments(NamedTuple):
  """What the mean and covariance of a set of feature rows are computed from, float64."""

  count: int
  mean: np.ndarray  # (D,)
  centred_m2: np.ndarray  # (D, D): the sum of (x - mean)(x - mean)^T over the rows


def feature_moments(features_ND: np.ndarray) -> Moments:
  """The moments of one batch of (N, D) features."""
  features_ND = np.asarray(features_ND, np.float64)
  if features_ND.ndim != 2:
    raise ValueError(f"features should be (N, D), got shape {features_ND.shape}")
  mean = features_ND.mean(axis=0) if len(features_ND) else np.zeros(features_ND.shape[1])
  centred = features_ND - mean
  return Moments(len(features_ND), mean, centred.T @ centred)


def merge_moments(a: Moments, b: Moments) -> Moments:
  """The moments of two sets together (Chan, Golub and LeVeque's pairwise update).

  Only centred quantities are added, so features sharing a large offset lose nothing to
  the cancellation of E[x x^T] - E[x] E[x]^T; a large set is fed batch by batch and
  never held at once.
  """
  if a.mean.shape != b.mean.shape:
    raise ValueError(f"cannot merge moments of {len(a.mean)}-d and {len(b.mean)}-d features")
  if not a.count or not b.count:
    return a if b.count == 0 else b
  count = a.count + b.count
  delta = b.mean - a.mean
  return Moments(count, a.mean + delta * (b.count / count),
                 a.centred_m2 + b.centred_m2 + np.outer(delta, delta * (a.count * b.count / count)))


def mean_and_covariance(moments: Moments) -> tuple[np.ndarray, np.ndarray]:
  """Mean (D,) and unbiased covariance (D, D), as np.mean and np.cov give them."""
  if moments.count < 2:
    raise ValueError(f"a covariance needs at least 2 feature vectors, got {moments.count}")
  return moments.mean, moments.centred_m2 / (moments.count - 1)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(N, D) features -> mean (D,) and unbiased covariance (D, D), float64."""
  return mean_and_covariance(feature_moments(features))


# Relative to sigma's largest entry (symmetry) and eigenvalue (definiteness): statistics
# saved in float32 round each entry at ~1e-7, and a singular covariance's zero eigenvalues
# then spread by up to ~sqrt(D) times that.
_STATISTICS_TOLERANCE = 1e-4


def check_statistics(mu: np.ndarray, sigma: np.ndarray, source: str,
                     dim: int | None = None) -> None:
  """Raises a one-line ValueError naming `source` unless mu (D,) and sigma (D, D) can be
  a mean and covariance of D-d features (D = `dim` when given): finite, sigma symmetric
  and positive semi-definite within rounding."""
  try:
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
  except (TypeError, ValueError):
    raise ValueError(f"{source}: mu and sigma should be arrays of numbers") from None
  if mu.ndim != 1:
    raise ValueError(f"{source}: mu should be a vector (D,), got shape {mu.shape}")
  if sigma.shape != (len(mu), len(mu)):
    raise ValueError(f"{source}: sigma should be ({len(mu)}, {len(mu)}) to match mu, "
                     f"got shape {sigma.shape}")
  if dim is not None and len(mu) != dim:
    raise ValueError(f"{source}: statistics of {len(mu)}-d features, expected {dim}-d")
  for name, value in (("mu", mu), ("sigma", sigma)):
    if not np.isfinite(value).all():
      raise ValueError(f"{source}: {name} holds {np.sum(~np.isfinite(value))} NaN or "
                       f"infinite values")
  scale = np.abs(sigma).max(initial=0.0)
  asymmetry = np.abs(sigma - sigma.T).max(initial=0.0)
  if asymmetry > _STATISTICS_TOLERANCE * scale:
    raise ValueError(f"{source}: sigma is not symmetric (entries differ from their "
                     f"transposes by up to {asymmetry:.3g}, its largest is {scale:.3g})")
  eigenvalues = np.linalg.eigvalsh((sigma + sigma.T) / 2)
  if len(eigenvalues) and eigenvalues[0] < -_STATISTICS_TOLERANCE * max(eigenvalues[-1], 0.0):
    raise ValueError(f"{source}: sigma is not a covariance: its smallest eigenvalue is "
                     f"{eigenvalues[0]:.3g} (largest {eigenvalues[-1]:.3g}), expected >= 0")


def load_statistics(path: Path, dim: int, remedy: str = "") -> tuple[np.ndarray, np.ndarray]:
  """mu and sigma from an .npz in pytorch-fid's layout, checked (`check_statistics`);
  a one-line ValueError naming the file otherwise, ending with `remedy` if it cannot be
  read at all."""
  try:
    with np.load(path) as saved:
      mu, sigma = saved["mu"], saved["sigma"]
  except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as error:
    raise ValueError(f"{path}: not readable as saved statistics ({error}){remedy}") from None
  check_statistics(mu, sigma, str(path), dim=dim)
  return mu, sigma


def save_statistics(path: Path, mu: np.ndarray, sigma: np.ndarray) -> None:
  """pytorch-fid's .npz layout: `mu` and `sigma`, written whole or not at all."""
  files.write_npz(path, mu=mu, sigma=sigma)


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
