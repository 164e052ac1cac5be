"""data.dir naming a source (a folder of faces, parquet files) rather than prepared shards:
prepared once into the cache, then read from there by every run and reader."""

import json
import re
import shutil
import zipfile
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pyarrow as pa
import pytest

from dcgan_jax import files, generate, train
from dcgan_jax.data import celeba_prepare, shards, sources
from dcgan_jax.eval import evaluator
from experiments.configs import cdcgan
from tests.test_celeba import SAMPLE, _shard_bytes, _write_faces
from tests.test_parquet import _write_parquet

NUM_FACES = 40
RESOLUTION = 16  # the :tiny variants'


@pytest.fixture(scope="module")
def celeba_faces(tmp_path_factory) -> dict[str, bytes]:
  """The first NUM_FACES faces of the CelebA sample, by name."""
  if not (SAMPLE / "img_align_celeba.zip").exists():
    pytest.skip(f"no CelebA sample at {SAMPLE}")
  with zipfile.ZipFile(SAMPLE / "img_align_celeba.zip") as archive:
    members = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:NUM_FACES]
    return {Path(m).name: archive.read(m) for m in members}


@pytest.fixture(scope="module")
def face_folder(celeba_faces, tmp_path_factory) -> Path:
  """The faces in CelebA's layout: img_align_celeba/ with the sample's listings beside it."""
  root = tmp_path_factory.mktemp("celeba")
  (root / "img_align_celeba").mkdir()
  for name, data in celeba_faces.items():
    (root / "img_align_celeba" / name).write_bytes(data)
  for listing in ("list_attr_celeba.txt", "list_eval_partition.txt"):
    shutil.copy(SAMPLE / listing, root / listing)
  return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
  """The prepared-data cache, under tmp_path: never the user's."""
  monkeypatch.setenv("DCGAN_JAX_CACHE", str(tmp_path / "cache"))
  assert shards.prepared_cache() == tmp_path / "cache" / "prepared"
  return shards.prepared_cache()


def _tiny_conditional(data_dir: Path, num_steps: int, attributes: str = "Male,Eyeglasses"
                      ) -> ml_collections.ConfigDict:
  config = cdcgan.get_config("tiny")
  config.data.dir, config.model.attributes = str(data_dir), attributes
  config.train.num_steps = num_steps
  return config


def _data_config(data_dir: Path) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"source": "celeba", "dir": str(data_dir), "split": "train",
                                    "resolution": RESOLUTION, "num_images": 0})


def _entry(src: Path, crop: int = 178) -> Path:
  """The cache entry a source is prepared into, as the README names it."""
  fingerprint = celeba_prepare.scan_source(src).fingerprint
  return shards.prepared_cache() / f"{fingerprint[:16]}-crop{crop}-{RESOLUTION}px"


def _contents(folder: Path) -> dict[Path, tuple[bytes, int]]:
  return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _forbid_preparing(monkeypatch) -> None:
  """As a new process would start: nothing scanned yet, and preparing is a failure."""
  sources._scanned_fingerprint.cache_clear()

  def fail(*args, **kwargs):
    raise AssertionError(f"prepared again: {args}")

  monkeypatch.setattr(celeba_prepare, "prepare", fail)


