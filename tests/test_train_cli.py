"""The training command as a user types it: exit codes and one-line errors."""

import json

from tests.cli import train


def test_cli_trains_then_refuses_an_incompatible_resume_naming_the_keys(tmp_path):
  train(tmp_path, "--config.train.num_steps=2", "--config.train.checkpoint_every=2")
  assert json.loads((tmp_path / "final.json").read_text())["step"] == 2
  result = train(tmp_path, "--config.model.nf=16", "--config.train.d_lr=0.001", check=False)
  assert result.returncode != 0
  message = result.stderr.strip().splitlines()[-1]
  assert "model.nf" in message and "train.d_lr" in message and "Traceback" not in result.stderr
  # The refused run left the first run's config and checkpoints as they were.
  assert json.loads((tmp_path / "config.json").read_text())["model"]["nf"] == 8
  assert json.loads((tmp_path / "final.json").read_text())["step"] == 2


def test_unknown_variant_name_is_a_one_line_error_before_anything_is_written(tmp_path):
  result = train(tmp_path / "run", "--config.loss.name=nonsaturating", check=False)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  message = result.stderr.strip().splitlines()[-1]
  assert "loss.name 'nonsaturating' is unknown" in message and "non_saturating" in message
  assert not (tmp_path / "run" / "config.json").exists()
