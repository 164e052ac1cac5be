"""The training data stream: seeded shuffles, whole epochs, flips, labels that stay with
their images, process slices, resume."""

import numpy as np

from dcgan_jax.data import pipeline, sources

SIZE = 8


class IndexedImages:
  """Image i carries i in its top-left pixel and a left-to-right ramp that shows flips;
  its label holds i's bits as +1/-1."""

  attribute_names = [f"bit{b}" for b in range(8)]

  def __init__(self, num_images: int):
    self._num_images = num_images

  def __len__(self) -> int:
    return self._num_images

  def __getitem__(self, index: int) -> sources.Example:
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:, :, 2] = np.arange(SIZE) * 10
    image[0, 0, :2] = divmod(index, 256)
    bits = (index >> np.arange(8)) & 1
    return {"image": image, "label": (2 * bits - 1).astype(np.int8)}


def _decode(batch: sources.Example) -> tuple[list[int], list[bool]]:
  """The index of each image, checked against its label, and whether it was flipped."""
  images = batch["image"]
  flipped = images[:, 0, 0, 2] > images[:, 0, -1, 2]
  corner = np.where(flipped[:, None], images[:, 0, -1, :2], images[:, 0, 0, :2]).astype(int)
  indices = corner[:, 0] * 256 + corner[:, 1]
  assert batch["label"].dtype == np.int8
  np.testing.assert_array_equal((batch["label"] > 0) @ (1 << np.arange(8)), indices % 256)
  return list(indices), list(flipped)


def _stream(num_batches, *, num_images=96, batch_size=16, seed=0, flip=True, process_index=0,
            process_count=1):
  ds = pipeline.train_dataset(
      IndexedImages(num_images), seed=seed, global_batch_size=batch_size,
      random_flip_images=flip, process_index=process_index, process_count=process_count)
  return [ds[i] for i in range(num_batches)]


def _indices(batches):
  return [i for b in batches for i in _decode(b)[0]]


def test_every_image_once_per_epoch_in_a_new_order_each_epoch():
  indices = _indices(_stream(12))  # two epochs of 96 images
  first, second = indices[:96], indices[96:]
  assert sorted(first) == sorted(second) == list(range(96))
  assert first != second and first != list(range(96))


def test_order_is_a_function_of_the_seed():
  assert _indices(_stream(6, seed=3)) == _indices(_stream(6, seed=3))
  assert _indices(_stream(6, seed=3)) != _indices(_stream(6, seed=4))


def test_flips_are_seeded_and_about_half():
  flips = [f for b in _stream(12) for f in _decode(b)[1]]
  assert 0.35 < np.mean(flips) < 0.65
  assert flips == [f for b in _stream(12) for f in _decode(b)[1]]
  assert not any(f for b in _stream(6, flip=False) for f in _decode(b)[1])


def test_processes_split_each_global_batch_between_them():
  whole = _stream(6)
  halves = [_stream(6, process_index=p, process_count=2) for p in range(2)]
  for step in range(6):
    for key in ("image", "label"):
      np.testing.assert_array_equal(
          np.concatenate([halves[0][step][key], halves[1][step][key]]), whole[step][key])


def test_iterator_resumes_exactly_from_saved_state():
  ds = pipeline.train_dataset(IndexedImages(96), seed=0, global_batch_size=16,
                              random_flip_images=True)
  data_config = type("DataConfig", (), {"num_threads": 2, "prefetch": 2, "num_workers": 0})
  iterator = pipeline.to_iterator(ds, data_config)
  for _ in range(5):
    next(iterator)
  saved = iterator.get_state()
  expected = [next(iterator) for _ in range(4)]
  resumed = pipeline.to_iterator(ds, data_config)
  resumed.set_state(saved)
  for want in expected:
    got = next(resumed)
    for key in ("image", "label"):
      np.testing.assert_array_equal(got[key], want[key])


def test_steps_for_epochs_rounds_up():
  assert pipeline.steps_for_epochs(1.0, 96, 16) == 6
  assert pipeline.steps_for_epochs(2.5, 100, 16) == 16


def test_read_batch_stacks_examples_and_sample_indices_is_sorted_and_distinct():
  batch = sources.read_batch(IndexedImages(40), np.array([3, 7, 3]))
  assert batch["image"].shape == (3, SIZE, SIZE, 3) and batch["label"].shape == (3, 8)
  assert _decode(batch)[0] == [3, 7, 3]
  rng = np.random.default_rng(0)
  chosen = sources.sample_indices(100, 30, rng)
  assert len(set(chosen)) == 30 and list(chosen) == sorted(chosen) and chosen.max() < 100
  np.testing.assert_array_equal(sources.sample_indices(10, 30, rng), np.arange(10))
