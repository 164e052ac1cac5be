"""CelebA preparation (every accepted --src form, bad input, restarts) and the shard reader."""

import dataclasses
import io
import json
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import ml_collections
import numpy as np
import psutil
import pytest
from array_record.python.array_record_module import ArrayRecordReader
from PIL import Image

from dcgan_jax import files, generate, run_dir, train
from dcgan_jax.data import celeba_prepare, pipeline, shards, sources
from experiments.configs import cdcgan, celeba64
from tests.cli import REPO, run_module

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba_sample"
NUM_IMAGES = 60
RESOLUTION = 16
CONFIG = celeba_prepare.PrepareConfig(resolution=RESOLUTION, crop=178, num_shards=3, split="all")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  """The first NUM_IMAGES sample faces in the official layout: zip, folder, listings."""
  if not (SAMPLE / "img_align_celeba.zip").exists():
    pytest.skip(f"no CelebA sample at {SAMPLE}")
  root = tmp_path_factory.mktemp("celeba")
  with zipfile.ZipFile(SAMPLE / "img_align_celeba.zip") as archive:
    members = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:NUM_IMAGES]
    images = {Path(m).name: archive.read(m) for m in members}
  folder = root / "img_align_celeba"
  folder.mkdir()
  with zipfile.ZipFile(root / "img_align_celeba.zip", "w") as archive:
    for name, data in images.items():
      (folder / name).write_bytes(data)
      archive.writestr(f"img_align_celeba/{name}", data)
  attr_lines = (SAMPLE / "list_attr_celeba.txt").read_bytes().split(b"\r\n")
  rows = [l for l in attr_lines[2:] if l.split(b" ")[0].decode() in images]
  (root / "list_attr_celeba.txt").write_bytes(
      b"\r\n".join([str(len(rows)).encode(), attr_lines[1], *rows, b""]))
  # A partition that sends every 5th image to valid and some others to test.
  names = sorted(images)
  partition = {n: 1 if i % 5 == 1 else 2 if i % 7 == 3 else 0 for i, n in enumerate(names)}
  (root / "list_eval_partition.txt").write_text(
      "".join(f"{n} {p}\n" for n, p in partition.items()))
  return root, images, partition


def _only(root: Path, *keep: str) -> Path:
  """A copy of the chosen pieces of the sample in a fresh folder."""
  out = root.parent / f"{root.name}-{'-'.join(k.replace('.', '_') for k in keep)}"
  if not out.exists():
    out.mkdir()
    for name in keep:
      (shutil.copytree if (root / name).is_dir() else shutil.copy)(root / name, out / name)
  return out


def _reference(jpeg: bytes) -> np.ndarray:
  """Centre crop + Lanczos resize of a 178x218 face, written independently of the library."""
  image = Image.open(io.BytesIO(jpeg)).convert("RGB")
  top = (218 - 178) // 2
  return np.asarray(image.crop((0, top, 178, top + 178)).resize(
      (RESOLUTION, RESOLUTION), Image.Resampling.LANCZOS))


def _attribute_table(path: Path) -> tuple[list[str], dict[str, list[int]]]:
  lines = path.read_text().splitlines()
  return lines[1].split(), {l.split()[0]: [int(v) for v in l.split()[1:]] for l in lines[2:]}


def _all_images(out: Path, split: str = "train") -> np.ndarray:
  source = shards.PreparedImages(out, split)
  return np.stack([source[i]["image"] for i in range(len(source))])


def _shard_bytes(out: Path) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in sorted(out.glob("*.array_record"))}


def _prepare_dying_in_shard(src: Path, out: Path, config: celeba_prepare.PrepareConfig,
                            monkeypatch, in_shard: int, dies: str = "while writing") -> None:
  """`prepare` interrupted in its `in_shard`-th shard (from 1): with half of it under its
  temporary name ("while writing"), or whole but not yet recorded ("after writing")."""
  real_write_shard = celeba_prepare._write_shard
  calls = []

  def write_then_die(path, records):
    calls.append(path.name)
    if len(calls) < in_shard:
      return real_write_shard(path, records)
    if dies == "while writing":
      path.with_name(files.temporary_name(path.name)).write_bytes(next(iter(records)))
    else:
      real_write_shard(path, records)
    raise KeyboardInterrupt

  with monkeypatch.context() as patch:
    patch.setattr(celeba_prepare, "_write_shard", write_then_die)
    with pytest.raises(KeyboardInterrupt):
      celeba_prepare.prepare(src, out, config)


def _shards_rewritten_by_rerun(src: Path, out: Path, config: celeba_prepare.PrepareConfig,
                               monkeypatch) -> list[str]:
  """`prepare` run again on `out`: the names of the shards it wrote, in order."""
  real_write_shard = celeba_prepare._write_shard
  rewritten = []

  def write_and_note(path, records):
    rewritten.append(path.name)
    return real_write_shard(path, records)

  with monkeypatch.context() as patch:
    patch.setattr(celeba_prepare, "_write_shard", write_and_note)
    celeba_prepare.prepare(src, out, config)
  return rewritten


def _contents(folder: Path) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _file_bytes(image: Image.Image, file_format: str, **options) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=file_format, **options)
  return buffer.getvalue()


def _write_faces(folder: Path, count: int, prefix: str = "face") -> Path:
  """`count` random 20x20 RGB PNGs."""
  rng = np.random.default_rng(0)
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(count):
    pixels = rng.integers(0, 256, (20, 20, 3), np.uint8)
    Image.fromarray(pixels).save(folder / f"{prefix}_{i:03d}.png")
  return folder


