"""The built-in synthetic faces: deterministic per (seed, index), varied, face-like."""

import grain
import numpy as np
import pytest

from dcgan_jax.synthetic_faces import SyntheticFaces, render_face


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_image_depends_only_on_seed_and_index(resolution):
  a = SyntheticFaces(seed=3, num_images=20, resolution=resolution)
  b = SyntheticFaces(seed=3, num_images=20, resolution=resolution)
  backwards = [b[i] for i in reversed(range(20))][::-1]
  for i in range(20):
    assert a[i].dtype == np.uint8 and a[i].shape == (resolution, resolution, 3)
    np.testing.assert_array_equal(a[i], backwards[i])
    np.testing.assert_array_equal(a[i], render_face(3, i, resolution))


def test_images_are_all_different_and_a_seed_is_a_different_set():
  faces = np.stack([render_face(0, i, 32) for i in range(100)]).astype(np.float32)
  flat = faces.reshape(100, -1)
  distances = np.abs(flat[:, None, :] - flat[None, :, :]).mean(-1)
  off_diagonal = distances[~np.eye(100, dtype=bool)]
  assert off_diagonal.min() > 3 and off_diagonal.mean() > 30
  other_seed = np.stack([render_face(1, i, 32) for i in range(100)]).astype(np.float32)
  assert np.abs(other_seed - faces).mean() > 30


def test_statistics_look_like_faces_on_backgrounds():
  faces = np.stack([render_face(0, i, 64) for i in range(200)]).astype(np.float32)
  assert 60 < faces.mean() < 200
  assert np.all(faces.reshape(200, -1).std(-1) > 15)
  # The face sits in the centre: its colour differs from the corners'.
  centre = faces[:, 24:40, 24:40].mean((1, 2))
  corners = faces[:, :6, :6].mean((1, 2))
  assert np.abs(centre - corners).sum(-1).mean() > 40
  # Skin tones span light to dark: the centre's brightness varies widely across faces.
  brightness = centre.mean(-1)
  assert np.percentile(brightness, 90) - np.percentile(brightness, 10) > 60
  # Faces are warm in the centre (skin: red >= blue) far more often than not.
  assert np.mean(centre[:, 0] >= centre[:, 2]) > 0.8


def test_source_bounds_and_grain_batching():
  faces = SyntheticFaces(seed=0, num_images=10, resolution=16)
  assert len(faces) == 10 and "num_images=10" in repr(faces)
  with pytest.raises(IndexError):
    faces[10]
  batch = next(iter(grain.MapDataset.source(faces).batch(4)))
  assert batch.shape == (4, 16, 16, 3) and batch.dtype == np.uint8
  np.testing.assert_array_equal(batch[2], faces[2])
