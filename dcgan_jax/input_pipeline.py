"""grain pipelines that feed uint8 image batches to the train loop.

Every process builds the same globally shuffled stream and keeps its own slice of each
global batch, so a run sees the same global batches on 1 host or N hosts, and the
iterator's state (saved with each checkpoint) resumes the stream exactly.
"""

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


def random_flip(image_HWC: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Mirror left-right with probability 1/2."""
  return image_HWC[:, ::-1] if rng.random() < 0.5 else image_HWC


def train_dataset(source: ImageSource, *, seed: int, global_batch_size: int,
                  random_flip_images: bool, process_index: int = 0,
                  process_count: int = 1) -> grain.MapDataset:
  """Infinite dataset of this process's uint8 (B_local, H, W, 3) batches.

  Shuffled with a different order each epoch; batches may straddle epochs.
  """
  if global_batch_size % process_count:
    raise ValueError(f"train.batch_size {global_batch_size} must divide by the number of "
                     f"processes {process_count}")
  ds = grain.MapDataset.source(source).seed(seed).shuffle()
  if random_flip_images:
    ds = ds.random_map(random_flip)
  local_batch_size = global_batch_size // process_count
  # Consecutive local batches of the global stream form one global batch.
  return ds.repeat().batch(local_batch_size, drop_remainder=True)[process_index::process_count]


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