def test_a_folder_of_faces_is_prepared_once_as_prepare_celeba_would_and_then_reused(
    face_folder, cache, tmp_path, monkeypatch):
  real_prepare, prepared = celeba_prepare.prepare, []

  def note_and_prepare(src, out, config, num_workers=None):
    prepared.append(out)
    return real_prepare(src, out, config, num_workers)

  monkeypatch.setattr(celeba_prepare, "prepare", note_and_prepare)
  run = tmp_path / "run"
  assert train.train_and_evaluate(_tiny_conditional(face_folder, 4), run)["step"] == 4
  entry = _entry(face_folder)
  assert prepared == [entry] and list(cache.iterdir()) == [entry]
  assert json.loads((run / "config.json").read_text())["data"]["dir"] == str(face_folder)
  # The shards and data identity of the same images prepared explicitly, with the same
  # crop and resolution: a run may switch between the two.
  explicit = tmp_path / "explicit"
  real_prepare(face_folder, explicit, celeba_prepare.PrepareConfig(resolution=RESOLUTION))
  assert _shard_bytes(entry) == _shard_bytes(explicit) != {}
  assert shards.load_metadata(entry) == shards.load_metadata(explicit)
  identity = json.loads((run / "data.json").read_text())
  assert identity == sources.data_identity(_data_config(explicit), 0)
  assert train.train_and_evaluate(_tiny_conditional(explicit, 6), run)["step"] == 6

  before = _contents(cache.parent)
  _forbid_preparing(monkeypatch)
  assert train.train_and_evaluate(_tiny_conditional(face_folder, 8), run)["step"] == 8
  # Sampling a conditional run, and evaluating one, read the same cache entry.
  trained = generate.load_run(run)
  assert trained.source.data_dir == entry and trained.variant.attributes == ("Male",
                                                                             "Eyeglasses")
  generate.write_samples(trained, tmp_path / "men", 3, seed=0, attributes={"Male": 1})
  assert len(list((tmp_path / "men").iterdir())) == 3
  assert evaluator.cache_dir(trained.config, run) == entry
  assert _contents(cache.parent) == before


def test_hugging_face_parquet_files_train_the_conditional_preset_on_all_40_attributes(
    celeba_faces, cache, tmp_path):
  """The issue's Done criterion: flwrlabs/celeba's layout trains `cdcgan:tiny` given as
  data.dir alone."""
  lines = (SAMPLE / "list_attr_celeba.txt").read_text().splitlines()
  names = lines[1].split()
  rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
  src = tmp_path / "celeba_hf" / "data"
  files_of_split = {"train-00000-of-00001.parquet": list(celeba_faces)[:32],
                    "valid-00000-of-00001.parquet": list(celeba_faces)[32:]}
  for file_name, faces in files_of_split.items():
    values = np.array([[int(v) for v in rows[face]] for face in faces])
    _write_parquet(src / file_name, [celeba_faces[face] for face in faces],
                   [f"img_align_celeba/{face}" for face in faces], row_group_size=16,
                   **{name: pa.array(values[:, k] > 0) for k, name in enumerate(names)},
                   celeb_id=pa.array(np.arange(len(faces))))
  config = cdcgan.get_config("tiny")
  config.data.dir = str(src.parent)
  assert config.model.attributes == ""  # all the data has
  final = train.train_and_evaluate(config, tmp_path / "run")
  assert final["step"] == config.train.num_steps and np.isfinite(final["metrics"]["d_loss"])
  entry = _entry(src.parent)
  metadata = shards.load_metadata(entry)
  assert metadata["attribute_names"] == list(celeba_prepare.CELEBA_ATTRIBUTE_NAMES)
  assert {s: v["count"] for s, v in metadata["splits"].items()} == {"train": 32, "valid": 8,
                                                                    "test": 0}
  run = generate.load_run(tmp_path / "run")
  assert run.variant.attributes == celeba_prepare.CELEBA_ATTRIBUTE_NAMES
  assert run.state.d_params["AttributeClasses"]["kernel"].shape[1] == 40


@pytest.mark.parametrize("data_dir", ["notes", "notes/notes.txt", "nowhere"])
def test_a_data_dir_of_neither_shards_nor_a_source_is_one_line_before_anything_is_written(
    cache, tmp_path, data_dir):
  (tmp_path / "notes").mkdir()
  (tmp_path / "notes" / "notes.txt").write_text("the user's own\n")
  config = _tiny_conditional(tmp_path / data_dir, 4)
  with pytest.raises(ValueError) as error:
    train.train_and_evaluate(config, tmp_path / "run")
  message = str(error.value)
  assert message.startswith(f"data.dir {tmp_path / data_dir} holds no prepared shards (no "
                            f"metadata.json) and is no source that python -m "
                            f"experiments.prepare_celeba --src reads (--src {tmp_path / data_dir}")
  assert "\n" not in message
  assert not (tmp_path / "run").exists() and not cache.parent.exists()
  config.data.dir = ""
  with pytest.raises(ValueError, match="^data.source=celeba reads data.dir, which is empty"):
    train.train_and_evaluate(config, tmp_path / "run")


