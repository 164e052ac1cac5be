"""Progressive growing end to end: the `progan128:tiny` preset grows 4 -> 16 px in 14 steps
(4x4: steps 0-1; 8x8: fades in over 2-3, stable 4-5, batch 16; 16x16: fades in over 6-9,
stable 10-13, batch 8)."""

import json

import jax
import numpy as np
import pytest
from PIL import Image

from dcgan_jax import checkpointing, generate, growth, summaries, train
from dcgan_jax.train_state import abstract_state, setup_from_config
from experiments.configs import progan128
from tests.cli import run_module, with_xla_flags

pytestmark = pytest.mark.slow


def _config(**overrides):
  config = progan128.get_config("tiny")
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  """The whole tiny schedule in one go, evaluated every 4 steps, with its report."""
  workdir = tmp_path_factory.mktemp("straight")
  final = train.train_and_evaluate(
      _config(**{"eval.every_steps": 4, "train.write_report": True}), workdir)
  return workdir, final


@pytest.mark.bit_exact
def test_resumes_exactly_across_a_stage_boundary_and_in_the_middle_of_a_fade_in(
    straight_run, tmp_path):
  straight_dir, straight = straight_run
  # Stopped after 4x4's last step, the run resumes into 8x8's first fade-in step; stopped
  # after step 8 (alpha 0.5 of 16x16's fade-in), it resumes mid fade-in.
  assert train.train_and_evaluate(_config(**{"train.num_steps": 2}), tmp_path)["step"] == 2
  early = generate.load_run(tmp_path)
  assert early.variant.image_resolution == 4
  assert train.train_and_evaluate(_config(**{"train.num_steps": 8}), tmp_path)["step"] == 8
  resumed = train.train_and_evaluate(_config(), tmp_path)
  assert resumed["state_fingerprint"] == straight["state_fingerprint"]
  logged = [row for row in summaries.read_metrics(tmp_path / "metrics.jsonl") if "d_loss" in row]
  straight_logged = [row for row in summaries.read_metrics(straight_dir / "metrics.jsonl")
                     if "d_loss" in row]
  assert [row["step"] for row in logged] == list(range(2, 15, 2))
  assert [row["d_loss"] for row in logged] == [row["d_loss"] for row in straight_logged]


def test_each_logged_step_trains_at_its_stage_and_fade_in(straight_run):
  workdir, _ = straight_run
  config = _config()
  schedule = growth.Schedule(
      growth.parse_batch_sizes(config.growth.batch_sizes, 16, config.train.batch_size),
      config.growth.fade_images, config.growth.stable_images)
  rows = [row for row in summaries.read_metrics(workdir / "metrics.jsonl") if "alpha" in row]
  assert [row["step"] for row in rows] == list(range(2, 15, 2))
  for row in rows:
    stage = schedule.stage_at(row["step"] - 1)
    assert row["resolution"] == 4 * 2**stage
    assert row["alpha"] == pytest.approx(float(schedule.alpha(stage, row["step"] - 1)))
  assert [rows[i]["alpha"] for i in (1, 3)] == [0.5, 0.25]  # steps 4 and 8: fading in


def test_samples_evaluation_and_report_follow_the_growth(straight_run):
  workdir, final = straight_run
  sizes = {int(p.stem.removeprefix("step_")): Image.open(p).size
           for p in (workdir / "samples").glob("step_*.png")}
  # 16 samples in a 4x4 grid with 2 px padding: 8x8 faces at step 4, 16x16 after.
  assert sizes == {4: (42, 42), 8: (74, 74), 12: (74, 74), 14: (74, 74)}
  rows = summaries.read_metrics(workdir / "metrics.jsonl")
  evaluated = {row["step"]: row for row in rows if "eval_swd" in row}
  assert sorted(evaluated) == [4, 8, 12, 14]
  assert all(np.isfinite(row["eval_swd"]) for row in evaluated.values())
  assert [evaluated[step]["eval_resolution"] for step in (4, 8, 12, 14)] == [8, 16, 16, 16]
  # Only full-resolution scores compete for the best checkpoint.
  assert final["eval"]["best"]["step"] in (8, 12, 14)
  kept = [int(p.name) for p in (workdir / "checkpoints_best").iterdir() if p.name.isdigit()]
  assert kept and set(kept) <= {8, 12, 14}
  with Image.open(workdir / "report" / "progress.gif") as gif:
    assert gif.n_frames == 4 and gif.size[0] >= 74
  run = generate.load_run(workdir)
  assert run.variant.image_resolution == 16
  assert generate.generate(run.variant, run.state, *run.inputs(0, 3)).shape == (3, 16, 16, 3)


def test_four_devices_grow_the_same_model(straight_run, tmp_path):
  straight_dir, _ = straight_run
  run_module("experiments.celeba", "--workdir", tmp_path, "--config", "progan128:tiny",
             env=with_xla_flags("--xla_force_host_platform_device_count=4"))
  assert json.loads((tmp_path / "final.json").read_text())["num_devices"] == 4
  config = _config()
  setup = setup_from_config(config)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  one, four = (checkpointing.restore_state(d / "checkpoints", abstract_state(setup, sharding))
               for d in (straight_dir, tmp_path))
  assert int(one.step) == int(four.step) == 14
  # Adam with beta1 = 0 moves a parameter by about +-lr per update whatever its gradient's
  # size, so rounding that flips a near-zero gradient's sign can move it by 2 lr per
  # update; a data-parallel error (a mis-sharded batch, per-device minibatch stddev)
  # moves all of them far more.
  differences = [np.abs(np.asarray(a) - np.asarray(b)).max()
                 for a, b in zip(jax.tree.leaves(one.g_params), jax.tree.leaves(four.g_params))]
  assert max(differences) <= 2 * config.train.g_lr * 14
  assert np.median(differences) < 1e-4
