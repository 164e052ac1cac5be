"""Scoring any two sets of images against each other, as `experiments.fid` does.

A set is a folder of images (searched recursively), a prepared shards directory, or an
`.npz` of Inception statistics in pytorch-fid's layout (`mu`, `sigma`), so statistics
move between the two tools. A folder's images are prepared exactly as training data is
(`celeba_prepare.crop_and_resize`: centre square crop of `crop` pixels, Lanczos resize to
`resolution`), so a raw CelebA folder scores as the shards prepared from it would; a
shards directory sets both for the other set. FID, KID and IS use pytorch-fid's
Inception (each prepared image resized to 299 inside the network); SWD compares the
prepared images. Memory: the prepared uint8 images, the pool3 features KID needs, and
SWD's bounded sketches; FID's statistics are merged batch by batch.
"""

import dataclasses
import functools
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dcgan_jax.data import celeba_prepare, sources
from dcgan_jax.eval import inception, metrics, swd

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# A file declaring more pixels is skipped before it is decoded (8 bytes a pixel or more
# while decoding): a small PNG can declare a picture of many gigabytes.
MAX_IMAGE_PIXELS = 40_000_000
_INCEPTION_BATCH = 100


@dataclasses.dataclass(frozen=True)
class Preparation:
  """How a folder's images become a set: as `prepare_celeba --crop --resolution`."""

  crop: int
  resolution: int


@dataclasses.dataclass
class ImageSet:
  """Prepared uint8 (N, R, R, 3) images, or only their Inception statistics."""

  path: Path
  images: np.ndarray | None = None
  mu: np.ndarray | None = None
  sigma: np.ndarray | None = None
  skipped: list[str] = dataclasses.field(default_factory=list)

  @property
  def size(self) -> int | None:
    return None if self.images is None else len(self.images)


def is_shards(path: Path) -> bool:
  return (Path(path) / "metadata.json").is_file()


def shards_preparation(path: Path) -> Preparation:
  """The crop and resolution a prepared shards directory was written with."""
  from dcgan_jax.data import shards  # pylint: disable=g-import-not-at-top  (grain)
  metadata = shards.load_metadata(path)
  return Preparation(crop=metadata["crop"], resolution=metadata["resolution"])


def _image_files(folder: Path) -> list[Path]:
  return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def prepared_image(path: Path, preparation: Preparation) -> np.ndarray:
  """One file as training data is prepared; ValueError (naming the file) if it cannot be."""
  try:
    with Image.open(path) as image:
      width, height = image.size
      if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"it declares {width}x{height} pixels, more than "
                         f"{MAX_IMAGE_PIXELS:,}")
      image.load()
      return celeba_prepare.crop_and_resize(celeba_prepare.to_rgb(image), preparation.crop,
                                            preparation.resolution)
  except (OSError, ValueError, Image.DecompressionBombError) as error:
    raise ValueError(f"{path}: {error}") from None


def load_image_set(path: str | Path, preparation: Preparation, *, split: str = "train",
                   num: int | None = None, seed: int = 0) -> ImageSet:
  """The set at `path`; with `num`, that many of its images, chosen by `seed`. Folder
  images that cannot be read, or declare too many pixels, are skipped (`skipped` lists
  each with the reason)."""
  path = Path(path)
  rng = np.random.default_rng(seed)
  if path.suffix == ".npz":
    mu, sigma = metrics.load_statistics(path, inception.POOL3_DIM)
    return ImageSet(path, mu=mu, sigma=sigma)
  if is_shards(path):
    if shards_preparation(path) != preparation:
      raise ValueError(f"{path} holds images prepared with {shards_preparation(path)}, but "
                       f"the other set needs {preparation}; pass matching --crop/--resolution")
    from dcgan_jax.data import shards  # pylint: disable=g-import-not-at-top
    source = shards.PreparedImages(path, split)
    indices = sources.sample_indices(len(source), num or len(source), rng)
    return ImageSet(path, images=sources.read_images(source, indices))
  if not path.is_dir():
    raise ValueError(f"{path} is neither a folder of images, a prepared shards directory nor "
                     f"an .npz of statistics")
  image_files = _image_files(path)
  if not image_files:
    raise ValueError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
  chosen = sources.sample_indices(len(image_files), num or len(image_files), rng)
  size = preparation.resolution
  images = np.zeros((len(chosen), size, size, 3), np.uint8)
  count, skipped = 0, []
  for i in chosen:
    try:
      images[count] = prepared_image(image_files[i], preparation)
      count += 1
    except ValueError as error:
      skipped.append(str(error))
  return ImageSet(path, images=images[:count], skipped=skipped)


