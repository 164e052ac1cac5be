"""Configs are checked whole before anything is written: one line, naming the key."""

import importlib
import re
from pathlib import Path

import pytest

from dcgan_jax import config_checks, run_dir, train
from experiments.configs import common
from tests.cli import train as train_cli
from tests.runs import tiny_config

PRESET_FILES = sorted(p.stem for p in Path("experiments/configs").glob("*.py")
                      if p.stem not in ("__init__", "common"))


def test_every_key_of_the_configs_has_a_rule_and_every_preset_passes():
  keys = set(run_dir.flatten(run_dir.config_as_dict(common.base_config())))
  assert keys == set(config_checks.RULES)
  for name in PRESET_FILES:
    for variant in ("", "tiny"):
      config_checks.check_config(
          importlib.import_module(f"experiments.configs.{name}").get_config(variant))


@pytest.mark.parametrize("key, value, expected", [
    ("model.nf", 0, "an integer from 1 to 8,192"),
    ("model.z_dim", 0, "an integer from 1 to 65,536"),
    ("data.resolution", 0, "a power of two from 8 to 1024"),
    ("data.resolution", 48, "a power of two from 8 to 1024"),
    ("data.resolution", 2048, "a power of two from 8 to 1024"),
    ("train.num_steps", 0, "an integer from 1 to 1,000,000,000"),
    ("train.num_steps", -5, "an integer from 1 to 1,000,000,000"),
    ("train.batch_size", 2.5, "an integer from 1 to 1,048,576"),
    ("train.g_lr", float("nan"), "a positive number"),
    ("train.d_beta2", 1.0, "a number in [0, 1)"),
    ("train.g_ema_decay", -0.1, "a number in [0, 1)"),
    ("train.write_report", 1, "true or false"),
    ("eval.every_steps", -1, "an integer >= 0"),
    ("model.dtype", "float16", "float32 or bfloat16"),
    ("data.prefetch", 10_000_000, "an integer from 0 to 1,024"),
    ("train.num_samples", 100_000_000, "an integer from 1 to 200,000"),
    ("seed", 10**20, "an integer from 0 to 4,294,967,295"),
    ("seed", -1, "an integer from 0 to 4,294,967,295"),
])
def test_bad_values_are_refused_before_anything_is_written(tmp_path, key, value, expected):
  config = tiny_config()
  with config.unlocked():
    *section, leaf = key.split(".")
    # Bypass ConfigDict's type check to reach the rule, as a config file's value would.
    (config[section[0]] if section else config)._fields[leaf] = value
  with pytest.raises(ValueError, match="^" + re.escape(f"config key {key}={value!r}: expected "
                                                      f"{expected}") + "$"):
    train.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_an_unknown_key_in_a_config_names_the_closest_known_one():
  config = tiny_config()
  with config.unlocked():
    config.train.num_step = 5
  with pytest.raises(ValueError, match=r"^unknown config key train.num_step; did you mean "
                                       r"train.num_steps\?$"):
    config_checks.check_config(config)


@pytest.mark.parametrize("args, message", [
    (["--config.train.num_step=5"],
     "error: --config.train.num_step=5: no config key 'num_step'; did you mean 'num_steps'?"),
    # Each starts the command: the quick check runs the first only.
    pytest.param(["--config.train.num_steps=abc"],
                 "error: flag --config.train.num_steps=abc: invalid literal for int() with base "
                 "10: 'abc'", marks=pytest.mark.slow),
    pytest.param(["--config.model.nf=0"],
                 "error: config key model.nf=0: expected an integer from 1 to 8,192",
                 marks=pytest.mark.slow),
    pytest.param(["--config=experiments/configs/nothing.py"],
                 "error: --config: No such file or directory: 'experiments/configs/nothing.py'",
                 marks=pytest.mark.slow),
])
def test_cli_bad_flags_are_one_line_and_exit_code_2(tmp_path, args, message):
  result = train_cli(tmp_path / "run", *args, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [message]
  assert not (tmp_path / "run").exists()


def test_an_unusable_workdir_is_one_line(tmp_path):
  (tmp_path / "file").write_text("mine")
  with pytest.raises(ValueError, match=r"^--workdir .*file is a file, not a directory$"):
    train.train_and_evaluate(tiny_config(), tmp_path / "file")
  with pytest.raises(ValueError, match=r"^--workdir .*file/run cannot be written: "):
    train.train_and_evaluate(tiny_config(), tmp_path / "file" / "run")
  assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("name", run_dir.SUBDIRECTORIES)
def test_a_file_where_the_run_writes_a_directory_is_one_line_before_training(tmp_path, name):
  (tmp_path / name).write_text("mine")
  with pytest.raises(ValueError, match=rf"^--workdir's {re.escape(str(tmp_path / name))} is a "
                                       rf"file, not a directory$"):
    train.train_and_evaluate(tiny_config(), tmp_path)
  assert sorted(p.name for p in tmp_path.iterdir()) == [name]