def _write_slow_faces(folder: Path, count: int, prefix: str = "slow") -> Path:
  """`count` PNGs of 4000x4000 grey: 16 KB each, a tenth of a second or more to decode."""
  folder.mkdir(parents=True, exist_ok=True)
  data = _file_bytes(Image.new("L", (4000, 4000), 128), "PNG")
  for i in range(count):
    (folder / f"{prefix}_{i:03d}.png").write_bytes(data)
  return folder


def _workers(pid: int) -> list[psutil.Process]:
  """The processes that the children of `pid` started: its fork server's pool workers."""
  try:
    return [worker for child in psutil.Process(pid).children() for worker in child.children()]
  except psutil.NoSuchProcess:
    return []


def _still_running(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
  """Those of `processes` that have not ended (zombies have) within `timeout` seconds."""

  def running(process: psutil.Process) -> bool:
    try:
      return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
      return False

  deadline = time.monotonic() + timeout
  while any(map(running, processes)) and time.monotonic() < deadline:
    time.sleep(0.05)
  left = [p for p in processes if running(p)]
  for process in left:  # so that a failing test leaves nothing behind either
    process.kill()
  return left


def test_zip_alone_all_images_in_train_without_attributes(sample, tmp_path):
  root, images, _ = sample
  src = _only(root, "img_align_celeba.zip") / "img_align_celeba.zip"
  metadata = celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  assert metadata["attribute_names"] is None
  assert metadata["splits"]["train"]["count"] == NUM_IMAGES
  assert metadata["splits"]["valid"] == {"count": 0, "shards": []}
  got = _all_images(tmp_path / "out")
  want = np.stack([_reference(images[n]) for n in sorted(images)])
  np.testing.assert_array_equal(got, want)
  assert shards.PreparedImages(tmp_path / "out")[0]["label"].shape == (0,)


@pytest.mark.parametrize("images_as", ["img_align_celeba", "img_align_celeba.zip"])
def test_parent_folder_with_listings_splits_and_attributes(sample, tmp_path, images_as):
  root, images, partition = sample
  src = _only(root, images_as, "list_attr_celeba.txt", "list_eval_partition.txt")
  metadata = celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  attribute_names, attribute_rows = _attribute_table(root / "list_attr_celeba.txt")
  assert metadata["attribute_names"] == attribute_names and len(attribute_names) == 40
  record_length = RESOLUTION * RESOLUTION * 3 + len(attribute_names)
  for split_index, split in enumerate(shards.SPLITS):
    names = sorted(n for n, p in partition.items() if p == split_index)
    assert metadata["splits"][split]["count"] == len(names) > 0
    # The raw records follow the documented layout: pixels, then one int8 per attribute.
    records = []
    for shard in metadata["splits"][split]["shards"]:
      reader = ArrayRecordReader(str(tmp_path / "out" / shard))
      records += reader.read_all()
      reader.close()
    assert [len(r) for r in records] == [record_length] * len(names)
    pixels = np.stack([np.frombuffer(r[:-40], np.uint8) for r in records])
    np.testing.assert_array_equal(
        pixels.reshape(-1, RESOLUTION, RESOLUTION, 3),
        np.stack([_reference(images[n]) for n in names]))
    assert [list(np.frombuffer(r[-40:], np.int8)) for r in records] == \
        [attribute_rows[n] for n in names]
    # The reader gives back the same pixels and attributes.
    source = shards.PreparedImages(tmp_path / "out", split)
    np.testing.assert_array_equal(_all_images(tmp_path / "out", split),
                                  pixels.reshape(-1, RESOLUTION, RESOLUTION, 3))
    assert [list(source[i]["label"]) for i in range(len(source))] == \
        [attribute_rows[n] for n in names]


def test_kaggle_csv_listings_give_the_same_shards_as_the_txt_files(sample, tmp_path):
  root, _, partition = sample
  txt = _only(root, "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
  kaggle = tmp_path / "kaggle"
  shutil.copytree(root / "img_align_celeba", kaggle / "img_align_celeba" / "img_align_celeba")
  attribute_names, attribute_rows = _attribute_table(root / "list_attr_celeba.txt")
  (kaggle / "list_attr_celeba.csv").write_text("".join(
      ",".join(map(str, row)) + "\n"
      for row in [["image_id", *attribute_names],
                  *([n, *values] for n, values in attribute_rows.items())]))
  (kaggle / "list_eval_partition.csv").write_text(
      "image_id,partition\n" + "".join(f"{n},{p}\n" for n, p in partition.items()))
  a = celeba_prepare.prepare(txt, tmp_path / "a", CONFIG)
  b = celeba_prepare.prepare(kaggle, tmp_path / "b", CONFIG)
  assert a["splits"] == b["splits"] and a["attribute_names"] == b["attribute_names"]
  assert _shard_bytes(tmp_path / "a") == _shard_bytes(tmp_path / "b")


@pytest.mark.slow
def test_output_is_deterministic_across_runs_and_worker_counts(sample, tmp_path):
  root, _, _ = sample
  src = _only(root, "img_align_celeba")
  celeba_prepare.prepare(src, tmp_path / "one", CONFIG, num_workers=1)
  celeba_prepare.prepare(src, tmp_path / "three", CONFIG, num_workers=3)
  one = _shard_bytes(tmp_path / "one")
  assert len(one) == 3 and one == _shard_bytes(tmp_path / "three")
  assert (tmp_path / "one" / "metadata.json").read_bytes() == \
      (tmp_path / "three" / "metadata.json").read_bytes()


def test_folder_of_images_of_any_size(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "faces"
  (folder / "more").mkdir(parents=True)
  originals = {}
  for i, (w, h) in enumerate([(40, 30), (100, 120), (64, 64), (300, 200), (8, 9)]):
    pixels = rng.integers(0, 256, (h, w, 3), np.uint8)
    Image.fromarray(pixels).save(folder / f"face_{i}.png")
    originals[f"face_{i}.png"] = pixels
  grey = rng.integers(0, 256, (50, 70), np.uint8)
  Image.fromarray(grey).save(folder / "more" / "grey.png")
  originals["grey.png"] = np.repeat(grey[:, :, None], 3, axis=2)
  Image.fromarray(rng.integers(0, 256, (7, 30, 3), np.uint8)).save(folder / "tiny.png")
  metadata = celeba_prepare.prepare(folder, tmp_path / "out", CONFIG)
  assert metadata["splits"]["train"]["count"] == len(originals)
  assert metadata["attribute_names"] is None
  assert (tmp_path / "out" / "skipped.txt").read_text().startswith("tiny.png\tsize 30x7")
  for image, name in zip(_all_images(tmp_path / "out"), sorted(originals)):
    pixels = originals[name]
    side = min(178, *pixels.shape[:2])
    top, left = (pixels.shape[0] - side) // 2, (pixels.shape[1] - side) // 2
    want = Image.fromarray(pixels[top:top + side, left:left + side]).resize(
        (RESOLUTION, RESOLUTION), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(image, np.asarray(want), err_msg=name)


def test_images_sharing_a_file_name_are_refused(tmp_path):
  for folder in ("a", "b"):
    (tmp_path / "faces" / folder).mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(tmp_path / "faces" / folder / "face.png")
  with pytest.raises(celeba_prepare.PrepareError, match="two images named face.png"):
    celeba_prepare.prepare(tmp_path / "faces", tmp_path / "out", CONFIG)
  assert not (tmp_path / "out").exists()


def test_bad_images_and_rows_are_skipped_and_listed(sample, tmp_path):
  root, images, _ = sample
  src = tmp_path / "src"
  shutil.copytree(root / "img_align_celeba", src / "img_align_celeba")
  names = sorted(images)
  (src / "img_align_celeba" / names[0]).write_bytes(images[names[0]][:2000])  # truncated
  (src / "img_align_celeba" / names[1]).write_text("not an image")
  Image.new("RGB", (100, 100)).save(src / "img_align_celeba" / names[2], format="JPEG")
  lines = (root / "list_attr_celeba.txt").read_text().splitlines()
  lines = [l for l in lines if not l.startswith(names[3])]  # missing row
  lines = [l.replace(" -1", " 7", 1) if l.startswith(names[4]) else l for l in lines]
  (src / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
  (src / "list_eval_partition.txt").write_text(
      "".join(f"{n} {'5' if n == names[6] else '0'}\n" for n in names if n != names[5]))
  metadata = celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  skipped = dict(l.split("\t") for l in (tmp_path / "out" / "skipped.txt").read_text().splitlines())
  assert sorted(skipped) == names[:7]
  assert "truncated" in skipped[names[0]] and "not an image" in skipped[names[1]]
  assert "178x218" in skipped[names[2]] and "no attribute row" in skipped[names[3]]
  assert "malformed attribute row" in skipped[names[4]]
  assert "no partition row" in skipped[names[5]]
  assert "malformed partition row" in skipped[names[6]]
  assert metadata["splits"]["train"]["count"] == NUM_IMAGES - 7
  np.testing.assert_array_equal(_all_images(tmp_path / "out"),
                                np.stack([_reference(images[n]) for n in names[7:]]))


def test_a_second_prepare_into_the_same_out_is_refused_while_the_first_writes(tmp_path):
  src = _write_faces(tmp_path / "src", 3)
  out = tmp_path / "out"
  out.mkdir()
  with files.locked(out, "--out"):  # as a first prepare holds it
    with pytest.raises(ValueError, match=rf"^--out {re.escape(str(out))} is in use by process "
                                         rf"{os.getpid()} on "):
      celeba_prepare.prepare(src, out, dataclasses.replace(CONFIG, crop=20))
  assert sorted(p.name for p in out.iterdir()) == [".lock"]
  celeba_prepare.prepare(src, out, dataclasses.replace(CONFIG, crop=20))
  assert (out / "metadata.json").is_file()


def test_a_full_listing_beside_a_few_images_keeps_only_their_rows(tmp_path):
  src = _write_faces(tmp_path / "src", 3)
  names = [f"{i:06d}.jpg" for i in range(300_000)] + sorted(p.name for p in src.iterdir())
  header = " ".join(f"Attr{k}" for k in range(40))
  row = " ".join(["1", "-1"] * 20)
  (src / "list_attr_celeba.txt").write_text(
      f"{len(names)}\n{header}\n" + "".join(f"{name} {row}\n" for name in names))
  tracemalloc.start()
  try:
    source = celeba_prepare.scan_source(src)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  # The listing is 37 MB; its 300,000 rows held as lists of strings took 605 MB.
  assert peak < 250e6, peak
  assert sorted(source.attribute_rows) == source.names and len(source.names) == 3
  assert source.attribute_rows[source.names[0]] == ["1", "-1"] * 20


def test_a_listing_of_binary_garbage_is_one_line_naming_it(tmp_path):
  src = _write_faces(tmp_path / "src", 3)
  (src / "list_attr_celeba.txt").write_bytes(b"3\n\xff\xfe\x00garbage")
  with pytest.raises(celeba_prepare.PrepareError, match=rf"^--src {re.escape(str(src))}/"
                                                        r"list_attr_celeba.txt is not a text "
                                                        r"listing \(byte 2 is not UTF-8\)"):
    celeba_prepare.prepare(src, tmp_path / "out", dataclasses.replace(CONFIG, crop=20))
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("packed_as", ["folder", "zip"])
def test_a_file_too_large_for_an_image_is_skipped_unread(tmp_path, packed_as):
  src = _write_faces(tmp_path / "src", 3)
  big = celeba_prepare.MAX_IMAGE_FILE_BYTES + 1
  if packed_as == "folder":
    with open(src / "huge.png", "wb") as f:  # sparse: takes no disk
      f.truncate(20 * 2**30)
    big = 20 * 2**30
  else:
    with zipfile.ZipFile(tmp_path / "faces.zip", "w", zipfile.ZIP_DEFLATED) as archive:
      for face in sorted(src.iterdir()):
        archive.write(face, face.name)
      archive.writestr("huge.png", bytes(big))  # deflates to a few hundred KB
    src = tmp_path / "faces.zip"
  tracemalloc.start()
  try:
    celeba_prepare.prepare(src, tmp_path / "out", dataclasses.replace(CONFIG, crop=20),
                           num_workers=1)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert (tmp_path / "out" / "skipped.txt").read_text() == (
      f"huge.png\ta file of {big:,} bytes, above the "
      f"{celeba_prepare.MAX_IMAGE_FILE_BYTES:,} an image may take\n")
  assert peak < 32 * 2**20


def _composite_on_black(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  return np.round(colour * (alpha[:, :, None] / 255)).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
  return np.repeat(grey[:, :, None], 3, axis=2).astype(np.uint8)


def test_every_pixel_mode_becomes_8_bit_rgb_or_is_skipped_naming_it(tmp_path):
  """16-bit grey keeps each value's high byte; transparent pixels go onto black."""
  rng = np.random.default_rng(0)
  shape = (RESOLUTION, RESOLUTION)  # nothing to crop, and a resize to the same size copies

  def u8(*channels: int) -> np.ndarray:
    return rng.integers(0, 256, (*shape, *channels), np.uint8)

  grey, alpha, rgb, rgba, cmyk, ycbcr = u8(), u8(), u8(3), u8(4), u8(4), u8(3)
  bits = rng.integers(0, 2, shape).astype(bool)
  index = rng.integers(0, 4, shape).astype(np.uint8)
  palette, palette_alpha = u8(3)[0, :4], np.array([255, 128, 0, 10], np.uint8)
  grey16 = rng.integers(0, 65536, shape).astype(np.uint16)
  grey16[0, :4] = [0, 255, 256, 65535]  # high bytes 0, 0, 1, 255; clipped 0, 255, 255, 255
  grey16[1, :3] = grey16[2, :3] = 4660  # the transparent value of one image

  def paletted(mode: str) -> Image.Image:
    image = Image.frombytes("P", shape, index.tobytes())
    image.putpalette(palette.tobytes())
    if mode == "PA":
      image = image.convert("PA")
      image.putalpha(Image.fromarray(alpha))
    return image

  y, cb, cr = (ycbcr[:, :, c].astype(float) for c in range(3))
  ycbcr_rgb = np.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                        y + 1.772 * (cb - 128)], axis=2)  # JPEG's (JFIF) conversion
  k = cmyk[:, :, 3:].astype(float)
  out_of_range = grey16.astype(np.int32)
  out_of_range[3, 3] = 70000
  # name: (image, file format, save options, its mode when read, the RGB it must give, or
  # the words that must be in the reason it is skipped for)
  cases = {
      "bilevel": (Image.fromarray(bits), "PNG", {}, "1", _grey_to_rgb(bits * 255)),
      "palette": (paletted("P"), "PNG", {}, "P", palette[index]),
      "palette_alpha": (paletted("P"), "PNG", {"transparency": palette_alpha.tobytes()}, "P",
                        _composite_on_black(palette[index], palette_alpha[index])),
      "palette_and_alpha": (paletted("PA"), "TIFF", {}, "PA",
                            _composite_on_black(palette[index], alpha)),
      "grey_alpha": (Image.fromarray(np.dstack([grey, alpha])), "PNG", {}, "LA",
                     _composite_on_black(_grey_to_rgb(grey), alpha)),
      "grey_transparent": (Image.fromarray(grey), "PNG", {"transparency": int(grey[0, 0])}, "L",
                           _grey_to_rgb(np.where(grey == grey[0, 0], 0, grey))),
      "rgb_transparent": (Image.fromarray(rgb), "PNG", {"transparency": tuple(map(int, rgb[0, 0]))},
                          "RGB", np.where((rgb == rgb[0, 0]).all(2, keepdims=True), 0, rgb)),
      "rgba": (Image.fromarray(rgba), "PNG", {}, "RGBA",
               _composite_on_black(rgba[:, :, :3], rgba[:, :, 3])),
      "cmyk": (Image.frombytes("CMYK", shape, cmyk.tobytes()), "TIFF", {}, "CMYK",
               np.round((255 - cmyk[:, :, :3]) * (255 - k) / 255).astype(np.uint8)),
      "ycbcr": (Image.frombytes("YCbCr", shape, ycbcr.tobytes()), "TIFF", {}, "YCbCr",
                np.clip(np.round(ycbcr_rgb), 0, 255).astype(np.uint8)),
      "grey16": (Image.fromarray(grey16), "PNG", {}, "I;16", _grey_to_rgb(grey16 >> 8)),
      "grey16_transparent": (Image.fromarray(grey16), "PNG", {"transparency": 4660}, "I;16",
                             _grey_to_rgb(np.where(grey16 == 4660, 0, grey16 >> 8))),
      "grey16_big_endian": (Image.fromarray(grey16.astype(">u2")), "TIFF", {}, "I;16B",
                            _grey_to_rgb(grey16 >> 8)),
      "grey32": (Image.fromarray(grey16.astype(np.int32)), "TIFF", {}, "I",
                 _grey_to_rgb(grey16 >> 8)),
      "grey32_beyond_16_bits": (Image.fromarray(out_of_range), "TIFF", {}, "I",
                                "mode I values 0..70000, expected 16-bit"),
      "float": (Image.fromarray(grey16.astype(np.float32)), "TIFF", {}, "F", "mode F, expected"),
      "lab": (Image.frombytes("LAB", shape, ycbcr.tobytes()), "TIFF", {}, "LAB",
              "mode LAB, expected"),
  }
  src = tmp_path / "src"
  src.mkdir()
  for name, (image, file_format, options, mode, _) in cases.items():
    # Files of every kind under a .png name, as Pillow opens them by their content.
    (src / f"{name}.png").write_bytes(_file_bytes(image, file_format, **options))
    with Image.open(src / f"{name}.png") as written:
      assert written.mode == mode and ("transparency" in written.info) == (
          "transparency" in options), name
  metadata = celeba_prepare.prepare(src, tmp_path / "out", CONFIG)

  reasons = {name: want for name, (*_, want) in cases.items() if isinstance(want, str)}
  skipped = dict(l.split("\t") for l in (tmp_path / "out" / "skipped.txt").read_text().splitlines())
  assert sorted(skipped) == sorted(f"{name}.png" for name in reasons)
  for name, words in reasons.items():
    assert words in skipped[f"{name}.png"], (name, skipped[f"{name}.png"])
  converted = sorted(name for name in cases if name not in reasons)
  assert metadata["splits"]["train"]["count"] == len(converted)
  for name, image in zip(converted, _all_images(tmp_path / "out")):
    # Pillow's YCbCr conversion is fixed-point: within 1 of JFIF's formula.
    np.testing.assert_allclose(image, cases[name][-1], atol=1 if name == "ycbcr" else 0,
                               err_msg=name)


def test_source_without_a_usable_image_is_refused_and_nothing_is_written(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  (src / "a.png").write_text("not an image")
  (src / "b.jpg").write_bytes(b"\xff\xd8 neither")
  Image.new("RGB", (4, 4)).save(src / "c.png")  # too small
  (tmp_path / "empty").mkdir()
  for out in (tmp_path / "new", tmp_path / "empty"):
    with pytest.raises(celeba_prepare.PrepareError) as error:
      celeba_prepare.prepare(src, out, CONFIG)
    assert str(error.value) == (f"--src {src} has no usable image: all 3 were skipped, 2 for "
                                f"'not an image PIL can read' (e.g. a.png)")
  assert not (tmp_path / "new").exists() and not any((tmp_path / "empty").iterdir())
  # A mended --src may then use the same --out.
  _write_faces(src, 3)
  assert celeba_prepare.prepare(src, tmp_path / "new", CONFIG)["splits"]["train"]["count"] == 3


@pytest.mark.parametrize("holds", ["a skipped.txt", "a file named as a shard", "a metadata.json",
                                   "a file beside a complete output",
                                   "a file beside an interrupted output"])
def test_out_holding_files_of_others_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                          holds):
  src = _write_faces(tmp_path / "src", 6)
  out = tmp_path / "out"
  if holds == "a file beside a complete output":
    celeba_prepare.prepare(src, out, CONFIG)
  elif holds == "a file beside an interrupted output":
    real_write_shard = celeba_prepare._write_shard
    written = []

    def write_one_then_die(path, records):
      if written:
        raise KeyboardInterrupt
      written.append(real_write_shard(path, records))

    monkeypatch.setattr(celeba_prepare, "_write_shard", write_one_then_die)
    with pytest.raises(KeyboardInterrupt):
      celeba_prepare.prepare(src, out, CONFIG)
    monkeypatch.undo()
  foreign = {"a skipped.txt": "skipped.txt", "a metadata.json": "metadata.json",
             "a file named as a shard": "train-00000-of-00003.array_record"}.get(holds, "notes.txt")
  out.mkdir(exist_ok=True)
  (out / foreign).write_text("the user's own\n")
  before = _contents(out)
  with pytest.raises(celeba_prepare.PrepareError) as error:
    celeba_prepare.prepare(src, out, CONFIG)
  message = str(error.value)
  assert message.startswith(f"--out {out} holds ") and foreign in message and "\n" not in message
  assert _contents(out) == before


@pytest.mark.parametrize("out_is", ["new", "empty", "left by a run killed at its start",
                                    "a complete output"])
def test_new_empty_or_own_out_is_accepted(tmp_path, out_is):
  src = _write_faces(tmp_path / "src", 6)
  out = tmp_path / "out"
  want = celeba_prepare.prepare(src, tmp_path / "clean", CONFIG)
  if out_is == "empty":
    out.mkdir()
  elif out_is == "left by a run killed at its start":  # while writing its first state file
    out.mkdir()
    with pytest.raises(KeyboardInterrupt), files.atomic_path(out / ".prepare_state.json") as tmp:
      tmp.write_text('{"format_')
      raise KeyboardInterrupt
  elif out_is == "a complete output":
    shutil.copytree(tmp_path / "clean", out)
  assert celeba_prepare.prepare(src, out, CONFIG) == want
  assert _contents(out) == _contents(tmp_path / "clean")


@pytest.mark.slow
@pytest.mark.parametrize("dies, in_shard", [("while writing", 2), ("after writing", 2),
                                            ("while writing", 1)])
def test_interrupted_run_is_finished_by_a_rerun(sample, tmp_path, monkeypatch, dies, in_shard):
  root, _, _ = sample
  src = _only(root, "img_align_celeba")
  celeba_prepare.prepare(src, tmp_path / "clean", CONFIG)
  _prepare_dying_in_shard(src, tmp_path / "out", CONFIG, monkeypatch, in_shard, dies)
  assert not (tmp_path / "out" / "metadata.json").exists()
  with pytest.raises(ValueError, match="prepare_celeba"):
    shards.PreparedImages(tmp_path / "out")
  rewritten = _shards_rewritten_by_rerun(src, tmp_path / "out", CONFIG, monkeypatch)
  # The shards recorded before the one it died in are kept.
  assert rewritten == [f"train-{k:05d}-of-00003.array_record" for k in range(in_shard - 1, 3)]
  assert _shard_bytes(tmp_path / "out") == _shard_bytes(tmp_path / "clean")
  assert shards.load_metadata(tmp_path / "out") == shards.load_metadata(tmp_path / "clean")
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
      sorted(p.name for p in (tmp_path / "clean").iterdir())


def test_cli_prepares_and_refuses_bad_flags_with_one_line_and_exit_code_2(sample, tmp_path):
  root, images, _ = sample
  src = _only(root, "img_align_celeba")

  def prepare(*args):
    result = run_module("experiments.prepare_celeba", *args, check=False)
    lines = result.stderr.strip().splitlines()
    return result.returncode, lines[-1] if lines else ""

  code, message = prepare("--out", tmp_path / "a")
  assert code == 2 and "--src" in message and not (tmp_path / "a").exists()
  code, message = prepare("--src", tmp_path / "missing", "--out", tmp_path / "a")
  assert code == 2 and "--src" in message and "does not exist" in message
  assert not (tmp_path / "a").exists()
  (tmp_path / "empty").mkdir()
  code, message = prepare("--src", tmp_path / "empty", "--out", tmp_path / "b")
  assert code == 2 and "--src" in message and "no images" in message
  assert not (tmp_path / "b").exists()
  (tmp_path / "not_images").mkdir()
  (tmp_path / "not_images" / "a.png").write_text("not an image")
  code, message = prepare("--src", tmp_path / "not_images", "--out", tmp_path / "b")
  assert code == 2 and message.startswith("error: --src") and "no usable image" in message
  assert not (tmp_path / "b").exists()
  code, message = prepare("--src", src, "--out", tmp_path / "b", "--num_workers", -1)
  assert (code, message) == (2, "error: --num_workers -1: expected at least 1 (or leave it out "
                                "for all cores)")
  assert not (tmp_path / "b").exists()

  code, message = prepare("--src", src, "--out", tmp_path / "c", "--resolution", RESOLUTION,
                          "--num_shards", 2, "--num_workers", 2)
  assert code == 0 and message.startswith(f"wrote {NUM_IMAGES} images") and "images/s" in message
  assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
      ".lock", "metadata.json", "skipped.txt", "train-00000-of-00002.array_record",
      "train-00001-of-00002.array_record"]
  np.testing.assert_array_equal(_all_images(tmp_path / "c"),
                                np.stack([_reference(images[n]) for n in sorted(images)]))
  before = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}
  code, message = prepare("--src", src, "--out", tmp_path / "c", "--resolution", 32,
                          "--num_shards", 2)
  assert code == 2 and "--out" in message and "different configuration" in message
  assert "resolution: 16 -> 32" in message
  assert {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()} == before


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killed_prepare_leaves_no_process_behind(tmp_path, signum):
  src = _write_slow_faces(tmp_path / "src", 96)
  with open(tmp_path / "stderr", "w") as stderr:  # not a pipe, which a leftover would hold open
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.prepare_celeba", "--src", str(src), "--out",
         str(tmp_path / "out"), "--resolution", str(RESOLUTION), "--num_workers", "2"],
        cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"}, stderr=stderr)
  try:
    deadline = time.monotonic() + 120
    while len(_workers(process.pid)) < 2 and time.monotonic() < deadline:
      time.sleep(0.02)
    started = psutil.Process(process.pid).children(recursive=True)  # with the fork server's
    assert process.poll() is None and len(_workers(process.pid)) == 2
    process.send_signal(signum)
    process.wait(timeout=60)
  finally:
    process.kill()
  assert not _still_running(started, timeout=10)
  assert process.returncode != 0
  if signum == signal.SIGTERM:
    assert (tmp_path / "stderr").read_text().splitlines()[-1] == \
        "stopped by SIGTERM; run the same command to finish"


@pytest.mark.slow
@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_an_error_or_interrupt_stops_the_workers_at_once_without_killing_one(tmp_path,
                                                                           monkeypatch, error):
  src = _write_faces(tmp_path / "src", 32, prefix="a")  # the first task: done at once
  _write_slow_faces(src, 384, prefix="b")  # twelve more, queued when it is
  others = set(_workers(os.getpid()))
  workers, failed_at, killed = [], [], []

  def fail_on_the_first_record(path, records):
    next(iter(records))
    workers.extend(w for w in _workers(os.getpid()) if w not in others)
    failed_at.append(time.monotonic())
    raise error

  monkeypatch.setattr(celeba_prepare, "_write_shard", fail_on_the_first_record)
  # A worker killed while it sends a result leaves the pool's reader waiting forever for
  # the rest of it (prepare_celeba hung after 3 of 20 SIGTERMs so).
  for method in ("terminate", "kill"):
    monkeypatch.setattr(multiprocessing.process.BaseProcess, method,
                        lambda process, method=method: killed.append(method))
  with pytest.raises(type(error)):
    celeba_prepare.prepare(src, tmp_path / "out", CONFIG, num_workers=2)
  # Decoding the queued images would take ten seconds or more per worker.
  assert time.monotonic() - failed_at[0] < 5
  assert len(workers) == 2 and not _still_running(workers, timeout=1)
  assert not killed


def test_out_with_shards_of_another_source_is_refused(sample, tmp_path):
  root, images, _ = sample
  src = _only(root, "img_align_celeba")
  celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  other = tmp_path / "other"
  shutil.copytree(src, other)
  (other / "img_align_celeba" / sorted(images)[0]).unlink()
  with pytest.raises(celeba_prepare.PrepareError, match="source_fingerprint"):
    celeba_prepare.prepare(other, tmp_path / "out", CONFIG)


@pytest.mark.parametrize("damage", ["no directory", "no metadata", "lost shard", "old format"])
def test_reader_names_the_prepare_command_when_data_is_unusable(sample, tmp_path, damage):
  out = tmp_path / "out"
  if damage != "no directory":
    celeba_prepare.prepare(_only(sample[0], "img_align_celeba"), out, CONFIG)
  if damage == "no metadata":
    (out / "metadata.json").unlink()
  elif damage == "lost shard":
    next(out.glob("*.array_record")).unlink()
  elif damage == "old format":
    metadata = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps({**metadata, "format_version": 0}))
  with pytest.raises(ValueError) as error:
    shards.PreparedImages(out)
  message = str(error.value)
  assert "\n" not in message and str(out) in message
  assert f"python -m experiments.prepare_celeba --src /path/to/img_align_celeba.zip --out {out}" \
      in message