def _inception_batches(variables: dict, images: np.ndarray):
  """Inception outputs of `images`, a batch at a time (no padding of a small set)."""
  batch_size = min(_INCEPTION_BATCH, len(images))
  for start in range(0, len(images), batch_size):
    yield inception.inception_features(variables, images[start:start + batch_size],
                                       batch_size=batch_size)


@dataclasses.dataclass(frozen=True)
class _InceptionSide:
  mu: np.ndarray
  sigma: np.ndarray
  pool3: np.ndarray | None  # for KID
  logits_unbiased: np.ndarray | None  # for IS


def _inception_side(image_set: ImageSet, variables: dict, *, keep_pool3: bool,
                    keep_logits: bool) -> _InceptionSide:
  """Statistics merged batch by batch; features kept only where a metric needs them all."""
  if image_set.images is None:
    return _InceptionSide(image_set.mu, image_set.sigma, None, None)
  moments, pool3, logits = [], [], []
  for outputs in _inception_batches(variables, image_set.images):
    moments.append(metrics.feature_moments(outputs["pool3"]))
    if keep_pool3:
      pool3.append(outputs["pool3"])
    if keep_logits:
      logits.append(outputs["logits_unbiased"])
  mu, sigma = metrics.mean_and_covariance(functools.reduce(metrics.merge_moments, moments))
  return _InceptionSide(mu, sigma, np.concatenate(pool3) if keep_pool3 else None,
                        np.concatenate(logits) if keep_logits else None)


def statistics(image_set: ImageSet, variables: dict) -> tuple[np.ndarray, np.ndarray]:
  """The set's Inception mean and covariance: computed, or as saved."""
  side = _inception_side(image_set, variables, keep_pool3=False, keep_logits=False)
  return side.mu, side.sigma


def score(set1: ImageSet, set2: ImageSet, variables: dict | None, *, seed: int = 0,
          wanted: tuple[str, ...] = metrics.NAMES) -> dict[str, float]:
  """The `wanted` metrics both sets allow: SWD when both have images; with Inception
  `variables` also FID, KID (both sets' images) and IS (set 1's)."""
  scores: dict[str, float] = {}
  both_images = set1.images is not None and set2.images is not None
  if "swd" in wanted and both_images:
    scores |= swd.as_scores(swd.sliced_wasserstein_distance(set1.images, set2.images, seed=seed))
  if variables is None or not set(wanted) & set(metrics.INCEPTION_NAMES):
    return scores
  kid = "kid" in wanted and both_images
  side1 = _inception_side(set1, variables, keep_pool3=kid, keep_logits="is" in wanted)
  side2 = _inception_side(set2, variables, keep_pool3=kid, keep_logits=False)
  if "fid" in wanted:
    scores["fid"] = metrics.frechet_distance(side1.mu, side1.sigma, side2.mu, side2.sigma)
  if kid:
    estimate = metrics.kernel_inception_distance(side1.pool3, side2.pool3, seed=seed)
    scores |= {"kid": estimate.mean, "kid_std": estimate.std}
  if side1.logits_unbiased is not None:
    inception_score = metrics.inception_score(side1.logits_unbiased)
    scores |= {"is": inception_score.mean, "is_std": inception_score.std}
  return scores


def report_skipped(image_set: ImageSet) -> None:
  """One line on stderr per skipped file."""
  for line in image_set.skipped:
    print(f"skipped {line}", file=sys.stderr)
