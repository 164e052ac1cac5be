"""CelebA preparation from Hugging Face parquet shards, checked against the same images
prepared from a folder with text listings (an independent code path)."""

import dataclasses
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dcgan_jax import files
from dcgan_jax.data import celeba_prepare, shards
from dcgan_jax.data.synthetic_faces import ATTRIBUTE_NAMES, SyntheticFaces
from tests.cli import run_module
from tests.test_celeba import _prepare_dying_in_shard, _shard_bytes, _shards_rewritten_by_rerun

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba_sample"
NUM_FACES = 12
CONFIG = celeba_prepare.PrepareConfig(resolution=16, crop=32, num_shards=2, split="all")
# The files of a Hugging Face dataset, by split, and the faces each holds.
SPLIT_FILES = {"data/train-00000-of-00002.parquet": range(0, 5),
               "data/train-00001-of-00002.parquet": range(5, 8),
               "data/validation-00000-of-00001.parquet": range(8, 10),
               "data/test-00000-of-00001.parquet": range(10, 12)}
PARTITION_OF_FILE = {"train": 0, "validation": 1, "test": 2}


@pytest.fixture(scope="module")
def faces() -> tuple[list[bytes], np.ndarray]:
  """NUM_FACES synthetic 32x32 faces as PNG bytes, and their CelebA labels (+1/-1)."""
  source = SyntheticFaces(seed=0, num_images=NUM_FACES, resolution=32)
  examples = [source[i] for i in range(NUM_FACES)]
  labels = np.stack([e["label"] for e in examples])
  assert (labels == 1).any() and (labels == -1).any()
  return [files.png_bytes(e["image"]) for e in examples], labels


def _face_name(index: int) -> str:
  return f"face_{index:03d}.png"


def _write_parquet(path: Path, images: list[bytes | None], paths: list[str | None] | None = None,
                   row_group_size: int = 2, **columns) -> Path:
  """A table in Hugging Face's layout: `image` structs of {bytes, path} (no path field when
  `paths` is None), then `columns`."""
  fields = [("bytes", pa.binary())] + ([("path", pa.string())] if paths is not None else [])
  cells = [{"bytes": data, **({"path": paths[i]} if paths else {})}
           for i, data in enumerate(images)]
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(pa.table({"image": pa.array(cells, pa.struct(fields)), **columns}), path,
                 row_group_size=row_group_size)
  return path


def _attribute_columns(labels: np.ndarray, encoding: str) -> dict[str, pa.Array]:
  """The labels' columns in `encoding`, in reverse order and beside a column to ignore."""
  values = {"bool": labels > 0, "0/1": (labels > 0).astype(np.int64), "-1/+1": labels}[encoding]
  columns = {name: pa.array(values[:, k]) for k, name in enumerate(ATTRIBUTE_NAMES)}
  return {"celeb_id": pa.array(np.arange(len(labels))), **dict(reversed(columns.items()))}


def _write_split_files(src: Path, faces, encoding: str) -> Path:
  images, labels = faces
  for name, indices in SPLIT_FILES.items():
    _write_parquet(src / name, [images[i] for i in indices], [_face_name(i) for i in indices],
                   **_attribute_columns(labels[list(indices)], encoding))
  return src


def _write_folder(folder: Path, images: dict[str, bytes], attribute_names: list[str] = (),
                  attribute_rows: dict[str, list[str]] | None = None,
                  partition: dict[str, int] | None = None) -> Path:
  """The images as files, with list_attr_celeba.txt and list_eval_partition.txt if given."""
  (folder / "images").mkdir(parents=True)
  for name, data in images.items():
    (folder / "images" / name).write_bytes(data)
  if attribute_rows is not None:
    (folder / "list_attr_celeba.txt").write_text(
        f"{len(attribute_rows)}\n{' '.join(attribute_names)}\n" +
        "".join(f"{name} {' '.join(row)}\n" for name, row in attribute_rows.items()))
  if partition is not None:
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{name} {split}\n" for name, split in partition.items()))
  return folder


def _without_fingerprint(metadata: dict) -> dict:
  return {k: v for k, v in metadata.items() if k != "source_fingerprint"}


def _skipped(out: Path) -> dict[str, str]:
  return dict(line.split("\t") for line in (out / "skipped.txt").read_text().splitlines())


