"""The training data stream: seeded shuffles, whole epochs, flips, process slices, resume."""

import numpy as np

from dcgan_jax import input_pipeline

SIZE = 8


class IndexedImages:
  """Image i carries i in its top-left pixel and a left-to-right ramp that shows flips."""

  def __init__(self, num_images: int):
    self._num_images = num_images

  def __len__(self) -> int:
    return self._num_images

  def __getitem__(self, index: int) -> np.ndarray:
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:, :, 2] = np.arange(SIZE) * 10
    image[0, 0, :2] = divmod(index, 256)
    return image


def _decode(batch: np.ndarray) -> tuple[list[int], list[bool]]:
  flipped = batch[:, 0, 0, 2] > batch[:, 0, -1, 2]
  corner = np.where(flipped[:, None], batch[:, 0, -1, :2], batch[:, 0, 0, :2]).astype(int)
  return list(corner[:, 0] * 256 + corner[:, 1]), list(flipped)


def _stream(num_batches, *, num_images=96, batch_size=16, seed=0, flip=True, process_index=0,
            process_count=1):
  ds = input_pipeline.train_dataset(
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
    np.testing.assert_array_equal(np.concatenate([halves[0][step], halves[1][step]]), whole[step])


def test_iterator_resumes_exactly_from_saved_state():
  ds = input_pipeline.train_dataset(IndexedImages(96), seed=0, global_batch_size=16,
                                    random_flip_images=True)
  data_config = type("DataConfig", (), {"num_threads": 2, "prefetch": 2, "num_workers": 0})
  iterator = input_pipeline.to_iterator(ds, data_config)
  for _ in range(5):
    next(iterator)
  saved = iterator.get_state()
  expected = [next(iterator) for _ in range(4)]
  resumed = input_pipeline.to_iterator(ds, data_config)
  resumed.set_state(saved)
  for want in expected:
    np.testing.assert_array_equal(next(resumed), want)


def test_steps_for_epochs_rounds_up():
  assert input_pipeline.steps_for_epochs(1.0, 96, 16) == 6
  assert input_pipeline.steps_for_epochs(2.5, 100, 16) == 16
