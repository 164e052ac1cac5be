"""The built-in synthetic faces: deterministic per (seed, index), varied, face-like, and
labelled with CelebA attributes that describe what is painted."""

import collections
import dataclasses

import grain
import numpy as np
import pytest

from dcgan_jax.data import synthetic_faces
from dcgan_jax.data.celeba_prepare import CELEBA_ATTRIBUTE_NAMES
from dcgan_jax.data.synthetic_faces import (
    FaceParameters, SyntheticFaces, face_at, face_attributes, paint_face, render_face)

HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")


def _faces(seed: int, count: int, resolution: int) -> np.ndarray:
  return np.stack([render_face(seed, i, resolution) for i in range(count)]).astype(np.float32)


def _mean_abs_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[i, j]: the mean absolute pixel difference between a[i] and b[j]."""
  a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
  return np.abs(a[:, None, :] - b[None, :, :]).mean(-1)


def _labelled(seed: int, count: int) -> tuple[list[FaceParameters], dict[str, np.ndarray]]:
  """The first `count` faces of a set, and for each attribute which of them have it."""
  faces = [face_at(seed, i) for i in range(count)]
  labels = np.stack([face_attributes(face) for face in faces])
  return faces, {name: labels[:, k] == 1
                 for k, name in enumerate(synthetic_faces.ATTRIBUTE_NAMES)}


def _pixel(position: float, resolution: int) -> int:
  """The row or column of the pixel at an image coordinate in [-1, 1]."""
  return int((position + 1) / 2 * resolution)


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_example_depends_only_on_seed_and_index(resolution):
  a = SyntheticFaces(seed=3, num_images=20, resolution=resolution)
  b = SyntheticFaces(seed=3, num_images=20, resolution=resolution)
  other_resolution = SyntheticFaces(seed=3, num_images=20, resolution=80 - resolution)
  backwards = [b[i] for i in reversed(range(20))][::-1]
  for i in range(20):
    example = a[i]
    assert example["image"].dtype == np.uint8
    assert example["image"].shape == (resolution, resolution, 3)
    np.testing.assert_array_equal(example["image"], backwards[i]["image"])
    np.testing.assert_array_equal(example["image"], render_face(3, i, resolution))
    np.testing.assert_array_equal(example["label"], backwards[i]["label"])
    np.testing.assert_array_equal(example["label"], other_resolution[i]["label"])


def test_labels_are_celeba_attributes_stored_as_celeba_stores_them():
  faces = SyntheticFaces(seed=0, num_images=50, resolution=16)
  assert set(faces.attribute_names) == {
      "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Gray_Hair",
      "Mouth_Slightly_Open", "Pale_Skin", "Smiling"}
  assert faces.attribute_names == [name for name in CELEBA_ATTRIBUTE_NAMES
                                   if name in faces.attribute_names]
  labels = np.stack([faces[i]["label"] for i in range(50)])
  assert labels.dtype == np.int8 and labels.shape == (50, len(faces.attribute_names))
  assert set(np.unique(labels)) == {-1, 1}


def test_every_attribute_is_present_about_as_often_as_drawn():
  _, present = _labelled(seed=0, count=500)
  expected = {"Bald": 0.1, "Bangs": 0.25, "Eyeglasses": 0.25, "Mouth_Slightly_Open": 0.2,
              "Smiling": 0.5, "Pale_Skin": 1 / 7, "Black_Hair": 0.9 / 7, "Gray_Hair": 0.9 / 7,
              "Brown_Hair": 1.8 / 7, "Blond_Hair": 1.8 / 7}
  assert set(expected) == set(present)
  for name, fraction in expected.items():
    assert abs(present[name].mean() - fraction) < 0.07, name
  # One hair colour at most, none on a bald head; one style; one expression.
  hair_colours = sum(present[name].astype(int) for name in HAIR_COLOURS)
  assert hair_colours.max() == 1 and not hair_colours[present["Bald"]].any()
  assert not np.any(present["Bald"] & present["Bangs"])
  assert not np.any(present["Smiling"] & present["Mouth_Slightly_Open"])


@pytest.mark.parametrize("name, change, present_when_unchanged", [
    ("Eyeglasses", {"glasses": None}, False),
    ("Bald", {"hair_style": "bald"}, True),
    ("Bangs", {"hair_style": "fringe"}, True),
    ("Smiling", {"expression": "smile"}, True),
    ("Mouth_Slightly_Open", {"expression": "open"}, True),
])
def test_labels_say_what_is_painted(name, change, present_when_unchanged):
  """A face has the attribute exactly when painting it with the attribute forced on changes
  no pixel (with glasses: when taking them off changes some)."""
  faces, present = _labelled(seed=1, count=200)
  assert 0 < present[name].sum() < 200
  unchanged = np.array([
      np.array_equal(paint_face(dataclasses.replace(face, **change), 32), paint_face(face, 32))
      for face in faces])
  np.testing.assert_array_equal(unchanged, present[name] == present_when_unchanged)


def test_hair_colour_labels_match_the_hair_pixels():
  faces, present = _labelled(seed=2, count=300)
  # High on the crown, where hair (of every style but bald) covers the head fully.
  hair = np.stack([
      np.median(paint_face(face, 64)[
          _pixel(face.centre_y - 0.75 * face.radius_y, 64) + np.arange(-1, 2)[:, None],
          _pixel(face.centre_x, 64) + np.arange(-1, 2)].reshape(-1, 3).astype(np.float32), 0)
      for face in faces])
  red, green, blue = hair.T
  brightness, saturation = hair.mean(-1), hair.max(-1) - hair.min(-1)
  for name in HAIR_COLOURS:
    assert present[name].sum() > 10, name
  assert np.all(brightness[present["Black_Hair"]] < 40)
  brown = present["Brown_Hair"]
  assert np.all((20 < brightness[brown]) & (brightness[brown] < 110) & (red[brown] > blue[brown]))
  blond = present["Blond_Hair"]
  # Golden on the whole; platinum alone can come out a little cool.
  assert np.all(brightness[blond] > 130) and np.mean(red[blond] - blue[blond]) > 30
  gray = present["Gray_Hair"]
  assert np.all((saturation[gray] < 50) & (120 < brightness[gray]) & (brightness[gray] < 200))
  assert (brightness[present["Black_Hair"]].mean() < brightness[brown].mean()
          < brightness[blond].mean())
  # Auburn, which CelebA has no name for, is the only hair left without a colour.
  unnamed = ~present["Bald"] & ~np.any([present[name] for name in HAIR_COLOURS], axis=0)
  assert unnamed.sum() > 10
  assert np.all(red[unnamed] - green[unnamed] > 50)


def test_pale_skin_labels_the_lightest_faces():
  faces, present = _labelled(seed=0, count=500)
  def lit_cheek(face: FaceParameters) -> float:
    """The brightness of the lighter cheek, clear of eyes, glasses, nose and mouth."""
    image = paint_face(face, 64).astype(np.float32)
    row = _pixel(face.centre_y + 0.35 * face.radius_y, 64)
    return max(image[row, _pixel(face.centre_x + side * 0.5 * face.radius_x, 64)].mean()
               for side in (-1, 1))

  cheeks = np.array([lit_cheek(face) for face in faces])
  pale = present["Pale_Skin"]
  assert pale.sum() > 20
  # How often a pale face is lighter than one that is not, over all such pairs.
  assert (cheeks[pale][:, None] > cheeks[~pale][None, :]).mean() > 0.97


def test_a_smile_and_an_open_mouth_differ_only_in_the_mouth():
  for face in [face_at(4, i) for i in range(20)]:
    smiling, open_mouthed = (dataclasses.replace(face, expression=expression)
                             for expression in ("smile", "open"))
    labels = [dict(zip(synthetic_faces.ATTRIBUTE_NAMES, face_attributes(f)))
              for f in (smiling, open_mouthed)]
    assert [(label["Smiling"], label["Mouth_Slightly_Open"]) for label in labels] == [
        (1, -1), (-1, 1)]
    rows, columns = np.nonzero(np.any(paint_face(smiling, 64) != paint_face(open_mouthed, 64),
                                      axis=-1))
    assert len(rows) > 0
    cx, cy, rx, ry = face.head
    # Between the nose and the chin, across the mouth's widest reach, give or take a pixel.
    top, bottom = _pixel(cy + 0.35 * ry, 64) - 1, _pixel(cy + 0.9 * ry, 64) + 1
    left, right = _pixel(cx - 0.5 * rx, 64) - 1, _pixel(cx + 0.5 * rx, 64) + 1
    assert top <= rows.min() and rows.max() <= bottom
    assert left <= columns.min() and columns.max() <= right


@pytest.mark.parametrize("resolution", [8, 23, 100, 128, 256])
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
  faces = [face_at(0, i) for i in range(200)]
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
  assert batch["image"].shape == (4, 16, 16, 3) and batch["image"].dtype == np.uint8
  assert batch["label"].shape == (4, len(faces.attribute_names))
  assert batch["label"].dtype == np.int8
  np.testing.assert_array_equal(batch["image"][2], render_face(0, 2, 16))
  np.testing.assert_array_equal(batch["label"][2], faces[2]["label"])