@pytest.mark.parametrize("encoding", ["bool", "0/1", "-1/+1"])
def test_each_attribute_encoding_gives_the_shards_of_the_text_listings(faces, tmp_path, encoding):
  images, labels = faces
  src = _write_split_files(tmp_path / "hf", faces, encoding)
  partition = {_face_name(i): PARTITION_OF_FILE[Path(name).name.split("-")[0]]
               for name, indices in SPLIT_FILES.items() for i in indices}
  folder = _write_folder(
      tmp_path / "folder", {_face_name(i): images[i] for i in range(NUM_FACES)},
      list(ATTRIBUTE_NAMES), {_face_name(i): [str(v) for v in labels[i]] for i in range(NUM_FACES)},
      partition)
  got = celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  want = celeba_prepare.prepare(folder, tmp_path / "want", CONFIG)
  # The columns (10 of CelebA's 40), written in reverse, come back in CelebA's order.
  assert got["attribute_names"] == list(ATTRIBUTE_NAMES)
  assert {s: v["count"] for s, v in got["splits"].items()} == {"train": 8, "valid": 2, "test": 2}
  assert _without_fingerprint(got) == _without_fingerprint(want)
  assert _shard_bytes(tmp_path / "out") == _shard_bytes(tmp_path / "want")
  assert (tmp_path / "out" / "skipped.txt").read_text() == ""


def test_a_table_without_attribute_columns_or_paths_is_a_folder_without_listings(
    faces, tmp_path, monkeypatch):
  images, _ = faces
  src = _write_parquet(tmp_path / "faces.parquet", images, paths=None, row_group_size=5,
                       celeb_id=pa.array(np.arange(NUM_FACES)))
  source = celeba_prepare.scan_source(src)
  # Named by row, in row order: the folder's names sort alike.
  assert source.names == [f"faces.parquet:{i:02d}" for i in range(NUM_FACES)]
  assert source.parquet_rows[source.names[7]] == celeba_prepare.ParquetRow(src, 1, 2)
  folder = _write_folder(tmp_path / "folder", {_face_name(i): images[i] for i in range(NUM_FACES)})
  reads = []
  real_read_row_group = pq.ParquetFile.read_row_group

  def note_and_read(parquet, index, **kwargs):
    reads.append(index)
    return real_read_row_group(parquet, index, **kwargs)

  monkeypatch.setattr(pq.ParquetFile, "read_row_group", note_and_read)
  got = celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  # Once each, though the two shards share the middle one.
  assert reads == [0, 1, 2]
  want = celeba_prepare.prepare(folder, tmp_path / "want", CONFIG)
  assert got["attribute_names"] is None and got["splits"]["train"]["count"] == NUM_FACES
  assert _without_fingerprint(got) == _without_fingerprint(want)
  assert _shard_bytes(tmp_path / "out") == _shard_bytes(tmp_path / "want")
  assert shards.PreparedImages(tmp_path / "out")[0]["label"].shape == (0,)


@pytest.mark.parametrize("paths, by_path", [
    (["a/1.png", "b/2.png", "a/3.png", "4.png"], True),
    (["1.png", "2.png", None, "4.png"], False),  # one without a path
    (["a/1.png", "b/1.png", "3.png", "4.png"], False),  # two of one name
    (["2.png", "1.png", "3.png", "4.png"], False),  # sorted names would not follow the rows
])
def test_rows_are_named_by_their_paths_only_when_those_name_them_all_in_row_order(
    faces, tmp_path, paths, by_path):
  src = tmp_path / "src"
  _write_parquet(src / "train.parquet", faces[0][:2], paths[:2])
  _write_parquet(src / "train2.parquet", faces[0][2:4], paths[2:])
  source = celeba_prepare.scan_source(src)
  want = ([Path(p).name for p in paths] if by_path else
          ["train.parquet:0", "train.parquet:1", "train2.parquet:0", "train2.parquet:1"])
  assert source.names == want
  assert [source.parquet_rows[n] for n in want] == [
      celeba_prepare.ParquetRow(src / f, 0, row) for f in ("train.parquet", "train2.parquet")
      for row in (0, 1)]


