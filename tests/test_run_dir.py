"""Which config changes a resumed run accepts, and writing in the run directory."""

import json
import re

import pytest

from dcgan_jax import files, run_dir
from tests.runs import train_tiny


def test_only_keys_that_change_what_is_trained_are_incompatible():
  saved = {"seed": 0, "model": {"nf": 8}, "train": {"num_steps": 8, "log_every": 2}}
  current = {"seed": 0, "model": {"nf": 16}, "train": {"num_steps": 16, "log_every": 4},
             "data": {"random_flip": False}}
  assert run_dir.incompatible_keys(saved, current) == ["data.random_flip", "model.nf"]
  assert run_dir.incompatible_keys(saved, saved) == []


def test_a_planted_link_is_never_written_through(tmp_path):
  outside = tmp_path / "someone's file"
  outside.write_text("theirs")
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / ".lock").symlink_to(outside)
  with pytest.raises(ValueError, match=f"^{re.escape(str(workdir / '.lock'))} is a symbolic link"):
    train_tiny(workdir)
  assert sorted(p.name for p in workdir.iterdir()) == [".lock"]
  (workdir / ".lock").unlink()
  (workdir / ".lock").mkdir()
  with pytest.raises(ValueError, match=f"^{re.escape(str(workdir / '.lock'))} is a directory"):
    train_tiny(workdir)
  assert sorted(p.name for p in workdir.rglob("*")) == [".lock"]
  (workdir / ".lock").rmdir()
  (workdir / "metrics.jsonl").symlink_to(outside)
  with pytest.raises(ValueError, match=f"^{re.escape(str(workdir / 'metrics.jsonl'))} is a "
                                       f"symbolic link"):
    train_tiny(workdir)
  (workdir / "metrics.jsonl").unlink()
  (workdir / files.temporary_name("config.json")).symlink_to(outside)
  train_tiny(workdir, {"train.num_steps": 2})
  assert outside.read_text() == "theirs"
  assert not (workdir / "config.json").is_symlink()
  assert json.loads((workdir / "config.json").read_text())["train"]["num_steps"] == 2


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"model": [1]}',
                                     b"[" * 100_000])
def test_a_damaged_config_json_is_one_line_naming_it(tmp_path, content):
  (tmp_path / "config.json").write_bytes(content)
  with pytest.raises(ValueError) as refused:
    train_tiny(tmp_path)
  message = str(refused.value)
  assert message.startswith(f"{tmp_path / 'config.json'} ") and "\n" not in message
  assert message.endswith("; restore it or use a new --workdir")
  assert (tmp_path / "config.json").read_bytes() == content
