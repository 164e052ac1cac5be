"""CelebA preparation (every accepted --src form, bad input, restarts) and the shard reader."""

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan_jax import celeba, input_pipeline
from tests.cli import run_module

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba_sample"
NUM_IMAGES = 60
CONFIG = celeba.PrepareConfig(resolution=16, crop=178, num_shards=3, split="all")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  """The first NUM_IMAGES sample faces in the official layout: zip, folder, listings."""
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
  # A partition that sends every 5th image to valid and every 7th to test.
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


def _reference(jpeg: bytes, resolution: int = 16) -> np.ndarray:
  """Centre crop + Lanczos resize, written independently of the library."""
  image = Image.open(io.BytesIO(jpeg)).convert("RGB")
  top = (218 - 178) // 2
  return np.asarray(image.crop((0, top, 178, top + 178)).resize(
      (resolution, resolution), Image.Resampling.LANCZOS))


def _all_images(out: Path, split: str = "train") -> np.ndarray:
  source = celeba.PreparedImages(out, split)
  return np.stack([source[i] for i in range(len(source))])


def test_zip_alone_all_images_in_train_without_attributes(sample, tmp_path):
  root, images, _ = sample
  src = _only(root, "img_align_celeba.zip") / "img_align_celeba.zip"
  metadata = celeba.prepare(src, tmp_path / "out", CONFIG)
  assert metadata["attribute_names"] is None
  assert metadata["splits"]["train"]["count"] == NUM_IMAGES
  got = _all_images(tmp_path / "out")
  want = np.stack([_reference(images[n]) for n in sorted(images)])
  np.testing.assert_array_equal(got, want)


