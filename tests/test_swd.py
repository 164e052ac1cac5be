"""SWD orders image sets as a person would (same < other real faces < blurred < noise),
equals a float64 computation of its formula, and does not drift with the sample count."""

import functools
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dcgan_jax.data import synthetic_faces
from dcgan_jax.eval import swd
from tests.swd_reference import reference_swd

CELEBA_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared/data/celeba_sample"
IMAGES_PER_SET = 160


@pytest.fixture(scope="module")
def faces() -> list[Image.Image]:
  """Real CelebA faces, centre-cropped to 178x178 and resized to 64x64, read from the zip."""
  archive_path = CELEBA_SAMPLE / "img_align_celeba.zip"
  if not archive_path.exists():
    pytest.skip(f"no CelebA sample at {archive_path}")
  with zipfile.ZipFile(archive_path) as archive:
    names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:2 * IMAGES_PER_SET]
    images = [Image.open(io.BytesIO(archive.read(name))).convert("RGB") for name in names]
  crops = []
  for image in images:
    top = (image.height - 178) // 2
    crop = image.crop((0, top, 178, top + 178))
    crops.append(crop.resize((64, 64), Image.Resampling.BICUBIC))
  return crops


def _stack(images: list[Image.Image]) -> np.ndarray:
  return np.stack([np.asarray(image) for image in images])


def test_a_set_against_itself_is_zero(faces):
  images = _stack(faces[:IMAGES_PER_SET])
  result = swd.sliced_wasserstein_distance(images, images, seed=3)
  assert result == {"resolutions": [64, 32, 16], "per_level": [0.0, 0.0, 0.0], "mean": 0.0}


@pytest.mark.slow
def test_other_real_faces_are_close_and_noise_is_far(faces):
  reals = _stack(faces[:IMAGES_PER_SET])
  other_reals = _stack(faces[IMAGES_PER_SET:])
  noise = np.random.default_rng(0).integers(0, 256, reals.shape, dtype=np.uint8)
  real_vs_real = swd.sliced_wasserstein_distance(reals, other_reals, projection_repeats=1)
  real_vs_noise = swd.sliced_wasserstein_distance(reals, noise, projection_repeats=1)
  assert 0 < real_vs_real["mean"] < 40
  assert real_vs_noise["mean"] > 100
  for close, far in zip(real_vs_real["per_level"], real_vs_noise["per_level"]):
    assert far > 2 * close
  assert real_vs_real == swd.sliced_wasserstein_distance(reals, other_reals,
                                                         projection_repeats=1)


@pytest.mark.slow
def test_distance_grows_with_blur(faces):
  reals = _stack(faces[:IMAGES_PER_SET])
  held_out = faces[IMAGES_PER_SET:]
  means = [swd.sliced_wasserstein_distance(reals, _stack(held_out), projection_repeats=1)["mean"]]
  finest = []
  for radius in (0.5, 1.0, 2.0):
    blurred = _stack([image.filter(ImageFilter.GaussianBlur(radius)) for image in held_out])
    result = swd.sliced_wasserstein_distance(reals, blurred, projection_repeats=1)
    means.append(result["mean"])
    finest.append(result["per_level"][0])
  assert means == sorted(means) and means[-1] > 2 * means[0]
  # Blur removes fine detail first: the full-resolution level reacts most.
  assert finest == sorted(finest) and finest[-1] > 4 * finest[0]


def test_pyramid_is_the_mirrored_5x5_binomial_one_and_reconstructs_the_image():
  ndimage = pytest.importorskip("scipy.ndimage")
  binomial = np.array([1, 4, 6, 4, 1]) / 16
  kernel = np.outer(binomial, binomial)[None, :, :, None]

  def blur(x):
    return ndimage.convolve(x, kernel, mode="mirror")

  def upsample(x):
    zeros_between = np.zeros((x.shape[0], 2 * x.shape[1], 2 * x.shape[2], x.shape[3]))
    zeros_between[:, ::2, ::2] = x
    return 4 * blur(zeros_between)

  images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  pyramid = swd.laplacian_pyramid(images, 3)
  assert [level.shape[1] for level in pyramid] == [32, 16, 8]
  low_16 = blur(images.astype(np.float64))[:, ::2, ::2]
  low_8 = blur(low_16)[:, ::2, ::2]
  np.testing.assert_allclose(pyramid[2], low_8, atol=1e-3)
  np.testing.assert_allclose(pyramid[1], low_16 - upsample(low_8), atol=1e-3)
  np.testing.assert_allclose(pyramid[0], images - upsample(low_16), atol=1e-3)
  reconstructed = upsample(upsample(pyramid[2]) + pyramid[1]) + pyramid[0]
  np.testing.assert_allclose(reconstructed, images, atol=1e-3)


