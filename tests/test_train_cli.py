"""The training entry point end to end: run directory contents and reproducibility."""

import json

import numpy as np
from PIL import Image

from tests.cli import train


def _final(workdir):
  return json.loads((workdir / "final.json").read_text())


def test_run_directory_has_everything_a_user_looks_at(tiny_run):
  config = json.loads((tiny_run / "config.json").read_text())
  assert config["train"]["num_steps"] == 8 and config["data"]["source"] == "synthetic"
  assert sorted(p.name for p in (tiny_run / "checkpoints").iterdir() if p.name.isdigit()) == ["4", "8"]
  assert list(tiny_run.glob("events.out.tfevents.*"))
  grids = sorted(p.name for p in (tiny_run / "samples").iterdir())
  assert grids == ["step_0000004.png", "step_0000008.png"]
  grid = np.asarray(Image.open(tiny_run / "samples" / grids[-1]))
  # 16 samples of 16x16 in a 4x4 grid with 2-pixel borders.
  assert grid.shape == (4 * 18 + 2, 4 * 18 + 2, 3) and grid.std() > 0
  rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [2, 4, 6, 8]
  for row in rows:
    assert {"d_loss", "g_loss", "d_real", "d_fake", "img_per_s", "elapsed_s"} <= row.keys()
  final = _final(tiny_run)
  assert final["step"] == 8 and final["num_devices"] == 1
  assert final["metrics"]["d_loss"] == rows[-1]["d_loss"]
  assert len(final["state_fingerprint"]) == 64


def test_tensorboard_events_hold_scalars_and_sample_images(tiny_run):
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(tiny_run))
  events.Reload()
  assert [e.step for e in events.Scalars("d_loss")] == [2, 4, 6, 8]
  assert [e.step for e in events.Images("samples")] == [4, 8]


def test_same_config_and_seed_reproduce_the_fingerprint(tiny_run, tmp_path):
  train(tmp_path)
  assert _final(tmp_path)["state_fingerprint"] == _final(tiny_run)["state_fingerprint"]


def test_stopping_and_resuming_gives_the_uninterrupted_fingerprint(tiny_run, tmp_path):
  train(tmp_path, "--config.train.num_steps=4")
  assert _final(tmp_path)["step"] == 4
  train(tmp_path)
  assert _final(tmp_path)["state_fingerprint"] == _final(tiny_run)["state_fingerprint"]
  steps_logged = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert steps_logged == [2, 4, 6, 8]


def test_a_different_seed_gives_a_different_fingerprint(tiny_run, tmp_path):
  train(tmp_path, "--config.seed=1")
  assert _final(tmp_path)["state_fingerprint"] != _final(tiny_run)["state_fingerprint"]


def test_resuming_with_an_incompatible_config_names_the_keys(tmp_path):
  train(tmp_path, "--config.train.num_steps=2", "--config.train.checkpoint_every=2")
  result = train(tmp_path, "--config.model.nf=16", "--config.train.d_lr=0.001", check=False)
  assert result.returncode != 0
  message = result.stderr.strip().splitlines()[-1]
  assert "model.nf" in message and "train.d_lr" in message and "Traceback" not in result.stderr
  # The refused run left the first run's config and checkpoints as they were.
  assert json.loads((tmp_path / "config.json").read_text())["model"]["nf"] == 8
  assert _final(tmp_path)["step"] == 2


def test_discriminator_learns_to_separate_real_from_fake(tmp_path):
  train(tmp_path, "--config.train.num_steps=40", "--config.train.log_every=5",
        "--config.train.sample_every=40", "--config.train.checkpoint_every=40")
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  first, last = rows[0], rows[-3:]
  # Untrained, D cannot tell: loss near 2 ln 2 and D(x) ~ D(G(z)).
  assert abs(first["d_loss"] - 2 * np.log(2)) < 0.06
  assert abs(first["d_real"] - first["d_fake"]) < 0.05
  assert np.mean([r["d_loss"] for r in last]) < first["d_loss"] - 0.07
  assert np.mean([r["d_real"] - r["d_fake"] for r in last]) > 0.06