@pytest.fixture
def faces(tmp_path) -> Path:
  """20 random 20x20 faces: a source that prepares in moments."""
  return _write_faces(tmp_path / "faces", 20)


def test_a_stopped_preparation_is_resumed_by_the_next_reader(faces, cache, tmp_path,
                                                            monkeypatch):
  real_write_shard, written = celeba_prepare._write_shard, []

  def write_then_die(path, records):
    written.append(path.name)
    if len(written) == 1:
      return real_write_shard(path, records)
    raise KeyboardInterrupt

  monkeypatch.setattr(celeba_prepare, "_write_shard", write_then_die)
  with pytest.raises(KeyboardInterrupt):
    sources.prepared_dir(_data_config(faces))
  entry = _entry(faces)
  assert not (entry / "metadata.json").exists() and (entry / written[0]).exists()
  monkeypatch.setattr(celeba_prepare, "_write_shard", real_write_shard)
  assert sources.prepared_dir(_data_config(faces)) == entry
  celeba_prepare.prepare(faces, tmp_path / "clean",
                         celeba_prepare.PrepareConfig(resolution=RESOLUTION))
  assert _shard_bytes(entry) == _shard_bytes(tmp_path / "clean")


def _damage(faces: Path, entry: Path, damage: str) -> str:
  """Damages the prepared cache entry of `faces`; returns the start of the error that must
  name it."""
  if damage == "unreadable metadata":
    (entry / "metadata.json").write_text("{")
    return f"data.dir {entry} has an unreadable metadata.json ("
  if damage == "lost shard":
    next(entry.glob("*.array_record")).unlink()
    return f"data.dir {entry} lacks shards ["
  metadata = shards.load_metadata(entry)
  (entry / "metadata.json").write_text(json.dumps({**metadata, "crop": 20}))
  return f"data.dir {faces}: its cached shards {entry} were prepared " \
         f"from other data or flags (crop 20, expected 178); "


@pytest.mark.parametrize("damage", ["unreadable metadata", "lost shard", "another crop"])
def test_a_damaged_or_foreign_cache_entry_is_one_line_saying_to_delete_it(faces, cache, damage):
  entry = sources.prepared_dir(_data_config(faces))
  message = _damage(faces, entry, damage)
  before = _contents(entry)
  with pytest.raises(ValueError) as error:
    sources.create_source(_data_config(faces), seed=0)
  assert str(error.value).startswith(message) and "\n" not in str(error.value)
  assert str(error.value).endswith(f"; delete {entry}, and the next run prepares it again")
  assert _contents(entry) == before


def test_an_entry_holding_files_of_others_is_refused_naming_it(faces, cache):
  entry = _entry(faces)
  entry.mkdir(parents=True)
  (entry / "notes.txt").write_text("the user's own\n")
  with pytest.raises(ValueError) as error:
    sources.prepared_dir(_data_config(faces))
  assert str(error.value) == (
      f"data.dir {faces} cannot be prepared into {entry}: --out {entry} holds files this tool "
      f"did not write (notes.txt); expected a new or empty directory, or an earlier output of "
      f"the same command; delete {entry} to prepare it afresh")
  assert [p.name for p in entry.iterdir()] == ["notes.txt"]


def test_one_process_prepares_a_source_at_a_time_and_several_need_it_prepared(
    faces, cache, monkeypatch):
  entry = _entry(faces)
  cache.parent.mkdir()
  with files.locked(cache.parent, "another run"):
    with pytest.raises(ValueError, match=rf"^DCGAN_JAX_CACHE {re.escape(str(cache.parent))} is "
                                         rf"in use by process \d+ on "):
      sources.prepared_dir(_data_config(faces))
  assert not entry.exists()
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  with pytest.raises(ValueError, match=rf"^data.dir {re.escape(str(faces))} is a source, not "
                                       rf"prepared shards, and a run of 2 processes does not "
                                       rf"prepare it: prepare it first with python -m "):
    sources.prepared_dir(_data_config(faces))
  assert not entry.exists()
  # Once one process has prepared it, every process of a run reads it.
  monkeypatch.setattr(jax, "process_count", lambda: 1)
  sources.prepared_dir(_data_config(faces))
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  assert sources.prepared_dir(_data_config(faces)) == entry
