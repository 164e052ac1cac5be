"""Failure and recovery: divergence, damaged checkpoints, a shared workdir, a full disk and
runs that are already complete (signals: test_signals)."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcgan_jax import checkpointing, files, run_dir, steps, summaries, train
from dcgan_jax.train_state import abstract_state, setup_from_config
from tests.cli import train as train_cli
from tests.runs import checkpoint_steps, fingerprint, tiny_config, train_tiny

# Trains whole runs (several, or in other processes): left out of the quick check.
pytestmark = pytest.mark.slow


def _restore(workdir: Path, step: int):
  config = run_dir.read_config(workdir)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return checkpointing.restore_state(workdir / "checkpoints",
                                     abstract_state(setup_from_config(config), sharding), step)


def _poisoned_from(step: int):
  """steps.train_step, but every parameter is NaN from `step` on."""
  original = steps.train_step

  def poisoned(setup, state, batch):
    state, metrics = original(setup, state, batch)
    poison = jnp.where(state.step >= step, jnp.nan, 0.0)
    return state.replace(g_params=jax.tree.map(lambda p: p + poison, state.g_params)), metrics

  return poisoned


def test_divergence_writes_nothing_from_the_bad_state_and_a_retry_goes_on_from_the_last_good(
    tmp_path, monkeypatch):
  lengths = {"train.num_steps": 12, "train.checkpoint_every": 2, "train.sample_every": 4,
             "train.log_every": 100}
  monkeypatch.setattr(steps, "train_step", _poisoned_from(7))
  with pytest.raises(train.TrainingStopped) as stopped:
    train_tiny(tmp_path, lengths)
  message = str(stopped.value)
  assert "\n" not in message
  assert message.startswith("training diverged: non-finite parameters or metrics at step 8; "
                            f"the last good checkpoint, step 6 in {tmp_path / 'checkpoints'}")
  assert "--allow_changes=train.g_lr,train.d_lr" in message
  assert checkpoint_steps(tmp_path) == [2, 4, 6]
  assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000004.png"]
  for step in (2, 4, 6):
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(_restore(tmp_path, step).g_params))
  assert not (tmp_path / "final.json").exists()

  monkeypatch.undo()
  with pytest.raises(ValueError, match=r"different config \(train.g_lr: 0.0002 -> 0.0001\)"):
    train_tiny(tmp_path, lengths | {"train.g_lr": 1e-4})
  final = train.train_and_evaluate(tiny_config(lengths | {"train.g_lr": 1e-4}), tmp_path,
                                   allow_changes=["train.g_lr"])
  assert final["step"] == 12
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["train"]["g_lr"] == 1e-4
  assert saved[run_dir.RESUME_CHANGES] == [{"step": 6, "changed": {"train.g_lr": [2e-4, 1e-4]}}]
  assert run_dir.read_config(tmp_path).train.g_lr == 1e-4
  with pytest.raises(ValueError, match=r"^--allow_changes: model.nf cannot change on resume"):
    train.train_and_evaluate(tiny_config(), tmp_path / "other", allow_changes=["model.nf"])


def test_huge_learning_rates_never_put_a_non_finite_state_on_disk(tmp_path):
  with pytest.raises(train.TrainingStopped, match="^training diverged"):
    train_tiny(tmp_path, {"train.g_lr": 1e8, "train.d_lr": 1e8, "train.num_steps": 30,
                          "train.checkpoint_every": 1, "train.log_every": 100})
  for step in checkpoint_steps(tmp_path):
    state = _restore(tmp_path, step)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves((state.g_params, state.d_params)))


def _flip_bytes(path: Path) -> None:
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0x21
  path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _largest_data_file(checkpoint: Path) -> Path:
  return max((checkpoint / "state").rglob("d/*"), key=lambda p: p.stat().st_size)


def _move_data_position(checkpoint: Path) -> None:
  (position,) = (checkpoint / "data").glob("process_0-of-1*")
  state = json.loads(position.read_text())
  position.write_text(json.dumps({**state, "next_index": state["next_index"] + 7}))


DAMAGE = {
    "flipped bits": lambda checkpoint: _flip_bytes(_largest_data_file(checkpoint)),
    "removed digest": lambda checkpoint: shutil.rmtree(checkpoint / "digest"),
    "moved data position": _move_data_position,
    "truncated file": lambda checkpoint: _truncate(_largest_data_file(checkpoint)),
    "deleted manifest": lambda checkpoint: (checkpoint / "state" / "manifest.ocdbt").unlink(),
}


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory):
  """A tiny run with checkpoints at steps 4, 6 and 8, and the same run straight to 10."""
  root = tmp_path_factory.mktemp("checkpointed")
  train_tiny(root / "run", {"train.checkpoint_every": 2})
  train_tiny(root / "straight", {"train.num_steps": 10})
  return root


@pytest.mark.bit_exact
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_one_before_resumed(
    checkpointed_run, tmp_path, capsys, damage):
  workdir = tmp_path / "run"
  shutil.copytree(checkpointed_run / "run", workdir)
  DAMAGE[damage](workdir / "checkpoints" / "8")
  damaged = sorted(p.relative_to(workdir / "checkpoints" / "8")
                   for p in (workdir / "checkpoints" / "8").rglob("*"))
  final = train_tiny(workdir, {"train.checkpoint_every": 2, "train.num_steps": 10})
  report = [line for line in capsys.readouterr().err.splitlines() if "checkpoint" in line]
  aside = workdir / "checkpoints_unusable"
  (moved,) = aside.iterdir()
  assert len(report) == 1 and report[0].startswith(f"checkpoint {workdir / 'checkpoints' / '8'} ")
  assert report[0].endswith(f"; moved to {moved}")
  assert moved.name.startswith("8-")
  assert sorted(p.relative_to(moved) for p in moved.rglob("*")) == damaged  # renamed, whole
  assert final["state_fingerprint"] == fingerprint(checkpointed_run / "straight")


@pytest.mark.bit_exact
def test_a_digest_of_process_0s_position_alone_as_written_before_is_still_checked(
    checkpointed_run, tmp_path):
  for moved in (False, True):
    workdir = tmp_path / f"moved_{moved}"
    shutil.copytree(checkpointed_run / "run", workdir)
    digest_file = workdir / "checkpoints" / "8" / "digest" / "metadata"
    digest = json.loads(digest_file.read_text())
    digest_file.write_text(json.dumps({"state_fingerprint": digest["state_fingerprint"],
                                       "data_fingerprint": digest["data_fingerprints"][0]}))
    if moved:
      _move_data_position(workdir / "checkpoints" / "8")
    final = train_tiny(workdir, {"train.checkpoint_every": 2, "train.num_steps": 10})
    assert (workdir / "checkpoints_unusable").exists() == moved
    assert final["state_fingerprint"] == fingerprint(checkpointed_run / "straight")


@pytest.mark.bit_exact
def test_a_checkpoint_copied_under_another_steps_name_is_set_aside(checkpointed_run, tmp_path,
                                                                  capsys):
  workdir = tmp_path / "run"
  shutil.copytree(checkpointed_run / "run", workdir)
  shutil.copytree(workdir / "checkpoints" / "4", workdir / "checkpoints" / "9")
  final = train_tiny(workdir, {"train.checkpoint_every": 2, "train.num_steps": 10})
  assert (f"checkpoint {workdir / 'checkpoints' / '9'} holds step 4, not the step of its name; "
          f"moved to ") in capsys.readouterr().err
  assert final["state_fingerprint"] == fingerprint(checkpointed_run / "straight")
  assert checkpoint_steps(workdir)[-1] == 10


def test_the_best_checkpoint_is_checked_against_its_digest_too(tmp_path):
  train_tiny(tmp_path, {"eval.every_steps": 4, "eval.num_samples": 32})
  (best,) = [p for p in (tmp_path / "checkpoints_best").iterdir() if p.name.isdigit()]
  abstract = abstract_state(setup_from_config(run_dir.read_config(tmp_path)),
                            jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  checkpointing.restore_state(tmp_path / "checkpoints_best", abstract)
  _flip_bytes(_largest_data_file(best))
  with pytest.raises(checkpointing.UnusableCheckpoint, match=rf"^checkpoint {re.escape(str(best))} "):
    checkpointing.restore_state(tmp_path / "checkpoints_best", abstract)


@pytest.mark.parametrize("entry", ["a link to itself", "a file"])
def test_a_step_entry_that_is_not_a_directory_is_one_line_before_training(checkpointed_run,
                                                                          tmp_path, entry):
  workdir = tmp_path / "run"
  shutil.copytree(checkpointed_run / "run", workdir)
  step = workdir / "checkpoints" / "9"
  if entry == "a file":
    step.write_text("mine")
  else:
    step.symlink_to(step)
  before = (workdir / "metrics.jsonl").read_bytes()
  with pytest.raises(ValueError, match=rf"^{re.escape(str(step))} is not a checkpoint directory "
                                       rf"\({'a symbolic link' if 'link' in entry else 'a file'}"
                                       r"\); move it out of "):
    train_tiny(workdir, {"train.checkpoint_every": 2, "train.num_steps": 10})
  assert (workdir / "metrics.jsonl").read_bytes() == before


def test_a_best_checkpoint_with_an_unreadable_score_is_one_line_naming_it(tmp_path):
  overrides = {"eval.every_steps": 4, "eval.num_samples": 32}
  train_tiny(tmp_path, {**overrides, "train.num_steps": 4})
  (tmp_path / "checkpoints_best" / "4" / "metrics" / "metrics").write_bytes(b"\x00garbage{")
  with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'checkpoints_best'))} "
                                       r"holds a best checkpoint whose score cannot be read"):
    train_tiny(tmp_path, overrides)


def files_open_under(directory: Path) -> list[str]:
  """The files under `directory` this process holds open."""
  return [os.readlink(fd) for fd in Path("/proc/self/fd").iterdir()
          if fd.exists() and os.readlink(fd).startswith(str(directory))]


@pytest.fixture
def small_disk(tmp_path):
  """A 400 KB file system (a tmpfs): room for a few tiny checkpoints, then full."""
  mount_point = tmp_path / "small"
  mount_point.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount_point)],
                           capture_output=True, text=True)
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip()}")
  try:
    yield mount_point
    assert not files_open_under(mount_point)
  finally:
    # The training closed its files (above); a process another test started may still be
    # leaving it, which makes the file system busy for a moment: detach it then.
    if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
      subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def test_a_full_disk_is_one_line_and_keeps_the_checkpoints_before(small_disk, capfd):
  with pytest.raises(ValueError, match=rf"^cannot write a checkpoint in "
                                       rf"{re.escape(str(small_disk / 'run' / 'checkpoints'))}: "
                                       r"No space left on device; the checkpoints before it are "
                                       r"kept$"):
    train_tiny(small_disk / "run", {"train.checkpoint_every": 2})
  assert "Traceback" not in capfd.readouterr().err
  for step in checkpoint_steps(small_disk / "run"):
    _restore(small_disk / "run", step)


def test_a_save_failing_as_the_run_ends_is_one_line_and_leaves_no_file_open(tmp_path,
                                                                            monkeypatch):
  """On a full disk the last save may fail only when it is waited for, after the loop (as
  it did under load): the files of the run are closed all the same, and the error raised
  is that save's line, not one from a writer closed after it."""
  finish = checkpointing.finish

  def finish_on_a_full_disk(manager):
    finish(manager)
    raise ValueError(f"cannot write a checkpoint in {manager.directory}: No space left on "
                     f"device; the checkpoints before it are kept")

  close = summaries.MetricWriter.close

  def close_then_fail_to_flush(writer):
    close(writer)
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(checkpointing, "finish", finish_on_a_full_disk)
  monkeypatch.setattr(summaries.MetricWriter, "close", close_then_fail_to_flush)
  with pytest.raises(ValueError, match=r"^cannot write a checkpoint in .*No space left on device"):
    train_tiny(tmp_path / "run", {"train.num_steps": 2})
  assert not files_open_under(tmp_path)


