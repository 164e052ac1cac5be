"""The training loop end to end, in process: run directory contents and reproducibility."""

import json
import shutil
import signal
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from dcgan_jax import generate, spread, summaries, train
from tests.runs import tiny_config, train_tiny


def _final(workdir):
  return json.loads((workdir / "final.json").read_text())


def _rows(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_run_directory_has_everything_a_user_looks_at(tiny_run):
  config = json.loads((tiny_run / "config.json").read_text())
  assert config["train"]["num_steps"] == 8 and config["data"]["source"] == "synthetic"
  assert config["model"]["arch"] == "dcgan" and config["loss"]["name"] == "non_saturating"
  assert sorted(p.name for p in (tiny_run / "checkpoints").iterdir() if p.name.isdigit()) == ["4", "8"]
  assert list(tiny_run.glob("events.out.tfevents.*"))
  grids = sorted(p.name for p in (tiny_run / "samples").iterdir())
  assert grids == ["step_0000004.png", "step_0000008.png"]
  grid = np.asarray(Image.open(tiny_run / "samples" / grids[-1]))
  # 16 samples of 16x16 in a 4x4 grid with 2-pixel borders.
  assert grid.shape == (4 * 18 + 2, 4 * 18 + 2, 3) and grid.std() > 0
  rows = _rows(tiny_run)
  assert [r["step"] for r in rows] == [2, 4, 6, 8]
  for row in rows:
    # What the step emitted (the loop's two losses, the loss's own metrics) and timing.
    assert set(row) == {"step", "d_loss", "g_loss", "d_real", "d_fake", "d_fake_after",
                        "img_per_s", "elapsed_s"}
  final = _final(tiny_run)
  assert final["step"] == 8 and final["num_devices"] == 1
  assert final["metrics"]["d_loss"] == rows[-1]["d_loss"]
  assert len(final["state_fingerprint"]) == 64


def test_tensorboard_events_hold_scalars_and_sample_images(tiny_run):
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(tiny_run))
  events.Reload()
  assert [e.step for e in events.Scalars("d_loss")] == [2, 4, 6, 8]
  assert [e.step for e in events.Scalars("d_fake_after")] == [2, 4, 6, 8]
  assert [e.step for e in events.Images("samples")] == [4, 8]


def test_progress_lines_show_every_metric_the_step_emits(tiny_run, tmp_path, capsys):
  train_tiny(tmp_path, {"train.num_steps": 2})
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("step 2/2")]
  assert len(lines) == 1
  for name in ("d_loss", "g_loss", "d_real", "d_fake", "d_fake_after", "img/s", "ETA"):
    assert name in lines[0]


@pytest.mark.bit_exact
def test_same_config_and_seed_reproduce_the_fingerprint(tiny_run, tmp_path):
  assert train_tiny(tmp_path)["state_fingerprint"] == _final(tiny_run)["state_fingerprint"]


@pytest.mark.bit_exact
def test_stopping_and_resuming_gives_the_uninterrupted_fingerprint(tiny_run, tmp_path):
  assert train_tiny(tmp_path, {"train.num_steps": 4})["step"] == 4
  train_tiny(tmp_path)
  assert _final(tmp_path)["state_fingerprint"] == _final(tiny_run)["state_fingerprint"]
  assert [row["step"] for row in _rows(tmp_path)] == [2, 4, 6, 8]


def _sessions(workdir):
  return json.loads((workdir / train.SESSIONS).read_text())


def test_a_resumed_run_is_timed_over_all_its_sessions(tmp_path):
  first = train_tiny(tmp_path, {"train.num_steps": 4})
  second = train_tiny(tmp_path)
  assert first["total_seconds"] == first["seconds"]
  assert second["total_seconds"] == first["seconds"] + second["seconds"]
  assert [(s["first_step"], s["step"]) for s in _sessions(tmp_path)] == [(0, 4), (4, 8)]
  batch_size = tiny_config().train.batch_size
  assert spread.wall_time_and_rate(second, batch_size) == (
      second["total_seconds"], 8 * batch_size / second["total_seconds"])
  del second["total_seconds"]  # as in a final.json written before sessions were summed
  assert spread.wall_time_and_rate(second, batch_size)[0] == second["seconds"]


def test_a_session_stopped_by_a_signal_keeps_its_time(tmp_path, monkeypatch):
  write_scalars = summaries.MetricWriter.write_scalars

  def signal_after_step_2(writer, step, scalars):
    write_scalars(writer, step, scalars)
    if step == 2:
      signal.raise_signal(signal.SIGTERM)

  monkeypatch.setattr(summaries.MetricWriter, "write_scalars", signal_after_step_2)
  with pytest.raises(train.TrainingStopped, match="^stopped by SIGTERM at step 3 "):
    train_tiny(tmp_path)
  monkeypatch.undo()
  [stopped] = _sessions(tmp_path)
  assert stopped["step"] == 3 and stopped["seconds"] > _rows(tmp_path)[-1]["elapsed_s"]
  final = train_tiny(tmp_path)
  assert final["total_seconds"] == stopped["seconds"] + final["seconds"]


