"""grain pipelines that feed uint8 image batches to the train loop.

Every process builds the same globally shuffled stream and keeps its own slice of each
global batch, so a run sees the same global batches on 1 host or N hosts, and the
iterator's state (saved with each checkpoint) resumes the stream exactly.
"""

import functools
import math
from typing import Protocol

import grain
import ml_collections
import numpy as np

from dcgan_jax import synthetic_faces


class ImageSource(Protocol):
  """Random access to uint8 (H, W, 3) images."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> np.ndarray: ...


def create_source(data_config: ml_collections.ConfigDict, seed: int) -> ImageSource:
  """The random-access image source named by `data.source`."""
  if data_config.source == "synthetic":
    return synthetic_faces.SyntheticFaces(
        seed=seed, num_images=data_config.num_images, resolution=data_config.resolution)
  if data_config.source == "celeba":
    from dcgan_jax import celeba  # pylint: disable=g-import-not-at-top  (array_record only when used)
    source = celeba.PreparedImages(data_config.dir, data_config.split)
    if source.resolution != data_config.resolution:
      raise ValueError(
          f"data.dir {data_config.dir} holds {source.resolution}px images but "
          f"data.resolution is {data_config.resolution}; prepare the data again with "
          f"--resolution {data_config.resolution} or change the config.")
    return source
  raise ValueError(f"data.source must be 'synthetic' or 'celeba', got {data_config.source!r}")


def draw_flips(indices: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Pairs a global batch of indices with a left-right flip decision for each."""
  return indices, rng.random(len(indices)) < 0.5


def no_flips(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  return indices, np.zeros(len(indices), bool)


def read_local_batch(source: ImageSource, local_slice: slice,
                     indices_and_flips: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
  """This process's uint8 (B_local, H, W, 3) part of a global batch, flipped as drawn."""
  indices, flips = (a[local_slice] for a in indices_and_flips)
  images = np.stack([source[int(i)] for i in indices])
  images[flips] = images[flips][:, :, ::-1]
  return images


def train_dataset(source: ImageSource, *, seed: int, global_batch_size: int,
                  random_flip_images: bool, process_index: int = 0,
                  process_count: int = 1) -> grain.MapDataset:
  """Infinite dataset of this process's uint8 (B_local, H, W, 3) batches.

  Shuffled with a different order each epoch; batches may straddle epochs. Indices and
  flips are drawn per global batch, so they do not depend on the process count, and
  each process then reads only its own part; working on whole batches keeps grain's
  per-element overhead off the hot path.
  """
  if global_batch_size % process_count:
    raise ValueError(f"train.batch_size {global_batch_size} must divide by the number of "
                     f"processes {process_count}")
  local_batch_size = global_batch_size // process_count
  local_slice = slice(process_index * local_batch_size, (process_index + 1) * local_batch_size)
  ds = (grain.MapDataset.range(len(source)).seed(seed).shuffle().repeat()
        .batch(global_batch_size, drop_remainder=True))
  ds = ds.random_map(draw_flips) if random_flip_images else ds.map(no_flips)
  return ds.map(functools.partial(read_local_batch, source, local_slice))


def to_iterator(ds: grain.MapDataset, data_config: ml_collections.ConfigDict
                ) -> grain.DatasetIterator:
  """Checkpointable iterator; batches are built in `data.num_workers` processes when > 0."""
  iter_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=data_config.num_threads,
                                                 prefetch_buffer_size=data_config.prefetch))
  if data_config.num_workers > 0:
    iter_ds = iter_ds.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=data_config.num_workers))
  return iter(iter_ds)


def create_train_iterator(config: ml_collections.ConfigDict, source: ImageSource,
                          process_index: int = 0, process_count: int = 1
                          ) -> grain.DatasetIterator:
  ds = train_dataset(source, seed=config.seed, global_batch_size=config.train.batch_size,
                     random_flip_images=config.data.random_flip,
                     process_index=process_index, process_count=process_count)
  return to_iterator(ds, config.data)


def steps_for_epochs(num_epochs: float, num_images: int, global_batch_size: int) -> int:
  return math.ceil(num_epochs * num_images / global_batch_size)
