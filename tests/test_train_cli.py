"""The training command as a user types it: exit codes and one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from experiments.configs import synthetic
from tests.cli import REPO, run_module, train

# Trains whole runs (several, or in other processes): left out of the quick check.
pytestmark = pytest.mark.slow


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


def test_a_changed_learning_rate_is_refused_with_the_flag_that_allows_it(tmp_path):
  train(tmp_path, "--config.train.num_steps=2", "--config.train.checkpoint_every=2")
  result = train(tmp_path, "--config.train.num_steps=4", "--config.train.d_lr=0.001",
                 check=False)
  assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
  assert result.stderr.strip().endswith(
      "or --allow_changes=train.d_lr to retry from its checkpoints with this setting.")
  allowed = train(tmp_path, "--config.train.num_steps=4", "--config.train.d_lr=0.001",
                  "--allow_changes=train.d_lr")
  assert "resuming from step 2" in allowed.stdout


def test_a_length_below_the_latest_checkpoint_is_refused_and_the_run_left_as_it_is(tmp_path):
  def contents():  # but the lock, which names the last process that held it
    return {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"}

  train(tmp_path, "--config.train.num_steps=4", "--config.train.checkpoint_every=2")
  before = contents()
  result = train(tmp_path, "--config.train.num_steps=2", check=False)
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [
      f"error: {tmp_path} is at step 4, past train.num_steps 2; it is left as it is: raise "
      f"the length to continue it, or use a new --workdir"]
  assert contents() == before


@pytest.mark.parametrize("args, message", [
    # The default config (no --config), as the README's CelebA command has it.
    (["--config.data.dri=data/celeba32"], "--config.data.dri=data/celeba32: no config key 'dri'"),
    (["--config.train.num_step=10"],
     "--config.train.num_step=10: no config key 'num_step'; did you mean 'num_steps'?"),
    (["--config", "synthetic", "--config.trian.num_steps=10"],
     "--config.trian.num_steps=10: no config key 'trian'; did you mean 'train'?"),
    (["--num_steps", "10"], "Unknown command line flag 'num_steps'; config keys are set as "
                            "--config.train.num_steps=VALUE"),
    (["--config", "dcgan:small"],
     "--config: ValueError: unknown config variant 'small'; expected 'tiny' or none"),
    (["--config", "synthetic:tiny", "stray"], "unexpected arguments: ['stray']"),
])
def test_config_typos_are_one_line_with_a_hint_and_write_nothing(tmp_path, args, message):
  result = run_module("experiments.celeba", "--workdir", tmp_path / "run", *args, check=False)
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"error: {message}"]
  assert not (tmp_path / "run").exists()


def test_print_config_needs_no_workdir_and_training_does():
  printed = run_module("experiments.celeba", "--config", "synthetic:tiny", "--print_config")
  assert "num_steps:" in printed.stdout
  result = run_module("experiments.celeba", "--config", "synthetic:tiny", check=False)
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [
      "error: --workdir is required: the directory the run writes to (and resumes from)"]


def test_unknown_variant_name_is_a_one_line_error_before_anything_is_written(tmp_path):
  result = train(tmp_path / "run", "--config.loss.name=nonsaturating", check=False)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  message = result.stderr.strip().splitlines()[-1]
  assert "loss.name 'nonsaturating' is unknown" in message and "non_saturating" in message
  assert not (tmp_path / "run" / "config.json").exists()


def _stdout_lines(result) -> list[str]:
  return [line for line in result.stdout.splitlines() if not line.startswith("step ")]


def test_configs_by_name_from_any_directory_and_the_first_line_of_every_run(tmp_path):
  config = synthetic.get_config("tiny")
  images = config.data.num_images

  def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "experiments.celeba", "--workdir", "run", "--config",
         "synthetic:tiny", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)})

  first = run("--config.train.num_steps=4", "--config.train.checkpoint_every=4")
  assert first.returncode == 0, first.stderr[-2000:]
  assert _stdout_lines(first)[0] == (
      f"training 4 steps ({4 * config.train.batch_size / images:.2f} epochs of {images} images)")
  assert _stdout_lines(first)[-2:] == ["final.json run/final.json",
                                       "samples run/samples/step_0000004.png"]
  again = run("--config.train.num_steps=4", "--config.train.checkpoint_every=4")
  assert _stdout_lines(again) == ["run complete at step 4; raise train.num_steps to continue"]
  longer = run("--config.train.num_steps=6", "--config.train.checkpoint_every=4")
  assert _stdout_lines(longer)[0] == (f"training 6 steps ({6 * config.train.batch_size / images:.2f}"
                                      f" epochs of {images} images), resuming from step 4")


def _printed_length(*args) -> dict[str, str]:
  printed = run_module("experiments.celeba", "--workdir", "unused", "--config", "dcgan",
                       "--print_config", *args).stdout
  train_section = printed.split("\ntrain:\n")[1]
  return dict(line.strip().split(": ", 1) for line in train_section.splitlines()
              if line.strip().startswith(("num_steps:", "num_epochs:")))


def test_a_length_on_the_command_line_is_never_overridden():
  assert _printed_length() == {"num_epochs": "20.0", "num_steps": "10000"}
  assert _printed_length("--config.train.num_steps=200") == {"num_epochs": "null",
                                                             "num_steps": "200"}
  for unset in ("None", "0"):
    assert _printed_length(f"--config.train.num_epochs={unset}")["num_epochs"] == "null"
  both = run_module("experiments.celeba", "--workdir", "unused", "--config", "dcgan",
                    "--config.train.num_steps=200", "--config.train.num_epochs=2", check=False)
  assert both.returncode == 2
  assert both.stderr.strip().splitlines() == [
      "error: --config.train.num_steps and --config.train.num_epochs both set the length; "
      "give one"]
  unknown = run_module("experiments.celeba", "--workdir", "unused", "--config", "dcgan_gp",
                       check=False)
  assert unknown.returncode == 2
  assert unknown.stderr.strip().splitlines()[-1].startswith(
      "error: --config: no config named 'dcgan_gp'; expected a file path or one of: cdcgan,")
