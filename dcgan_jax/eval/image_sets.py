"""Scoring any two sets of images against each other, as `experiments.fid` does.

A set is a folder of images (searched recursively), a prepared shards directory, or an
`.npz` of Inception statistics in pytorch-fid's layout (`mu`, `sigma`), so statistics
move between the two tools. FID, KID and IS use pytorch-fid's Inception (each image
resized to 299 inside the network, as pytorch-fid does); SWD compares the sets at one
square power-of-two size, the largest both allow, each image resized to it.
"""

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from dcgan_jax import files
from dcgan_jax.data import celeba_prepare, sources
from dcgan_jax.eval import inception, metrics, swd

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MIN_SWD_RESOLUTION = 16


@dataclasses.dataclass
class ImageSet:
  """Images (uint8 HWC, sizes may differ), or only their Inception statistics."""

  path: Path
  images: list[np.ndarray] | None = None
  mu: np.ndarray | None = None
  sigma: np.ndarray | None = None


def _image_files(folder: Path) -> list[Path]:
  return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path) -> np.ndarray:
  try:
    with Image.open(path) as image:
      return np.asarray(celeba_prepare.to_rgb(image))
  except (OSError, ValueError) as error:
    raise ValueError(f"{path} cannot be read as an image: {error}") from None


def load_image_set(path: str | Path, *, split: str = "train", num: int | None = None,
                   seed: int = 0) -> ImageSet:
  """The set at `path`; with `num`, that many of its images, chosen by `seed`."""
  path = Path(path)
  rng = np.random.default_rng(seed)
  if path.suffix == ".npz":
    try:
      with np.load(path) as stats:
        return ImageSet(path, mu=stats["mu"], sigma=stats["sigma"])
    except (OSError, KeyError, ValueError) as error:
      raise ValueError(f"{path} is not an .npz of Inception statistics with mu and sigma: "
                       f"{error}") from None
  if (path / "metadata.json").exists():
    # grain's ArrayRecord reader is imported only when shards are read.
    from dcgan_jax.data import shards  # pylint: disable=g-import-not-at-top
    source = shards.PreparedImages(path, split)
    indices = sources.sample_indices(len(source), num or len(source), rng)
    return ImageSet(path, images=list(sources.read_images(source, indices)))
  if not path.is_dir():
    raise ValueError(f"{path} is neither a folder of images, a prepared shards directory nor "
                     f"an .npz of statistics")
  image_files = _image_files(path)
  if not image_files:
    raise ValueError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
  chosen = sources.sample_indices(len(image_files), num or len(image_files), rng)
  return ImageSet(path, images=[_read_image(image_files[i]) for i in chosen])


def inception_outputs(variables: dict, images: list[np.ndarray]) -> dict[str, np.ndarray]:
  """`inception.inception_features` of images of any sizes, in their order: each size is
  run as its own batch, since the network resizes a batch to 299 at once."""
  by_shape: dict[tuple[int, ...], list[int]] = {}
  for i, image in enumerate(images):
    by_shape.setdefault(image.shape, []).append(i)
  outputs: dict[str, np.ndarray] = {}
  for indices in by_shape.values():
    # Batches of at most 100, but no padding of a small set up to 100.
    features = inception.inception_features(variables, np.stack([images[i] for i in indices]),
                                            batch_size=min(100, len(indices)))
    for key, value in features.items():
      outputs.setdefault(key, np.zeros((len(images), value.shape[1]), np.float32))[indices] = value
  return outputs


def statistics(image_set: ImageSet, variables: dict) -> tuple[np.ndarray, np.ndarray]:
  """The set's Inception mean and covariance: computed, or as saved."""
  if image_set.mu is not None:
    return image_set.mu, image_set.sigma
  return metrics.feature_statistics(inception_outputs(variables, image_set.images)["pool3"])


def _square(image: np.ndarray, size: int) -> np.ndarray:
  if image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def swd_resolution(*image_sets: ImageSet) -> int:
  """The largest power of two no larger than any image's shorter side."""
  smallest = min(min(image.shape[:2]) for s in image_sets for image in s.images)
  if smallest < MIN_SWD_RESOLUTION:
    raise ValueError(f"SWD needs images of at least {MIN_SWD_RESOLUTION} px, got {smallest}")
  return 2 ** int(np.log2(smallest))


def score(set1: ImageSet, set2: ImageSet, variables: dict | None, *, seed: int = 0
          ) -> dict[str, float]:
  """SWD when both sets have images (the same number of each); with Inception `variables`
  also FID, KID (both sets' images) and IS (set 1's)."""
  scores: dict[str, float] = {}
  if set1.images is not None and set2.images is not None:
    count = min(len(set1.images), len(set2.images))
    size = swd_resolution(set1, set2)
    a, b = (np.stack([_square(image, size) for image in s.images[:count]]) for s in (set1, set2))
    result = swd.sliced_wasserstein_distance(a, b, seed=seed)
    scores["swd"] = result["mean"]
    scores |= {f"swd_{r}px": v for r, v in zip(result["resolutions"], result["per_level"])}
  if variables is None:
    return scores
  outputs = [None if s.images is None else inception_outputs(variables, s.images)
             for s in (set1, set2)]
  stats = [(s.mu, s.sigma) if out is None else metrics.feature_statistics(out["pool3"])
           for s, out in zip((set1, set2), outputs)]
  scores["fid"] = metrics.frechet_distance(*stats[0], *stats[1])
  if outputs[0] is not None and outputs[1] is not None:
    kid = metrics.kernel_inception_distance(outputs[0]["pool3"], outputs[1]["pool3"], seed=seed)
    scores |= {"kid": kid.mean, "kid_std": kid.std}
  if outputs[0] is not None:
    inception_score = metrics.inception_score(outputs[0]["logits_unbiased"])
    scores |= {"is": inception_score.mean, "is_std": inception_score.std}
  return scores


def save_statistics(path: Path, mu: np.ndarray, sigma: np.ndarray) -> None:
  """pytorch-fid's .npz layout: `mu` and `sigma`."""
  files.write_npz(path, mu=mu, sigma=sigma)
