"""`experiments.fid` prepares folders as training data is prepared, refuses what it cannot
score in one line, and checks saved statistics before using them."""

import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from dcgan_jax.data import celeba_prepare
from dcgan_jax.eval import image_sets
from tests.cli import run_module

SAMPLE_ZIP = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba_sample"
              / "img_align_celeba.zip")


def _one_line_error(result) -> str:
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, lines
  return lines[0]


def _scores(result) -> dict:
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def raw_faces(tmp_path_factory) -> Path:
  """24 raw CelebA files (178x218), as a user's folder holds them."""
  if not SAMPLE_ZIP.exists():
    pytest.skip(f"no CelebA sample at {SAMPLE_ZIP}")
  folder = tmp_path_factory.mktemp("raw")
  with zipfile.ZipFile(SAMPLE_ZIP) as archive:
    for name in sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:24]:
      (folder / Path(name).name).write_bytes(archive.read(name))
  return folder


def test_a_raw_celeba_folder_is_centre_cropped_like_the_shards_prepared_from_it(
    raw_faces, tmp_path):
  shards = tmp_path / "shards"
  celeba_prepare.prepare(raw_faces, shards, celeba_prepare.PrepareConfig(
      resolution=32, crop=140, num_shards=1, split="train"), num_workers=1)
  # The shards set --crop and --resolution; the folder's images become the same pixels.
  scores = _scores(run_module("experiments.fid", raw_faces, shards, "--metrics", "swd"))
  assert (scores["crop"], scores["resolution"], scores["num"]) == (140, 32, [24, 24])
  assert scores["swd"] == 0.0
  # Squashing the whole 178x218 frame instead (the old behaviour) is another set.
  squashed = tmp_path / "squashed"
  squashed.mkdir()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for path in raw_faces.iterdir():
    Image.open(path).resize((32, 32), Image.Resampling.LANCZOS).save(squashed / f"{path.stem}.png")
  assert _scores(run_module("experiments.fid", squashed, shards, "--metrics", "swd"))["swd"] > 5


def test_prepared_folder_images_are_prepare_celebas_pixels(raw_faces):
  preparation = image_sets.Preparation(crop=178, resolution=16)
  images = image_sets.load_image_set(raw_faces, preparation).images
  files = sorted(raw_faces.iterdir())
  # prepare_celeba's record of each file, decoded: the pixels training would see.
  encoding = celeba_prepare._Encoding(crop=178, resolution=16, num_attributes=0,  # pylint: disable=protected-access
                                      check_celeba_size=True)
  expected = {np.frombuffer(celeba_prepare.encode_record(p.read_bytes(), None, encoding),
                            np.uint8).tobytes() for p in files}
  assert {image.tobytes() for image in images} == expected


def _png_declaring(path: Path, width: int, height: int) -> None:
  """A tiny file whose header declares a huge picture (the pixel data never follows)."""
  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_one_image_is_an_error_and_an_oversized_one_is_skipped_by_name(tmp_path):
  rng = np.random.default_rng(0)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  one, three = tmp_path / "one", tmp_path / "three"
  for folder, count in ((one, 1), (three, 3)):
    folder.mkdir()
    for i in range(count):
      Image.fromarray(rng.integers(0, 256, (20, 20, 3), np.uint8)).save(folder / f"{i}.png")
  error = _one_line_error(run_module("experiments.fid", one, three, check=False))
  assert error == f"error: {one} has 1 usable image(s); a set needs at least 2"
  error = _one_line_error(run_module("experiments.fid", three, check=False))
  assert error == f"error: expected PATH1 and PATH2, got 1: ['{three}']"
  _png_declaring(three / "bomb.png", 12000, 12000)
  result = run_module("experiments.fid", three, three, "--metrics", "swd", "--resolution", "16")
  assert f"skipped {three / 'bomb.png'}: it declares 12000x12000 pixels" in result.stderr
  assert _scores(result)["num"] == [3, 3] and _scores(result)["skipped"] == [1, 1]


def _save(path: Path, mu, sigma) -> Path:
  np.savez(path, mu=mu, sigma=sigma)
  return path


@pytest.mark.parametrize("mu, sigma, problem", [
    (np.zeros(1), np.eye(2048), "sigma should be (1, 1) to match mu"),
    (np.float64(18432.0), np.eye(2048), "mu should be a vector (D,), got shape ()"),
    (np.zeros(2048), -np.eye(2048), "sigma is not a covariance"),
    (np.zeros(2048), np.where(np.eye(2048) > 0, np.nan, 0.0), "NaN or infinite"),
])
def test_each_bad_statistics_file_is_a_one_line_error_naming_it(tmp_path, mu, sigma, problem):
  good = _save(tmp_path / "good.npz", np.zeros(2048), np.eye(2048))
  bad = _save(tmp_path / "bad.npz", mu, sigma)
  error = _one_line_error(run_module("experiments.fid", good, bad, check=False))
  assert error.startswith(f"error: {bad}") and problem in error, error


def test_metrics_picks_the_scores_and_inception_ones_need_the_weights(tmp_path):
  rng = np.random.default_rng(1)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  folder = tmp_path / "faces"
  folder.mkdir()
  for i in range(4):
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(folder / f"{i}.png")
  scores = _scores(run_module("experiments.fid", folder, folder, "--metrics", "swd",
                              "--resolution", "16"))
  assert scores["swd"] == 0.0 and "fid" not in scores
  error = _one_line_error(run_module("experiments.fid", folder, folder, "--metrics", "fid",
                                     "--resolution", "16", check=False,
                                     env={"DCGAN_JAX_CACHE": str(tmp_path / "empty")}))
  assert error.startswith("error: --metrics fid needs Inception weights.")
  error = _one_line_error(run_module("experiments.fid", folder, folder, "--metrics", "swd,psnr",
                                     check=False))
  assert error == "error: --metrics swd,psnr: expected some of swd,fid,kid,is"
  error = _one_line_error(run_module("experiments.fid", folder, folder, "--resolution", "8",
                                     check=False))
  assert error.startswith("error: --resolution 8: SWD needs at least 16 px")