@pytest.mark.parametrize("damage", ["metadata of another resolution", "garbled shard"])
def test_a_record_unlike_its_metadata_or_unreadable_is_one_line_naming_the_data(sample, tmp_path,
                                                                               damage):
  out = tmp_path / "out"
  celeba_prepare.prepare(_only(sample[0], "img_align_celeba"), out, CONFIG)
  if damage == "metadata of another resolution":
    metadata = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps({**metadata, "resolution": RESOLUTION // 2}))
    expected = (rf"record 0 of split 'train' holds {RESOLUTION**2 * 3:,} bytes, not the "
                rf"{RESOLUTION**2 * 3 // 4:,} of a ")
  else:
    for shard in out.glob("train-*.array_record"):
      data = bytearray(shard.read_bytes())
      data[64:-64] = bytes(len(data) - 128)
      shard.write_bytes(bytes(data))
    expected = r"the shards of split 'train' cannot be read \("
  with pytest.raises(ValueError, match=rf"^data.dir {re.escape(str(out))}: {expected}.*; "
                                       rf"prepare it again with: "):
    shards.PreparedImages(out)[0]


def test_reader_survives_pickling_for_grain_workers(sample, tmp_path):
  celeba_prepare.prepare(_only(sample[0], "img_align_celeba"), tmp_path / "out", CONFIG)
  source = shards.PreparedImages(tmp_path / "out")
  first = source[5]["image"].copy()  # opens the readers that pickling must leave behind
  copy = pickle.loads(pickle.dumps(source))
  assert len(copy) == len(source) == NUM_IMAGES
  np.testing.assert_array_equal(copy[5]["image"], first)


def test_loader_covers_every_prepared_image_once_per_epoch_with_its_attributes(sample, tmp_path):
  root, _, _ = sample
  src = _only(root, "img_align_celeba", "list_attr_celeba.txt")
  celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  source = shards.PreparedImages(tmp_path / "out")
  ds = pipeline.train_dataset(source, seed=0, global_batch_size=12, random_flip_images=False)
  batches = [ds[i] for i in range(NUM_IMAGES // 12)]
  assert all(b["label"].shape == (12, 40) and b["label"].dtype == np.int8 for b in batches)
  served = sorted((image.tobytes(), label.tobytes()) for b in batches
                  for image, label in zip(b["image"], b["label"]))
  _, attribute_rows = _attribute_table(root / "list_attr_celeba.txt")
  names = sorted(attribute_rows)
  assert served == sorted((_reference(sample[1][n]).tobytes(), np.int8(attribute_rows[n]).tobytes())
                          for n in names)


def test_larger_prepared_faces_are_read_reduced_by_block_means_and_smaller_ones_refused(
    sample, tmp_path):
  celeba_prepare.prepare(_only(sample[0], "img_align_celeba"), tmp_path / "out",
                         dataclasses.replace(CONFIG, resolution=4 * RESOLUTION))
  data = ml_collections.ConfigDict({"source": "celeba", "dir": str(tmp_path / "out"),
                                    "split": "train", "resolution": RESOLUTION})
  reduced, full = sources.create_source(data, seed=0), shards.PreparedImages(tmp_path / "out")
  assert reduced.resolution == RESOLUTION and len(reduced) == len(full)
  for index in (0, len(full) - 1):
    np.testing.assert_array_equal(reduced[index]["image"],
                                  np.asarray(Image.fromarray(full[index]["image"]).reduce(4)))
  data.resolution = 8 * RESOLUTION
  with pytest.raises(ValueError, match=f"holds {4 * RESOLUTION}px images but data.resolution "
                                       f"is {8 * RESOLUTION}"):
    sources.create_source(data, seed=0)


def _train_on_prepared_faces(sample, tmp_path: Path, config,
                             prepare_config: celeba_prepare.PrepareConfig = CONFIG) -> dict:
  """Four steps of `config` on the sample faces prepared with their attributes."""
  root, _, _ = sample
  celeba_prepare.prepare(_only(root, "img_align_celeba", "list_attr_celeba.txt"),
                         tmp_path / "data", prepare_config)
  config.data.dir, config.train.num_steps = str(tmp_path / "data"), 4
  final = train.train_and_evaluate(config, tmp_path / "run")
  assert final["step"] == 4 and np.isfinite(final["metrics"]["d_loss"])
  return final


@pytest.mark.slow
def test_a_tiny_config_trains_on_prepared_faces_of_a_larger_resolution(sample, tmp_path):
  _train_on_prepared_faces(sample, tmp_path, celeba64.get_config("tiny"),
                           dataclasses.replace(CONFIG, resolution=2 * RESOLUTION))
  assert (tmp_path / "run" / "samples" / "step_0000004.png").exists()


@pytest.mark.slow
def test_a_run_resumes_on_its_own_images_wherever_they_moved_and_on_no_others(sample, tmp_path):
  final = _train_on_prepared_faces(sample, tmp_path, celeba64.get_config("tiny"))
  config = run_dir.read_config(tmp_path / "run")
  moved = tmp_path / "moved"
  shutil.move(tmp_path / "data", moved)
  celeba_prepare.prepare(_write_faces(tmp_path / "noise", 20), tmp_path / "others",
                         dataclasses.replace(CONFIG, crop=20))
  config.data.dir, config.train.num_steps = str(tmp_path / "others"), 6
  before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
  with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'run'))} was trained on "
                                       r"other images than data.dir holds \(crop: 178 -> 20, "
                                       r"source_fingerprint: '[0-9a-f]+' -> '[0-9a-f]+'; "):
    train.train_and_evaluate(config, tmp_path / "run")
  assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*")
          if p.is_file() and p.name != ".lock"} == {k: v for k, v in before.items()
                                                    if k.name != ".lock"}
  config.data.dir = str(moved)
  assert train.train_and_evaluate(config, tmp_path / "run")["step"] == 6 > final["step"]