def test_parent_folder_with_listings_splits_and_attributes(sample, tmp_path):
  root, images, partition = sample
  src = _only(root, "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
  metadata = celeba.prepare(src, tmp_path / "out", CONFIG)
  assert len(metadata["attribute_names"]) == 40 and metadata["attribute_names"][0] == "5_o_Clock_Shadow"
  for split_index, split in enumerate(celeba.SPLITS):
    names = sorted(n for n, p in partition.items() if p == split_index)
    assert metadata["splits"][split]["count"] == len(names) > 0
    np.testing.assert_array_equal(_all_images(tmp_path / "out", split),
                                  np.stack([_reference(images[n]) for n in names]))
  # Attributes round-trip against the text file.
  rows = {l.split()[0]: [int(v) for v in l.split()[1:]]
          for l in (root / "list_attr_celeba.txt").read_text().splitlines()[2:] if l.strip()}
  train = celeba.PreparedImages(tmp_path / "out", "train")
  train_names = sorted(n for n, p in partition.items() if p == 0)
  for i in (0, len(train) - 1):
    assert list(train.attributes(i)) == rows[train_names[i]]


def test_kaggle_csv_listings_give_the_same_shards_as_the_txt_files(sample, tmp_path):
  root, _, partition = sample
  txt = _only(root, "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
  kaggle = tmp_path / "kaggle"
  shutil.copytree(root / "img_align_celeba", kaggle / "img_align_celeba" / "img_align_celeba")
  lines = (root / "list_attr_celeba.txt").read_text().splitlines()
  csv_rows = ["image_id," + ",".join(lines[1].split())]
  csv_rows += [",".join(l.split()) for l in lines[2:] if l.strip()]
  (kaggle / "list_attr_celeba.csv").write_text("\n".join(csv_rows) + "\n")
  (kaggle / "list_eval_partition.csv").write_text(
      "image_id,partition\n" + "".join(f"{n},{p}\n" for n, p in partition.items()))
  a = celeba.prepare(txt, tmp_path / "a", CONFIG)
  b = celeba.prepare(kaggle, tmp_path / "b", CONFIG)
  assert a["splits"] == b["splits"] and a["attribute_names"] == b["attribute_names"]
  for shard in (tmp_path / "a").glob("*.array_record"):
    assert shard.read_bytes() == (tmp_path / "b" / shard.name).read_bytes()


def test_output_is_deterministic_across_runs_and_worker_counts(sample, tmp_path):
  root, _, _ = sample
  src = _only(root, "img_align_celeba")
  celeba.prepare(src, tmp_path / "one", CONFIG, num_workers=1)
  celeba.prepare(src, tmp_path / "two", CONFIG, num_workers=2)
  shards = sorted(p.name for p in (tmp_path / "one").glob("*.array_record"))
  assert len(shards) == 3
  for name in shards:
    assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_folder_of_pngs_of_any_size(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "faces"
  folder.mkdir()
  originals = {}
  for i, (w, h) in enumerate([(40, 30), (100, 120), (64, 64), (300, 200)]):
    pixels = rng.integers(0, 256, (h, w, 3), np.uint8)
    Image.fromarray(pixels).save(folder / f"face_{i}.png")
    originals[f"face_{i}.png"] = pixels
  metadata = celeba.prepare(folder, tmp_path / "out", CONFIG)
  assert metadata["splits"]["train"]["count"] == 4 and metadata["attribute_names"] is None
  got = _all_images(tmp_path / "out")
  for image, name in zip(got, sorted(originals)):
    pixels = originals[name]
    side = min(178, *pixels.shape[:2])
    top, left = (pixels.shape[0] - side) // 2, (pixels.shape[1] - side) // 2
    want = Image.fromarray(pixels[top:top + side, left:left + side]).resize(
        (16, 16), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(image, np.asarray(want))


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
  lines = [l.replace(" -1", " 7", 1) if l.startswith(names[4]) else l for l in lines]  # malformed
  (src / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
  metadata = celeba.prepare(src, tmp_path / "out", CONFIG)
  skipped = dict(l.split("\t") for l in (tmp_path / "out" / "skipped.txt").read_text().splitlines())
  assert sorted(skipped) == names[:5]
  assert "178x218" in skipped[names[2]] and "no attribute row" in skipped[names[3]]
  assert "malformed" in skipped[names[4]]
  assert metadata["splits"]["train"]["count"] == NUM_IMAGES - 5
  np.testing.assert_array_equal(celeba.PreparedImages(tmp_path / "out")[0], _reference(images[names[5]]))


def test_interrupted_run_is_finished_by_a_rerun(sample, tmp_path, monkeypatch):
  root, _, _ = sample
  src = _only(root, "img_align_celeba")
  celeba.prepare(src, tmp_path / "clean", CONFIG)
  calls = []
  real_write_shard = celeba._write_shard

  def write_then_die(path, records):
    calls.append(path.name)
    if len(calls) == 2:
      (path.with_name(f".{path.name}.tmp")).write_bytes(b"half a shard")
      raise KeyboardInterrupt
    real_write_shard(path, records)

  monkeypatch.setattr(celeba, "_write_shard", write_then_die)
  with pytest.raises(KeyboardInterrupt):
    celeba.prepare(src, tmp_path / "out", CONFIG)
  assert not (tmp_path / "out" / "metadata.json").exists()
  with pytest.raises(ValueError, match="prepare_celeba"):
    celeba.PreparedImages(tmp_path / "out")
  monkeypatch.setattr(celeba, "_write_shard", real_write_shard)
  celeba.prepare(src, tmp_path / "out", CONFIG)
  for shard in (tmp_path / "clean").glob("*.array_record"):
    assert shard.read_bytes() == (tmp_path / "out" / shard.name).read_bytes()
  assert json.loads((tmp_path / "out" / "metadata.json").read_text()) == \
      json.loads((tmp_path / "clean" / "metadata.json").read_text())


def test_cli_refuses_bad_flags_with_one_line_and_exit_code_2(sample, tmp_path):
  root, _, _ = sample
  src = _only(root, "img_align_celeba")

  def prepare(*args):
    result = run_module("experiments.prepare_celeba", *args, check=False)
    return result.returncode, result.stderr.strip().splitlines()[-1]

  code, message = prepare("--src", tmp_path / "missing", "--out", tmp_path / "a")
  assert code == 2 and "--src" in message and not (tmp_path / "a").exists()
  (tmp_path / "empty").mkdir()
  code, message = prepare("--src", tmp_path / "empty", "--out", tmp_path / "b")
  assert code == 2 and "no images" in message and not (tmp_path / "b").exists()
  code, _ = prepare("--src", src, "--out", tmp_path / "c", "--resolution", 16, "--num_shards", 2)
  assert code == 0
  before = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}
  code, message = prepare("--src", src, "--out", tmp_path / "c", "--resolution", 32)
  assert code == 2 and "different configuration" in message and "resolution" in message
  assert {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()} == before


def test_reader_names_the_prepare_command_when_data_is_missing(tmp_path):
  with pytest.raises(ValueError, match="python -m experiments.prepare_celeba --src .* --out "):
    celeba.PreparedImages(tmp_path / "nothing")


def test_loader_covers_every_prepared_image_once_per_epoch(sample, tmp_path):
  root, _, _ = sample
  celeba.prepare(_only(root, "img_align_celeba"), tmp_path / "out", CONFIG)
  source = celeba.PreparedImages(tmp_path / "out")
  ds = input_pipeline.train_dataset(source, seed=0, global_batch_size=12,
                                    random_flip_images=False)
  epoch = np.concatenate([ds[i] for i in range(NUM_IMAGES // 12)])
  as_bytes = sorted(image.tobytes() for image in epoch)
  assert as_bytes == sorted(source[i].tobytes() for i in range(len(source)))


def test_training_on_prepared_faces_through_the_cli(sample, tmp_path):
  root, _, _ = sample
  celeba.prepare(_only(root, "img_align_celeba"), tmp_path / "data", CONFIG)
  run_module("experiments.celeba", "--workdir", tmp_path / "run",
             "--config", "experiments/configs/celeba64.py:tiny",
             f"--config.data.dir={tmp_path / 'data'}", "--config.train.num_steps=4")
  final = json.loads((tmp_path / "run" / "final.json").read_text())
  assert final["step"] == 4 and np.isfinite(final["metrics"]["d_loss"])
  assert (tmp_path / "run" / "samples" / "step_0000004.png").exists()


def test_training_without_prepared_data_tells_the_prepare_command(tmp_path):
  result = run_module("experiments.celeba", "--workdir", tmp_path / "run",
                      "--config", "experiments/configs/celeba64.py:tiny",
                      f"--config.data.dir={tmp_path / 'nothing'}", check=False)
  assert result.returncode != 0
  assert "python -m experiments.prepare_celeba" in result.stderr.strip().splitlines()[-1]
