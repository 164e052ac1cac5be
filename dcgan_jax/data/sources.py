"""Random-access sources of labelled faces, and reading batches of examples from them.

An example is a dict: "image", uint8 (H, W, 3), and "label", int8 (A,), the attributes
(+1 present, -1 absent) named by the source's `attribute_names` (A may be 0).
"""

import dataclasses
from typing import Protocol

import ml_collections
import numpy as np

from dcgan_jax.data import synthetic_faces

Example = dict[str, np.ndarray]


class Source(Protocol):
  """Random access to examples; picklable, for grain's worker processes."""

  attribute_names: list[str]

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> Example: ...


def create_source(data_config: ml_collections.ConfigDict, seed: int) -> Source:
  """The source named by `data.source`."""
  if data_config.source == "synthetic":
    return synthetic_faces.SyntheticFaces(
        seed=seed, num_images=data_config.num_images, resolution=data_config.resolution)
  if data_config.source == "celeba":
    # grain's ArrayRecord reader is imported only when shards are read.
    from dcgan_jax.data import shards  # pylint: disable=g-import-not-at-top
    source = shards.PreparedImages(data_config.dir, data_config.split)
    if source.resolution < data_config.resolution:
      raise ValueError(
          f"data.dir {data_config.dir} holds {source.resolution}px images but "
          f"data.resolution is {data_config.resolution}; prepare the data again with "
          f"--resolution {data_config.resolution} or change the config.")
    if source.resolution > data_config.resolution:
      return Downscaled(source, source.resolution // data_config.resolution)
    return source
  raise ValueError(f"data.source must be 'synthetic' or 'celeba', got {data_config.source!r}")


@dataclasses.dataclass(frozen=True)
class Downscaled:
  """A source's images made `factor` times smaller, each pixel the mean of a factor x
  factor block (both resolutions are powers of two): larger prepared faces train a
  smaller model, a `:tiny` config for one, without preparing them again."""

  source: Source
  factor: int

  @property
  def attribute_names(self) -> list[str]:
    return self.source.attribute_names

  @property
  def resolution(self) -> int:
    return self.source.resolution // self.factor

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> Example:
    example = self.source[index]
    height, width, channels = example["image"].shape
    blocks = example["image"].reshape(height // self.factor, self.factor,
                                      width // self.factor, self.factor, channels)
    # Halves round up, as PIL's Image.reduce rounds them.
    image = np.floor(blocks.mean(axis=(1, 3), dtype=np.float32) + 0.5).astype(np.uint8)
    return {**example, "image": image}


def data_identity(data_config: ml_collections.ConfigDict, seed: int) -> dict[str, object]:
  """What the images a config reads are, wherever they lie: prepared shards by their
  source's fingerprint, crop, split and the resolution read; synthetic faces by what makes
  them. The same data moved to another directory keeps its identity."""
  if data_config.source == "celeba":
    from dcgan_jax.data import shards  # pylint: disable=g-import-not-at-top
    metadata = shards.load_metadata(data_config.dir)
    return {"source_fingerprint": metadata["source_fingerprint"], "crop": metadata["crop"],
            "resolution": data_config.resolution, "split": data_config.split}
  return {"source": data_config.source, "num_images": data_config.num_images,
          "resolution": data_config.resolution, "seed": seed}


def read_batch(source: Source, indices: np.ndarray) -> Example:
  """The examples at `indices`, stacked: "image" (N, H, W, 3), "label" (N, A)."""
  examples = [source[int(i)] for i in indices]
  return {key: np.stack([example[key] for example in examples]) for key in ("image", "label")}


def read_images(source: Source, indices: np.ndarray) -> np.ndarray:
  """uint8 (N, H, W, 3): the images alone at `indices`."""
  return read_batch(source, indices)["image"]


def sample_indices(num_images: int, num: int, rng: np.random.Generator) -> np.ndarray:
  """`num` distinct indices below `num_images`, sorted; all of them when `num` is as large."""
  if num >= num_images:
    return np.arange(num_images)
  return np.sort(rng.choice(num_images, num, replace=False))