def test_resolutions_halve_down_to_16_pixels():
  assert swd.pyramid_resolutions(128) == [128, 64, 32, 16]
  assert swd.pyramid_resolutions(16) == [16]
  with pytest.raises(ValueError, match="halve evenly"):
    swd.pyramid_resolutions(33)


def _synthetic_faces(seed: int, num: int, resolution: int) -> np.ndarray:
  return np.stack([synthetic_faces.render_face(seed, i, resolution) for i in range(num)])


def _blurred(images: np.ndarray) -> np.ndarray:
  """A fixed 'generator': the faces it is given, softened and a little darker."""
  return np.stack([np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(0.8)))
                   for image in (images * 0.92).astype(np.uint8)])


def _halved(images: np.ndarray) -> np.ndarray:
  """Each 2x2 block of pixels averaged (rounded): a set at half the resolution."""
  num, size, _, channels = images.shape
  blocks = images.reshape(num, size // 2, 2, size // 2, 2, channels)
  return ((blocks.sum(axis=(2, 4), dtype=np.uint16) + 2) // 4).astype(np.uint8)


@pytest.fixture(scope="module")
def synthetic_set() -> Callable[[str, int], np.ndarray]:
  """10,000 faces by kind ('real', 'other real' or a fixed 'generator's: a third seed's
  faces, blurred) and resolution, each made once and read by several tests. Rendering a
  face costs as much at 32 px as at 64, so the 32 px faces are the 64 px ones halved."""
  @functools.cache
  def rendered(seed: int, resolution: int) -> np.ndarray:
    if resolution < 64:
      return _halved(rendered(seed, 2 * resolution))
    return _synthetic_faces(seed, 10_000, resolution)

  @functools.cache
  def made(kind: str, resolution: int) -> np.ndarray:
    faces = rendered(("real", "other real", "generator").index(kind), resolution)
    return _blurred(faces) if kind == "generator" else faces
  return made


@pytest.mark.slow
def test_streamed_swd_equals_float64_sorting_at_10000_images(synthetic_set):
  """The streamed sketches against every descriptor held and every projection sorted in
  float64, at a count where float32 sums drift; fewer directions and patches keep it quick.
  At 64 px the pyramid has every kind of level a smaller image has (a full-resolution and
  an inner band-pass level, the 16 px low-pass one)."""
  reals, fakes = synthetic_set("real", 64), synthetic_set("generator", 64)
  plan = swd.make_plan(len(reals), 64, seed=5, patches_per_image=8,
                       projection_repeats=1, projections_per_repeat=8)
  streamed = swd.distance(swd.sketch(reals, plan), swd.sketch(fakes, plan), plan)["per_level"]
  np.testing.assert_allclose(streamed, reference_swd(reals, fakes, plan), rtol=1e-3)


def test_sets_of_different_sizes_are_compared_like_the_float64_reference(faces):
  reals, others = _stack(faces[:IMAGES_PER_SET]), _stack(faces[IMAGES_PER_SET:])[:97]
  plan = swd.make_plan(IMAGES_PER_SET, 64, seed=2, projection_repeats=1,
                       projections_per_repeat=16)
  streamed = swd.distance(swd.sketch(reals, plan), swd.sketch(others, plan), plan)
  np.testing.assert_allclose(streamed["per_level"], reference_swd(reals, others, plan),
                             rtol=1e-3)


@pytest.mark.slow
def test_swd_of_a_fixed_generator_is_stable_across_sample_counts_and_real_against_real_falls(
    synthetic_set):
  """The drift seen before float64 normalisation: a generator's SWD grew with the count."""
  reals, fakes = synthetic_set("real", 32), synthetic_set("generator", 32)
  other_reals = synthetic_set("other real", 32)
  generator, real_vs_real = [], []
  for n in (1_000, 10_000):
    plan = swd.make_plan(n, 32, seed=0, patches_per_image=64, projection_repeats=1,
                         projections_per_repeat=32)
    real_sketches = swd.sketch(reals[:n], plan)
    generator.append(swd.distance(real_sketches, swd.sketch(fakes[:n], plan), plan)["mean"])
    real_vs_real.append(
        swd.distance(real_sketches, swd.sketch(other_reals[:n], plan), plan)["mean"])
  # Finite samples only add distance, and at most as much as two real sets of the smaller
  # count are apart (measured: the generator 32.7 -> 27.9, real against real 12.2 -> 4.0).
  assert real_vs_real[1] < 0.5 * real_vs_real[0], real_vs_real
  assert 0 <= generator[0] - generator[1] < real_vs_real[0], (generator, real_vs_real)