@pytest.mark.slow
def test_conditional_training_on_prepared_faces_and_sampling_with_attributes(sample, tmp_path):
  config = cdcgan.get_config("tiny")
  config.model.attributes = "Male,Eyeglasses,Smiling"
  _train_on_prepared_faces(sample, tmp_path, config)
  run = generate.load_run(tmp_path / "run")
  names = shards.PreparedImages(tmp_path / "data").attribute_names
  assert run.variant.label_columns == tuple(names.index(n) for n in ("Male", "Eyeglasses",
                                                                     "Smiling"))
  # D's auxiliary classifier has one logit per chosen attribute.
  assert run.state.d_params["AttributeClasses"]["kernel"].shape[1] == 3
  generate.write_samples(run, tmp_path / "men", 3, seed=0, attributes={"Male": 1})
  assert len(list((tmp_path / "men").iterdir())) == 3


def test_conditioning_on_shards_without_attributes_is_refused_before_writing(sample, tmp_path):
  root, _, _ = sample
  celeba_prepare.prepare(_only(root, "img_align_celeba.zip") / "img_align_celeba.zip",
                         tmp_path / "data", CONFIG)
  config = cdcgan.get_config("tiny")
  config.data.dir = str(tmp_path / "data")
  with pytest.raises(ValueError, match="^" + re.escape(
      f"model.condition=attributes needs images with attributes, but data.dir "
      f"{tmp_path / 'data'} has none")):
    train.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_training_without_prepared_data_tells_the_prepare_command(tmp_path):
  result = run_module("experiments.celeba", "--workdir", tmp_path / "run",
                      "--config", "experiments/configs/celeba64.py:tiny",
                      f"--config.data.dir={tmp_path / 'nothing'}", check=False)
  assert result.returncode != 0
  assert "python -m experiments.prepare_celeba" in result.stderr.strip().splitlines()[-1]
