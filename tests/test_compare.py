"""Presets compared over seeds: trained once, scored alike, summarised honestly."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from dcgan_jax import compare, summaries
from experiments.configs import dcgan, lsgan
from tests.cli import REPO, run_module

# Trains whole runs (several, or in other processes): left out of the quick check.
pytestmark = pytest.mark.slow

SEEDS = [0, 1]


def _configs():
  configs = {"dcgan": dcgan.get_config("tiny"), "lsgan": lsgan.get_config("tiny")}
  for config in configs.values():
    config.data.source = "synthetic"
    config.train.num_steps = config.train.checkpoint_every = config.train.sample_every = 2
  return configs


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("compare")
  return workdir, compare.compare(workdir, _configs(), SEEDS, num_samples=32)


def test_every_preset_and_seed_is_trained_and_scored_alike(compared):
  workdir, report = compared
  for name in ("dcgan", "lsgan"):
    for seed in SEEDS:
      final = json.loads((workdir / name / f"seed{seed}" / "final.json").read_text())
      config = json.loads((workdir / name / f"seed{seed}" / "config.json").read_text())
      assert final["step"] == 2 and config["seed"] == seed
  runs = report["runs"]
  assert [(r["preset"], r["seed"]) for r in runs] == [(p, s) for p in ("dcgan", "lsgan")
                                                      for s in SEEDS]
  assert len({r["scores"]["swd"] for r in runs}) == 4  # different models, different scores
  for r in runs:
    final = json.loads((workdir / r["preset"] / f"seed{r['seed']}" / "final.json").read_text())
    assert r["seconds"] == final["total_seconds"]
  assert json.loads((workdir / "compare.json").read_text()) == json.loads(json.dumps(report))


def test_summary_is_the_mean_and_sample_std_over_seeds(compared):
  workdir, report = compared
  for name, columns in report["presets"].items():
    swd = [r["scores"]["swd"] for r in report["runs"] if r["preset"] == name]
    assert columns["swd"]["values"] == swd
    np.testing.assert_allclose(columns["swd"]["mean"], np.mean(swd))
    np.testing.assert_allclose(columns["swd"]["std"], np.std(swd, ddof=1))
    assert columns["seconds"]["mean"] > 0 and columns["img_per_s"]["mean"] > 0
  table = (workdir / "compare.md").read_text().splitlines()
  assert table[0].startswith("| preset | SWD (mean ± std over 2 seeds)")
  assert [row.split("|")[1].strip() for row in table[2:]] == ["dcgan", "lsgan"]


def test_side_by_side_grids_one_per_preset(compared):
  workdir, _ = compared
  with Image.open(workdir / "compare.png") as image:
    width, height = image.size
  grid = 4 * 18 + 2  # 16 samples of 16x16, 4 per row, 2-pixel borders
  assert width == 2 * (grid + 4) and height == grid + summaries.LABEL_HEIGHT


def test_a_second_comparison_trains_nothing_again(compared):
  workdir, _ = compared
  checkpoint = workdir / "dcgan" / "seed0" / "final.json"
  before = checkpoint.stat().st_mtime_ns
  compare.train_runs(workdir, _configs(), SEEDS)
  assert checkpoint.stat().st_mtime_ns == before


def test_seeds_trained_as_one_population_score_as_trained_apart(compared, tmp_path):
  _, apart = compared
  together = compare.compare(tmp_path, _configs(), SEEDS, num_samples=32, as_population=True)
  assert [(r["preset"], r["seed"]) for r in together["runs"]] == [
      (r["preset"], r["seed"]) for r in apart["runs"]]
  for one, other in zip(together["runs"], apart["runs"]):
    assert one["scores"]["swd"] == pytest.approx(other["scores"]["swd"], rel=1e-3)
  for name in ("dcgan", "lsgan"):
    final = json.loads((tmp_path / name / "population" / "final.json").read_text())
    assert [entry["seed"] for entry in final] == SEEDS
    for run in (r for r in together["runs"] if r["preset"] == name):
      assert run["seconds"] == pytest.approx(final[0]["total_seconds"] / len(SEEDS))
  written = (tmp_path / "dcgan" / "population" / "final.json").stat().st_mtime_ns
  compare.train_runs(tmp_path, _configs(), SEEDS, as_population=True)
  assert (tmp_path / "dcgan" / "population" / "final.json").stat().st_mtime_ns == written


def test_presets_on_different_data_are_refused(tmp_path):
  configs = _configs()
  configs["lsgan"].data.resolution = 32
  with pytest.raises(ValueError, match="data.resolution"):
    compare.train_runs(tmp_path, configs, SEEDS)
  assert not any(tmp_path.iterdir())


def test_cli_refuses_an_unknown_preset_in_one_line(tmp_path):
  result = run_module("experiments.compare", "--workdir", tmp_path, "--configs", "dcgan,nope",
                      check=False)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "no preset 'nope'" in result.stderr.strip().splitlines()[-1]


def test_cli_takes_tiny_presets_and_refuses_a_mistyped_key_in_one_line(tmp_path):
  result = run_module("experiments.compare", "--workdir", tmp_path / "typo", "--configs",
                      "dcgan", "--config.data.dri=data/celeba32", check=False)
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [
      "error: --config.data.dri=data/celeba32: no config key 'dri'"]
  assert not (tmp_path / "typo").exists()
  result = run_module("experiments.compare", "--workdir", tmp_path, "--configs",
                      "dcgan:tiny,lsgan:tiny", "--seeds", "0", "--steps", 1, "--num_samples", 16,
                      "--config.data.source=synthetic", "--config.train.write_report=False")
  for name in ("dcgan:tiny", "lsgan:tiny"):
    config = json.loads((tmp_path / name / "seed0" / "config.json").read_text())
    assert (config["data"]["resolution"], config["model"]["nf"]) == (16, 8)  # the tiny form
  assert "| dcgan:tiny |" in result.stdout and "| lsgan:tiny |" in result.stdout


@pytest.mark.slow
def test_sigterm_stops_compare_in_one_line_naming_where_it_saved(tmp_path):
  command = [sys.executable, "-m", "experiments.compare", "--workdir", str(tmp_path),
             "--configs", "dcgan:tiny", "--seeds", "0", "--steps", "100000",
             "--config.data.source=synthetic", "--config.train.log_every=1"]
  process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = tmp_path / "dcgan:tiny" / "seed0" / "metrics.jsonl"
  deadline = time.time() + 240
  while not summaries.read_metrics(metrics) and time.time() < deadline:
    assert process.poll() is None, process.stderr.read()[-3000:]
    time.sleep(0.1)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 1 and len(stderr.strip().splitlines()) == 1, stderr[-3000:]
  assert re.fullmatch(rf"stopped by SIGTERM at step \d+ of 100000, saved in "
                      rf"{re.escape(str(metrics.parent / 'checkpoints'))}; run the same command "
                      rf"to resume\n", stderr), stderr


def test_cli_applies_config_keys_to_every_preset_and_prints_the_table(tmp_path):
  result = run_module(
      "experiments.compare", "--workdir", tmp_path, "--configs", "dcgan,lsgan", "--seeds", "3",
      "--steps", 1, "--num_samples", 16, "--config.data.source=synthetic",
      "--config.data.resolution=16", "--config.data.num_images=64", "--config.model.nf=8",
      "--config.model.z_dim=16", "--config.train.batch_size=16",
      "--config.train.write_report=False", "--config.eval.every_steps=0")
  for name in ("dcgan", "lsgan"):
    config = json.loads((tmp_path / name / "seed3" / "config.json").read_text())
    assert (config["data"]["source"], config["data"]["resolution"], config["model"]["nf"],
            config["train"]["num_steps"], config["seed"]) == ("synthetic", 16, 8, 1, 3)
  assert config["loss"]["name"] == "least_squares"  # the preset's own keys stay
  table = result.stdout[result.stdout.index("| preset"):].splitlines()
  assert table[0].startswith("| preset | SWD") and len(table) == 4
