"""grain pipelines that feed batches of labelled faces to the train loop.

A batch is a dict: "image" uint8 (B, H, W, 3) and "label" int8 (B, A). Every process
builds the same globally shuffled stream and keeps its own slice of each global batch,
so a run sees the same global batches on 1 host or N hosts, and the iterator's state
(saved with each checkpoint) resumes the stream exactly.
"""

import ctypes
import functools
import json
import math
import signal
import sys

import grain
import ml_collections
import numpy as np

from dcgan_jax.data.sources import Example, Source, read_batch


def draw_flips(indices: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Pairs a global batch of indices with a left-right flip decision for each."""
  return indices, rng.random(len(indices)) < 0.5


def no_flips(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  return indices, np.zeros(len(indices), bool)


def read_local_batch(source: Source, local_slice: slice,
                     indices_and_flips: tuple[np.ndarray, np.ndarray]) -> Example:
  """This process's part of a global batch, its images flipped as drawn."""
  indices, flips = (a[local_slice] for a in indices_and_flips)
  batch = read_batch(source, indices)
  images = batch["image"]
  images[flips] = images[flips][:, :, ::-1]
  return batch


def train_dataset(source: Source, *, seed: int, global_batch_size: int,
                  random_flip_images: bool, process_index: int = 0,
                  process_count: int = 1) -> grain.MapDataset:
  """Infinite dataset of this process's batches (B_local = global / process count).

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
        grain.MultiprocessingOptions(num_workers=data_config.num_workers),
        worker_init_fn=_end_with_parent)
  return iter(iter_ds)


def stack_batches(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Batches of the same shapes as one (P, B, ...) batch."""
  return {key: np.stack([batch[key] for batch in batches]) for key in batches[0]}


class MemberBatches:
  """A population's data: one iterator per member (its solo run's), their batches stacked
  (P, B, ...). Checkpointed by grain's handler like one iterator: its state is the
  members' states, as JSON bytes."""

  def __init__(self, iterators: list[grain.DatasetIterator]):
    self._iterators = iterators

  def __iter__(self) -> "MemberBatches":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return stack_batches([next(iterator) for iterator in self._iterators])

  def get_state(self) -> bytes:
    return json.dumps({"members": [iterator.get_state() for iterator in self._iterators]},
                      sort_keys=True).encode()

  def set_state(self, state: bytes) -> None:
    members = json.loads(state)["members"]
    if len(members) != len(self._iterators):
      raise ValueError(f"the checkpoint holds the data positions of {len(members)} members, "
                       f"not {len(self._iterators)}")
    for iterator, member_state in zip(self._iterators, members):
      iterator.set_state(member_state)

  def start_prefetch(self) -> None:
    for iterator in self._iterators:
      iterator.start_prefetch()

  def close(self) -> None:
    for iterator in self._iterators:
      if hasattr(iterator, "close"):
        iterator.close()


_PR_SET_PDEATHSIG = 1  # prctl's option, from <linux/prctl.h>


def _end_with_parent(worker_index: int, worker_count: int) -> None:
  """In each loader worker: the kernel kills it when the process that started it ends,
  even by SIGKILL, so that no worker outlives a killed run (Linux; elsewhere, a no-op)."""
  del worker_index, worker_count
  if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def create_train_iterator(config: ml_collections.ConfigDict, source: Source,
                          process_index: int = 0, process_count: int = 1
                          ) -> grain.DatasetIterator:
  ds = train_dataset(source, seed=config.seed, global_batch_size=config.train.batch_size,
                     random_flip_images=config.data.random_flip,
                     process_index=process_index, process_count=process_count)
  return to_iterator(ds, config.data)


def steps_for_epochs(num_epochs: float, num_images: int, global_batch_size: int) -> int:
  return math.ceil(num_epochs * num_images / global_batch_size)
