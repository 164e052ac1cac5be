"""Scores generated faces against the run's own data: SWD always; FID, KID and IS when
pytorch-fid's Inception weights are available.

The real side is drawn once per evaluator: `num_samples` training images chosen with the
run's seed (for SWD and KID), and, for FID, the Inception statistics of the whole split
(or its first `reference_num_images` in a seeded order), cached on disk next to the
data and keyed by what they were computed from.
"""

import functools
import hashlib
import json
from pathlib import Path

import ml_collections
import numpy as np

from dcgan_jax import growth
from dcgan_jax.data import sources
from dcgan_jax.eval import inception, metrics, swd

_READ_CHUNK = 1000


def _seeded_indices(num_images: int, num: int, seed: int) -> np.ndarray:
  return sources.sample_indices(num_images, num, np.random.default_rng(seed))


def cache_dir(config: ml_collections.ConfigDict, workdir: Path) -> Path:
  """Reference statistics live next to the prepared shards data.dir names (shared by runs;
  in the cache for a source), else in the run."""
  return sources.prepared_dir(config.data) if config.data.source == "celeba" else workdir


def reference_cache_key(data_config: ml_collections.ConfigDict, seed: int,
                        reference_num_images: int, weights: Path) -> str:
  """What the reference statistics depend on, as a short hash: the data and the weights
  by their content, so other weights under the same file name are not mistaken for them."""
  identity = [*sources.data_identity(data_config, seed).values(), reference_num_images,
              inception.weights_sha256(weights)]
  return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def reference_statistics(source: sources.Source, variables: dict, cache_path: Path,
                         num_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Mean and covariance of pool3 over the real images, read from `cache_path` if there.

  The features are merged into float64 moments a chunk at a time, never all held. A
  cached file that does not hold a 2048-d mean and a covariance is a one-line error
  naming it rather than recomputed over: the cache is shared by runs, written whole
  (`metrics.save_statistics`), and keyed by content, so a bad one is a fault to see, not a race.
  """
  if cache_path.is_file():
    return metrics.load_statistics(cache_path, inception.POOL3_DIM,
                                   remedy="; delete it to compute them again")
  count = len(source) if num_images <= 0 else min(num_images, len(source))
  order = _seeded_indices(len(source), count, seed)
  moments = functools.reduce(metrics.merge_moments, (
      metrics.feature_moments(inception.inception_features(
          variables, sources.read_images(source, order[i:i + _READ_CHUNK]))["pool3"])
      for i in range(0, count, _READ_CHUNK)))
  mu, sigma = metrics.mean_and_covariance(moments)
  cache_path.parent.mkdir(parents=True, exist_ok=True)
  metrics.save_statistics(cache_path, mu, sigma)
  return mu, sigma


class Evaluator:
  """Call it with uint8 (num_samples, R, R, 3) generated images; returns flat metrics."""

  def __init__(self, config: ml_collections.ConfigDict, cache_dir: Path, *,
               num_samples: int, inception_weights: str | None = None,
               download_weights: bool = False, wanted: tuple[str, ...] = metrics.NAMES):
    self.source = sources.create_source(config.data, config.seed)
    indices = _seeded_indices(len(self.source), num_samples, config.seed)
    self.num_samples = len(indices)
    self.real_images = sources.read_images(self.source, indices)
    self.seed = config.seed
    self._swd_cache: tuple[swd.Plan, list[swd.Sketch]] | None = None
    self.wanted = metrics.check_names(wanted)
    weights, self.unavailable_reason = None, None
    if set(self.wanted) & set(metrics.INCEPTION_NAMES):
      weights, self.unavailable_reason = inception.find_or_download_inception_weights(
          inception_weights or None, download=download_weights)
    self.inception_variables = None if weights is None else inception.load_inception_params(weights)
    if self.inception_variables is not None and "fid" in self.wanted:
      reference_num_images = config.eval.reference_num_images
      key = reference_cache_key(config.data, config.seed, reference_num_images, weights)
      cache = cache_dir / f"inception_stats_{config.data.split}_{key}.npz"
      self.real_mu, self.real_sigma = reference_statistics(
          self.source, self.inception_variables, cache, reference_num_images, config.seed)
    if self.inception_variables is not None and "kid" in self.wanted:
      self.real_pool3 = inception.inception_features(self.inception_variables,
                                                     self.real_images)["pool3"]

  def prepare(self, resolution: int) -> None:
    """Does now what the first call at `resolution` would do once: sketch the real side."""
    if "swd" in self.wanted:
      self._swd_reference(resolution)

  def _swd_reference(self, resolution: int) -> tuple[swd.Plan, list[swd.Sketch]]:
    """The SWD plan and the real images' sketches at `resolution`, made once per
    resolution (one kept: a growing run only moves up)."""
    if self._swd_cache is None or self._swd_cache[0].resolutions[0] != resolution:
      # Below 16 px (a growing run's first stages): one level, patches that fit the image.
      plan = swd.make_plan(self.num_samples, resolution, seed=self.seed,
                           patch_size=min(7, resolution - 1),
                           min_resolution=min(swd.MIN_RESOLUTION, resolution))
      real_images = growth.box_filtered(self.real_images, resolution)
      self._swd_cache = plan, swd.sketch(real_images, plan)
    return self._swd_cache

  def __call__(self, fake_images: np.ndarray) -> dict[str, float]:
    """Scores at the generated images' resolution. Below the data's (a growing run's
    early stages) the real images are box-filtered to it and only SWD is computed, since
    FID's reference statistics are of full-resolution images."""
    if len(fake_images) != self.num_samples:
      raise ValueError(f"expected {self.num_samples} generated images, got {len(fake_images)}")
    resolution = fake_images.shape[1]
    scores = {}
    if "swd" in self.wanted:
      plan, real_sketches = self._swd_reference(resolution)
      scores |= swd.as_scores(swd.distance(real_sketches, swd.sketch(fake_images, plan), plan))
    if self.inception_variables is None or resolution != self.real_images.shape[1]:
      return scores
    features = inception.inception_features(self.inception_variables, fake_images)
    if "fid" in self.wanted:
      mu, sigma = metrics.feature_statistics(features["pool3"])
      scores["fid"] = metrics.frechet_distance(mu, sigma, self.real_mu, self.real_sigma)
    if "kid" in self.wanted:
      kid = metrics.kernel_inception_distance(self.real_pool3, features["pool3"], seed=self.seed)
      scores |= {"kid": kid.mean, "kid_std": kid.std}
    if "is" in self.wanted:
      inception_score = metrics.inception_score(features["logits_unbiased"])
      scores |= {"is": inception_score.mean, "is_std": inception_score.std}
    return scores


def selection_metric(scores: dict[str, float]) -> str:
  """The metric that picks the best checkpoint: FID where available, else SWD."""
  return "fid" if "fid" in scores else "swd"