def test_splits_come_from_the_file_names(faces, tmp_path):
  images, _ = faces
  src = tmp_path / "src"
  splits = {"valid-00000-of-00001.parquet": "valid", "validation.parquet": "valid",
            "test_part.parquet": "test", "train-0.parquet": "train", "faces.parquet": "train",
            "testimonials.parquet": "train"}
  want = {}
  for k, name in enumerate(sorted(splits)):  # faces in file order, so named by their paths
    face_names = [_face_name(i) for i in range(2 * k, 2 * k + 2)]
    _write_parquet(src / "nested" / name, images[2 * k:2 * k + 2], face_names)
    want.update(dict.fromkeys(face_names, splits[name]))
  source = celeba_prepare.scan_source(src)
  assert {name: celeba_prepare.split_of(source, name) for name in source.names} == want
  metadata = celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  assert {s: v["count"] for s, v in metadata["splits"].items()} == \
      {"train": 6, "valid": 4, "test": 2}
  test_only = celeba_prepare.prepare(src, tmp_path / "test", dataclasses.replace(CONFIG,
                                                                                split="test"))
  assert test_only["splits"] == {"test": metadata["splits"]["test"]}
  assert _shard_bytes(tmp_path / "test") == {
      name: data for name, data in _shard_bytes(tmp_path / "out").items()
      if name.startswith("test-")}


