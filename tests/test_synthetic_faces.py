"""The built-in synthetic faces: deterministic per (seed, index), varied, face-like."""

import collections

import grain
import numpy as np
import pytest

from dcgan_jax import synthetic_faces
from dcgan_jax.synthetic_faces import SyntheticFaces, render_face


def _faces(seed: int, count: int, resolution: int) -> np.ndarray:
  return np.stack([render_face(seed, i, resolution) for i in range(count)]).astype(np.float32)


def _mean_abs_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[i, j]: the mean absolute pixel difference between a[i] and b[j]."""
  a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
  return np.abs(a[:, None, :] - b[None, :, :]).mean(-1)


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_image_depends_only_on_seed_and_index(resolution):
  a = SyntheticFaces(seed=3, num_images=20, resolution=resolution)
  b = SyntheticFaces(seed=3, num_images=20, resolution=resolution)
  backwards = [b[i] for i in reversed(range(20))][::-1]
  for i in range(20):
    assert a[i].dtype == np.uint8 and a[i].shape == (resolution, resolution, 3)
    np.testing.assert_array_equal(a[i], backwards[i])
    np.testing.assert_array_equal(a[i], render_face(3, i, resolution))


@pytest.mark.parametrize("resolution", [8, 23, 100, 256])
def test_any_resolution(resolution):
  face = render_face(0, 7, resolution)
  assert face.dtype == np.uint8 and face.shape == (resolution, resolution, 3)
  assert face.std() > 10


def test_a_face_is_the_same_face_at_every_resolution():
  def halve(images):
    n, r = images.shape[:2]
    return images.reshape(n, r // 2, 2, r // 2, 2, 3).mean((2, 4))

  differences = _mean_abs_differences(halve(_faces(0, 30, 64)), _faces(0, 30, 32))
  assert differences.diagonal().max() < 3
  assert differences[~np.eye(30, dtype=bool)].min() > 15


def test_images_are_all_different_and_a_seed_is_a_different_set():
  faces = _faces(0, 100, 32)
  differences = _mean_abs_differences(faces, faces)[~np.eye(100, dtype=bool)]
  assert differences.min() > 3 and differences.mean() > 30
  assert _mean_abs_differences(_faces(1, 100, 32), faces).min() > 3


def test_statistics_look_like_faces_on_backgrounds():
  faces = _faces(0, 200, 64)
  assert 60 < faces.mean() < 200
  assert np.all(faces.reshape(200, -1).std(-1) > 15)
  # The face sits in the centre: its colour differs from the top corners' background.
  centre = faces[:, 24:40, 24:40].mean((1, 2))
  corners = np.concatenate([faces[:, :6, :6], faces[:, :6, -6:]], axis=1).mean((1, 2))
  assert np.abs(centre - corners).sum(-1).mean() > 60
  # Skin tones span light to dark: the centre's brightness varies widely across faces.
  brightness = centre.mean(-1)
  assert np.percentile(brightness, 90) - np.percentile(brightness, 10) > 60
  # Skin is warm (red above blue) whatever the background.
  assert np.mean(centre[:, 0] > centre[:, 2]) > 0.9


def test_every_style_expression_and_accessory_appears():
  faces = [synthetic_faces.sample_face(np.random.default_rng((0, i))) for i in range(200)]
  styles = collections.Counter(face.hair_style for face in faces)
  expressions = collections.Counter(face.expression for face in faces)
  assert set(styles) == set(synthetic_faces.HAIR_STYLES) and min(styles.values()) > 5
  assert set(expressions) == set(synthetic_faces.EXPRESSIONS) and min(expressions.values()) > 5
  assert 10 < sum(face.glasses is not None for face in faces) < 190
  assert 10 < sum(face.has_ears for face in faces) < 190
  plain = [np.array_equal(face.background_top, face.background_bottom) for face in faces]
  assert 10 < sum(plain) < 190


def test_source_bounds_and_grain_batching():
  faces = SyntheticFaces(seed=0, num_images=10, resolution=16)
  assert len(faces) == 10
  assert repr(faces) == "SyntheticFaces(seed=0, num_images=10, resolution=16)"
  for out_of_range in (10, -1):
    with pytest.raises(IndexError):
      faces[out_of_range]
  batch = next(iter(grain.MapDataset.source(faces).batch(4)))
  assert batch.shape == (4, 16, 16, 3) and batch.dtype == np.uint8
  np.testing.assert_array_equal(batch[2], faces[2])