def test_flipped_bits_are_caught_by_the_digest_when_the_file_still_reads(checkpointed_run,
                                                                         tmp_path):
  """A change in stored values that the storage format does not notice: only the
  digest can, and restoring (e.g. for sampling) refuses it in one line."""
  workdir = tmp_path / "run"
  shutil.copytree(checkpointed_run / "run", workdir)
  digest_path = workdir / "checkpoints" / "8" / "digest" / "metadata"
  digest = json.loads(digest_path.read_text())
  digest["state_fingerprint"] = "0" * 64
  digest_path.write_text(json.dumps(digest))
  with pytest.raises(checkpointing.UnusableCheckpoint,
                     match=r"^checkpoint .*/8 does not match its digest"):
    _restore(workdir, 8)


def test_no_usable_checkpoint_stops_instead_of_starting_over(checkpointed_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(checkpointed_run / "run", workdir)
  for step in (4, 6, 8):
    (workdir / "checkpoints" / str(step) / "state" / "manifest.ocdbt").unlink()
  with pytest.raises(ValueError, match=r"^no usable checkpoint in .*checkpoints \(the "
                                       r"unusable ones are in .*checkpoints_unusable\)"):
    train_tiny(workdir, {"train.checkpoint_every": 2, "train.num_steps": 10})
  assert len(list((workdir / "checkpoints_unusable").iterdir())) == 3
  assert checkpoint_steps(workdir) == []
  assert json.loads((workdir / "final.json").read_text())["step"] == 8  # untouched
  before = (workdir / "metrics.jsonl").read_bytes()
  with pytest.raises(ValueError, match=r"^no usable checkpoint in "):  # nor the second time
    train_tiny(workdir, {"train.checkpoint_every": 2, "train.num_steps": 10})
  assert (workdir / "metrics.jsonl").read_bytes() == before and checkpoint_steps(workdir) == []


def test_a_run_stopped_before_its_first_checkpoint_restarts_only_with_its_own_config(tmp_path):
  train_tiny(tmp_path, {"train.num_steps": 2, "train.checkpoint_every": 100})
  shutil.rmtree(tmp_path / "checkpoints")
  before = (tmp_path / "metrics.jsonl").read_bytes()
  with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path))} holds a run with a "
                                       rf"different config \(model.nf: 8 -> 16\)"):
    train_tiny(tmp_path, {"train.num_steps": 2, "model.nf": 16})
  assert (tmp_path / "metrics.jsonl").read_bytes() == before
  train_tiny(tmp_path, {"train.num_steps": 2})