@pytest.mark.slow
@pytest.mark.bit_exact
def test_a_regularised_run_resumes_exactly(tmp_path):
  """Spectral norm (its vectors in the state), a gradient penalty, the generator EMA and
  DiffAugment all resume to the uninterrupted model."""
  family = {"loss.name": "hinge", "loss.penalty": "gp", "loss.penalty_weight": 10.0,
            "model.d_norm": "spectral", "train.g_ema_decay": 0.99,
            "data.augment": "color,translation,cutout"}
  straight = train_tiny(tmp_path / "straight", family)
  train_tiny(tmp_path / "resumed", family | {"train.num_steps": 4})
  resumed = train_tiny(tmp_path / "resumed", family)
  assert resumed["state_fingerprint"] == straight["state_fingerprint"]
  assert {"d_penalty", "d_real", "d_fake"} <= set(_rows(tmp_path / "resumed")[-1])


@pytest.mark.slow
def test_a_different_seed_gives_a_different_fingerprint(tiny_run, tmp_path):
  assert train_tiny(tmp_path, {"seed": 1})["state_fingerprint"] != \
      _final(tiny_run)["state_fingerprint"]


def _arrays_by_path(tree) -> dict[tuple, np.ndarray]:
  """Every leaf of a pytree of dicts or dataclasses, keyed by its names from the root."""
  def name(key):
    for attribute in ("key", "name", "idx"):
      if hasattr(key, attribute):
        return str(getattr(key, attribute))
    raise TypeError(f"unexpected pytree key {key!r}")
  return {tuple(name(k) for k in path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(name="old_run")
def fixture_old_run(tmp_path):
  """A copy of the run directory written before the variant seam (tests/data/README.md)."""
  old_run = tmp_path / "run"
  shutil.copytree(Path(__file__).parent / "data" / "run_written_by_0.1", old_run)
  assert "arch" not in json.loads((old_run / "config.json").read_text())["model"]
  return old_run


@pytest.mark.bit_exact
def test_a_run_directory_written_before_the_variant_seam_restores_its_stored_arrays(old_run):
  """Bit for bit: the project's restore (today's config, today's state layout) against
  orbax reading the stored arrays with no target. Both were computed here from the same
  files, so this holds on any processor."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  stored = ocp.StandardCheckpointer().restore((old_run / "checkpoints" / "4" / "state").absolute())
  restored = generate.load_run(old_run).state
  stored, restored = _arrays_by_path(stored), _arrays_by_path(restored)
  assert stored.keys() == restored.keys() and len(stored) > 10
  for path, array in stored.items():
    assert restored[path].dtype == array.dtype, path
    np.testing.assert_array_equal(restored[path], array, err_msg=str(path))


@pytest.mark.bit_exact
def test_a_run_directory_written_before_the_variant_seam_resumes_to_the_same_model(
    tiny_run, old_run):
  """Its first 4 steps ran on another processor, whose XLA code differs in the last bits
  from this one's; resumed to step 8 it must train on as the same model as a fresh run
  here, to float tolerance (never compared bit for bit with values made elsewhere)."""
  train_tiny(old_run)
  rows, fresh_rows = _rows(old_run), _rows(tiny_run)
  assert [row["step"] for row in rows] == [2, 4, 6, 8]
  for row, fresh in zip(rows[2:], fresh_rows[2:]):
    for name in ("d_loss", "g_loss", "d_real", "d_fake", "d_fake_after"):
      assert row[name] == pytest.approx(fresh[name], rel=1e-4), (row["step"], name)
  resumed = _arrays_by_path(generate.load_run(old_run).state)
  fresh = _arrays_by_path(generate.load_run(tiny_run).state)
  # The model's arrays, each as a whole: Adam moves a weight whose gradient is near zero
  # by up to the learning rate whatever its size, so last-bit differences show
  # element-wise (measured: 3e-7 of the norm on AVX-512, 1.4e-6 on AVX, 1.4e-3 on SSE4.2).
  model = {path: array for path, array in fresh.items() if "opt_state" not in path[0]}
  assert len(model) > 10
  for path, array in model.items():
    difference = np.linalg.norm((resumed[path] - array).astype(np.float64))
    assert difference <= 1e-2 * np.linalg.norm(array.astype(np.float64)), path


def test_discriminator_learns_to_separate_real_from_fake(tmp_path):
  train_tiny(tmp_path, {"train.num_steps": 40, "train.log_every": 5,
                        "train.sample_every": 40, "train.checkpoint_every": 40})
  rows = _rows(tmp_path)
  first, last = rows[0], rows[-3:]
  # Untrained, D cannot tell: loss near 2 ln 2 and D(x) ~ D(G(z)).
  assert abs(first["d_loss"] - 2 * np.log(2)) < 0.06
  assert abs(first["d_real"] - first["d_fake"]) < 0.05
  assert np.mean([r["d_loss"] for r in last]) < first["d_loss"] - 0.07
  assert np.mean([r["d_real"] - r["d_fake"] for r in last]) > 0.06