def test_bad_images_and_values_are_skipped_and_listed_as_for_a_folder(faces, tmp_path,
                                                                     monkeypatch):
  images, labels = faces
  images = list(images)
  large = files.png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
  monkeypatch.setattr(celeba_prepare, "MAX_IMAGE_FILE_BYTES", len(large) - 1)
  assert max(map(len, images)) <= celeba_prepare.MAX_IMAGE_FILE_BYTES
  images[0] = images[0][:len(images[0]) // 2]  # truncated
  images[1] = b"not an image"
  images[2] = files.png_bytes(np.zeros((4, 4, 3), np.uint8))  # too small
  images[3] = large
  images[-1] = None  # a row without image bytes
  bald = [1] * NUM_FACES
  bald[4], bald[5] = 2, None
  columns = {**_attribute_columns(labels, "-1/+1"), "Bald": pa.array(bald, pa.int8())}
  src = _write_parquet(tmp_path / "faces.parquet", images,
                       [_face_name(i) for i in range(NUM_FACES)], **columns)
  # The folder's listing has the same values, a null written as a word.
  rows = {_face_name(i): [str(bald[i]) if name == "Bald" else str(labels[i, k])
                          for k, name in enumerate(ATTRIBUTE_NAMES)]
          for i in range(NUM_FACES - 1)}
  folder = _write_folder(tmp_path / "folder", dict(zip(rows, images)), list(ATTRIBUTE_NAMES),
                         rows)
  got = celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  want = celeba_prepare.prepare(folder, tmp_path / "want", CONFIG)
  skipped = _skipped(tmp_path / "out")
  assert skipped.pop(_face_name(NUM_FACES - 1)) == "no image bytes"
  assert skipped == _skipped(tmp_path / "want")
  assert sorted(skipped) == [_face_name(i) for i in range(6)]
  assert skipped[_face_name(1)] == "not an image PIL can read"
  assert skipped[_face_name(2)].startswith("size 4x4")
  assert skipped[_face_name(3)] == (f"a file of {len(large):,} bytes, above the "
                                    f"{len(large) - 1:,} an image may take")
  assert all(skipped[_face_name(i)].startswith("malformed attribute row") for i in (4, 5))
  assert got["splits"]["train"]["count"] == want["splits"]["train"]["count"] == NUM_FACES - 7
  assert _shard_bytes(tmp_path / "out") == _shard_bytes(tmp_path / "want")


@pytest.mark.parametrize("dies_in_shard", [1, 2])
def test_an_interrupted_run_is_finished_by_a_rerun(faces, tmp_path, monkeypatch, dies_in_shard):
  src = _write_split_files(tmp_path / "hf", faces, "bool")
  config = dataclasses.replace(CONFIG, num_shards=3)
  celeba_prepare.prepare(src, tmp_path / "clean", config)
  _prepare_dying_in_shard(src, tmp_path / "out", config, monkeypatch, dies_in_shard)
  assert not (tmp_path / "out" / "metadata.json").exists()
  rewritten = _shards_rewritten_by_rerun(src, tmp_path / "out", config, monkeypatch)
  # Resumed from the shard it died in: the second starts in the middle of a row group.
  all_shards = [name for split in shards.SPLITS
                for name in shards.load_metadata(tmp_path / "clean")["splits"][split]["shards"]]
  assert rewritten == all_shards[dies_in_shard - 1:]
  assert _shard_bytes(tmp_path / "out") == _shard_bytes(tmp_path / "clean")
  assert shards.load_metadata(tmp_path / "out") == shards.load_metadata(tmp_path / "clean")
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
      sorted(p.name for p in (tmp_path / "clean").iterdir())


def test_the_fingerprint_follows_names_image_sizes_attributes_and_splits(faces, tmp_path):
  images, labels = faces
  paths = [_face_name(i) for i in range(NUM_FACES)]
  columns = _attribute_columns(labels, "bool")
  flipped = {**columns, "Smiling": pa.array(labels[:, ATTRIBUTE_NAMES.index("Smiling")] < 0)}
  other_face = files.png_bytes(np.zeros((32, 32, 3), np.uint8))
  assert len(other_face) != len(images[5])
  sources = {
      "original": ("train.parquet", images, paths, columns),
      "rewritten": ("train.parquet", images, paths, columns),
      "renamed": ("train.parquet", images, paths[:-1] + ["face_999.png"], columns),
      "another image": ("train.parquet", images[:5] + [other_face] + images[6:], paths, columns),
      "an attribute": ("train.parquet", images, paths, flipped),
      "a split": ("test.parquet", images, paths, columns),
  }
  fingerprints = {}
  for change, (name, file_images, file_paths, file_columns) in sources.items():
    src = _write_parquet(tmp_path / change / name, file_images, file_paths, **file_columns)
    fingerprints[change] = celeba_prepare.scan_source(src.parent).fingerprint
  assert fingerprints.pop("rewritten") == fingerprints["original"]
  assert len(set(fingerprints.values())) == len(fingerprints)


def test_an_out_of_another_source_or_holding_other_files_is_refused(faces, tmp_path):
  images, labels = faces
  src = _write_split_files(tmp_path / "hf", faces, "bool")
  celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
  shutil.copytree(src, tmp_path / "changed")
  name, indices = next(iter(SPLIT_FILES.items()))
  _write_parquet(tmp_path / "changed" / name, [images[i] for i in indices],
                 [_face_name(i) for i in indices],
                 **_attribute_columns(-labels[list(indices)], "bool"))
  with pytest.raises(celeba_prepare.PrepareError, match="different configuration.*"
                                                        "source_fingerprint"):
    celeba_prepare.prepare(tmp_path / "changed", tmp_path / "out", CONFIG)
  assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
  (tmp_path / "foreign").mkdir()
  (tmp_path / "foreign" / "notes.txt").write_text("the user's own\n")
  with pytest.raises(celeba_prepare.PrepareError, match=r"holds files this tool did not write "
                                                        r"\(notes.txt\)"):
    celeba_prepare.prepare(src, tmp_path / "foreign", CONFIG)
  assert [p.name for p in (tmp_path / "foreign").iterdir()] == ["notes.txt"]


def _bad_source(tmp_path: Path, faces, kind: str) -> tuple[Path, str]:
  """A --src with one fault, and the start of the message that must name it."""
  images = faces[0][:2]
  src = tmp_path / "src"
  if kind == "no image column":
    path = src / "train.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"picture": images}), path)
    return src, f"--src {path} has no image column of {{bytes, path}} structs (Hugging Face's " \
                f"Image feature); its columns: picture"
  if kind == "image column of strings":
    path = src / "train.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"image": ["a.png", "b.png"]}), path)
    return src, f"--src {path} has no image column of {{bytes, path}} structs (Hugging Face's " \
                f"Image feature); its image column is string"
  if kind == "not parquet":
    path = src / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<html>429 Too Many Requests</html>")
    return path, f"--src {path} is not a readable parquet file ("
  if kind == "attribute of floats":
    path = _write_parquet(src / "train.parquet", images, None, Male=pa.array([1.0, -1.0]))
    return src, f"--src {path}: column Male is double; expected an attribute as bools or integers"
  if kind == "files with other attributes":
    _write_parquet(src / "train.parquet", images, None, Male=[True, False], Young=[True, True])
    _write_parquet(src / "test.parquet", images, None, Male=[True, False])
    return src, f"--src {src}: test.parquet and train.parquet have different attribute columns " \
                f"(Young in only one); expected the same columns in every file"
  assert kind == "parquet beside images"
  _write_parquet(src / "data" / "train.parquet", images, None)
  (src / "preview.png").write_bytes(images[0])
  return src, f"--src {src} holds both parquet files ({src / 'data' / 'train.parquet'}) and " \
              f"images ({src / 'preview.png'}); expected one kind"


@pytest.mark.parametrize("kind", ["no image column", "image column of strings", "not parquet",
                                  "attribute of floats", "files with other attributes",
                                  "parquet beside images"])
def test_bad_parquet_input_is_one_line_naming_the_file_before_anything_is_written(
    faces, tmp_path, kind):
  src, message = _bad_source(tmp_path, faces, kind)
  with pytest.raises(celeba_prepare.PrepareError) as error:
    celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  assert str(error.value).startswith(message) and "\n" not in str(error.value)
  assert not (tmp_path / "out").exists()


def test_without_pyarrow_parquet_is_refused_naming_the_extra(faces, tmp_path, monkeypatch):
  src = _write_parquet(tmp_path / "train.parquet", faces[0][:2], None)
  folder = _write_folder(tmp_path / "folder", {"a.png": faces[0][0]})
  for module in ("pyarrow", "pyarrow.parquet"):
    monkeypatch.setitem(sys.modules, module, None)  # import then raises ImportError
  with pytest.raises(celeba_prepare.PrepareError) as error:
    celeba_prepare.prepare(src, tmp_path / "out", CONFIG)
  assert str(error.value) == (f'--src {src}: reading parquet files needs pyarrow: '
                              f'pip install -e ".[parquet]"')
  assert not (tmp_path / "out").exists()
  # Other sources need no pyarrow.
  assert celeba_prepare.prepare(folder, tmp_path / "folder_out", CONFIG)["splits"]["train"][
      "count"] == 1


def test_real_celeba_rows_are_checked_and_labelled_as_the_official_zip(tmp_path):
  """A few sample faces as Hugging Face's CelebA holds them (paths img_align_celeba/NNNNNN.jpg,
  the 40 attributes as bools) against the official zip and listing."""
  if not (SAMPLE / "img_align_celeba.zip").exists():
    pytest.skip(f"no CelebA sample at {SAMPLE}")
  with zipfile.ZipFile(SAMPLE / "img_align_celeba.zip") as archive:
    members = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:6]
    images = {Path(m).name: archive.read(m) for m in members}
  lines = (SAMPLE / "list_attr_celeba.txt").read_text().splitlines()
  attribute_names = lines[1].split()
  rows = {line.split()[0]: line.split()[1:] for line in lines[2:]
          if line.split()[0] in images}
  # One face of another size, which CelebA's names must not have.
  wrong_size = next(iter(images))
  images[wrong_size] = files.png_bytes(np.zeros((64, 64, 3), np.uint8))
  zip_src = tmp_path / "zip"
  zip_src.mkdir()
  with zipfile.ZipFile(zip_src / "img_align_celeba.zip", "w") as archive:
    for name, data in images.items():
      archive.writestr(f"img_align_celeba/{name}", data)
  (zip_src / "list_attr_celeba.txt").write_text(
      f"{len(rows)}\n{' '.join(attribute_names)}\n" +
      "".join(f"{name} {' '.join(values)}\n" for name, values in rows.items()))
  values = np.array([[int(v) for v in rows[name]] for name in images])
  src = _write_parquet(tmp_path / "hf" / "data" / "train-00000-of-00001.parquet",
                       list(images.values()), [f"img_align_celeba/{n}" for n in images],
                       **{name: pa.array(values[:, k] > 0)
                          for k, name in enumerate(attribute_names)})
  config = dataclasses.replace(CONFIG, crop=178)
  got = celeba_prepare.prepare(src.parents[1], tmp_path / "out", config)
  want = celeba_prepare.prepare(zip_src, tmp_path / "want", config)
  assert got["attribute_names"] == attribute_names == list(celeba_prepare.CELEBA_ATTRIBUTE_NAMES)
  assert list(_skipped(tmp_path / "out")) == [wrong_size]
  assert _skipped(tmp_path / "out") == _skipped(tmp_path / "want")
  assert _without_fingerprint(got) == _without_fingerprint(want)
  assert _shard_bytes(tmp_path / "out") == _shard_bytes(tmp_path / "want")


def test_cli_prepares_a_single_parquet_file(faces, tmp_path):
  images, labels = faces
  src = _write_parquet(tmp_path / "valid-00000-of-00001.parquet", images,
                       [_face_name(i) for i in range(NUM_FACES)],
                       **_attribute_columns(labels, "0/1"))
  result = run_module("experiments.prepare_celeba", "--src", src, "--out", tmp_path / "out",
                      "--resolution", 16, "--crop", 32, "--num_shards", 1, "--num_workers", 1)
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"wrote {NUM_FACES} images to {tmp_path / 'out'} (train 0, valid {NUM_FACES}, test 0)")
  prepared = shards.PreparedImages(tmp_path / "out", "valid")
  assert [list(prepared[i]["label"]) for i in range(len(prepared))] == labels.tolist()
  metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
  assert metadata["attribute_names"] == list(ATTRIBUTE_NAMES)