def test_checkpoints_without_a_config_json_are_not_resumed(checkpointed_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(checkpointed_run / "run", workdir)
  (workdir / "config.json").unlink()
  with pytest.raises(ValueError, match="holds checkpoints but no config.json"):
    train_tiny(workdir, {"train.num_steps": 10})


def test_a_complete_run_is_left_as_it_is(checkpointed_run, tmp_path, capsys):
  workdir = tmp_path / "run"
  shutil.copytree(checkpointed_run / "run", workdir)
  before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
  final = train_tiny(workdir, {"train.checkpoint_every": 2})
  assert capsys.readouterr().out.strip() == (
      "run complete at step 8; raise train.num_steps to continue")
  assert final == json.loads(before[workdir / "final.json"])
  after = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
  assert after == before


def test_a_lock_held_by_a_live_process_refuses_and_a_dead_ones_is_taken_over(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  with files.locked(workdir, "--workdir"):
    with pytest.raises(ValueError, match=rf"^--workdir {workdir} is in use by process "
                                         rf"{os.getpid()} on "):
      train_tiny(workdir)
  assert not (workdir / "config.json").exists()
  # What a killed run leaves: the file, without the flock the OS dropped with its process.
  (workdir / files.LOCK_NAME).write_text("process 4194000 on elsewhere\n")
  assert train_tiny(workdir, {"train.num_steps": 2})["step"] == 2


def test_a_final_json_older_than_the_last_checkpoint_or_damaged_is_written_again(tmp_path):
  """As after a run extended from 4 to 8 steps and stopped at step 8, after its last
  checkpoint but before final.json."""
  earlier = train_tiny(tmp_path, {"train.num_steps": 4})
  complete = train_tiny(tmp_path)
  (tmp_path / "final.json").write_text(json.dumps(earlier))
  rewritten = train_tiny(tmp_path)
  assert rewritten["step"] == 8 and rewritten["metrics"] == complete["metrics"]
  assert rewritten["state_fingerprint"] == complete["state_fingerprint"]
  assert json.loads((tmp_path / "final.json").read_text()) == rewritten
  (tmp_path / "final.json").write_text('{"step": 8, "seco')  # damaged: written again too
  assert train_tiny(tmp_path)["state_fingerprint"] == complete["state_fingerprint"]
  assert json.loads((tmp_path / "final.json").read_text())["step"] == 8


def test_a_resumed_run_calls_best_only_what_beats_every_evaluation_before(tmp_path, capsys):
  overrides = {"eval.every_steps": 2, "eval.num_samples": 32}
  train_tiny(tmp_path, {**overrides, "train.num_steps": 4})
  # An evaluation before the stop that none after it can beat.
  rows = summaries.read_metrics(tmp_path / "metrics.jsonl")
  for row in rows:
    if row["step"] == 4 and "eval_swd" in row:
      row["eval_swd"] = 1e-6
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
  capsys.readouterr()
  train_tiny(tmp_path, overrides)
  lines = re.findall(r"^eval step \d+: .*$", capsys.readouterr().out, re.MULTILINE)
  assert [line.split(":")[0] for line in lines] == ["eval step 6", "eval step 8"]
  assert not any(line.endswith("(best)") for line in lines), lines


def test_final_json_records_the_last_and_the_best_evaluation(tmp_path):
  final = train_tiny(tmp_path, {"eval.every_steps": 2, "eval.num_samples": 32})
  rows = [r for r in summaries.read_metrics(tmp_path / "metrics.jsonl") if "eval_swd" in r]
  assert [r["step"] for r in rows] == [2, 4, 6, 8]
  best = min(rows, key=lambda r: r["eval_swd"])

  def scores(row):
    return {"step": row["step"], **{k[len("eval_"):]: v for k, v in row.items()
                                    if k.startswith("eval_")}}

  assert final["eval"] == {"last": scores(rows[-1]), "best": scores(best)}
  assert "swd" in final["eval"]["best"]


def test_cli_reports_a_damaged_checkpoint_in_one_line(checkpointed_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(checkpointed_run / "run", workdir)
  DAMAGE["truncated file"](workdir / "checkpoints" / "8")
  result = train_cli(workdir, "--config.train.checkpoint_every=2",
                     "--config.train.num_steps=10")
  lines = [l for l in result.stderr.splitlines() if not re.match(r"[IWE]\d{4} ", l)]
  assert len(lines) == 1 and lines[0].startswith(f"checkpoint {workdir / 'checkpoints' / '8'} ")
