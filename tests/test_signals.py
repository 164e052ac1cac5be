"""Signals and kills sent to a real training process: where it stops, what it prints,
what it leaves, and how the same command goes on."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dcgan_jax import summaries
from dcgan_jax.report import page
from tests.cli import REPO, SYNTHETIC_TINY, train as train_cli
from tests.runs import checkpoint_steps, fingerprint, tiny_config, train_tiny

# Trains whole runs in other processes: left out of the quick check.
pytestmark = pytest.mark.slow


def _start_training(workdir: Path, *overrides: str) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.celeba", "--workdir", str(workdir), "--config",
       SYNTHETIC_TINY, *overrides], cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(workdir: Path, step: int, process: subprocess.Popen, timeout: float = 240
                   ) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline:
    rows = summaries.read_metrics(workdir / "metrics.jsonl")
    if rows and rows[-1]["step"] >= step:
      return
    if process.poll() is not None:
      raise AssertionError(f"training ended early:\n{process.stderr.read()[-3000:]}")
    time.sleep(0.1)
  raise AssertionError(f"no step {step} in {timeout} s")


def _children(pid: int) -> list[int]:
  found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
  return [int(p) for p in found.split()]


def _alive(pid: int) -> bool:
  try:
    status = Path(f"/proc/{pid}/status").read_text()
  except FileNotFoundError:
    return False
  return "State:\tZ" not in status


LONG = ("--config.train.num_steps=100000", "--config.train.checkpoint_every=100000",
        "--config.train.sample_every=100000", "--config.train.log_every=1")


@pytest.mark.bit_exact
def test_sigterm_saves_where_it_stopped_and_the_rerun_ends_as_an_uninterrupted_run(tmp_path):
  """Also: the data workers go with it, a second signal during the save harms nothing,
  and a second process in the same workdir is refused at once, naming the first."""
  workdir = tmp_path / "run"
  process = _start_training(workdir, *LONG, "--config.data.num_workers=1")
  # Into the second epoch, so the rerun picks the data stream up in a reshuffled epoch.
  config = tiny_config()
  _wait_for_step(workdir, config.data.num_images // config.train.batch_size + 2, process)
  # Paused while the second process starts, which takes seconds: stopped a few steps
  # later, the uninterrupted run to compare with stays short.
  process.send_signal(signal.SIGSTOP)
  try:
    second = subprocess.run(
        [sys.executable, "-m", "experiments.celeba", "--workdir", str(workdir), "--config",
         SYNTHETIC_TINY], cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True, text=True, timeout=120)
  finally:
    process.send_signal(signal.SIGCONT)
  assert second.returncode == 2
  assert second.stderr.strip().splitlines()[-1].startswith(
      f"error: --workdir {workdir} is in use by process {process.pid} on ")
  workers = _children(process.pid)
  assert workers  # the grain worker (and the tools multiprocessing starts)
  process.send_signal(signal.SIGTERM)
  time.sleep(0.05)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 1
  last = stderr.strip().splitlines()[-1]
  stopped_at = int(last.split(" at step ")[1].split()[0])
  assert last == (f"stopped by SIGTERM at step {stopped_at} of 100000, saved in "
                  f"{workdir / 'checkpoints'}; run the same command to resume")
  assert "Traceback" not in stderr
  assert checkpoint_steps(workdir) == [stopped_at]
  deadline = time.time() + 10
  while any(_alive(pid) for pid in workers) and time.time() < deadline:
    time.sleep(0.1)
  assert not any(_alive(pid) for pid in workers)

  total = stopped_at + 3
  resumed = _start_training(workdir, f"--config.train.num_steps={total}",
                            "--config.data.num_workers=1")
  _, stderr = resumed.communicate(timeout=240)
  assert resumed.returncode == 0, stderr[-3000:]
  train_tiny(tmp_path / "straight", {"train.num_steps": total})
  assert fingerprint(workdir) == fingerprint(tmp_path / "straight")


def test_a_killed_run_leaves_no_data_worker_behind(tmp_path):
  process = _start_training(tmp_path, *LONG, "--config.data.num_workers=2")
  _wait_for_step(tmp_path, 2, process)
  descendants = psutil.Process(process.pid).children(recursive=True)
  assert len(descendants) >= 2  # the two workers, and multiprocessing's helpers
  process.kill()
  process.communicate(timeout=60)
  deadline = time.time() + 20
  while any(_alive(p.pid) for p in descendants) and time.time() < deadline:
    time.sleep(0.1)
  assert not [p.pid for p in descendants if _alive(p.pid)]


def test_ctrl_c_saves_and_exits_with_one_line(tmp_path):
  process = _start_training(tmp_path, *LONG)
  _wait_for_step(tmp_path, 2, process)
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 1 and "Traceback" not in stderr
  assert stderr.strip().splitlines()[-1].startswith("stopped by SIGINT at step ")
  assert len(checkpoint_steps(tmp_path)) == 1


def _handles_sigterm(pid: int) -> bool:
  """Whether the process has installed its SIGTERM handler (Python's own catches SIGINT)."""
  status = Path(f"/proc/{pid}/status").read_text()
  caught = int(re.search(r"SigCgt:\s*([0-9a-f]+)", status).group(1), 16)
  return bool(caught & (1 << (signal.SIGTERM - 1)))


def _signal_at(workdir: Path, phase: str, signum: int, *overrides: str) -> tuple[int, str]:
  """Starts training, sends a storm of `signum` once it prints a line starting with
  `phase` ("" for as soon as it handles signals, while it still imports JAX); returns the
  exit code and stderr, after checking that no process it started is left."""
  process = _start_training(workdir, *overrides)
  if phase:
    while not (line := process.stdout.readline()).startswith(phase):
      assert line, f"no line {phase!r}:\n{process.stderr.read()[-3000:]}"
  else:
    while not _handles_sigterm(process.pid):
      time.sleep(0.01)
  children = psutil.Process(process.pid).children(recursive=True)
  for _ in range(10):
    process.send_signal(signum)  # nothing once it has ended
    time.sleep(0.02)
  _, stderr = process.communicate(timeout=120)
  deadline = time.time() + 10  # multiprocessing's resource tracker ends when its pipe closes
  while any(_alive(child.pid) for child in children) and time.time() < deadline:
    time.sleep(0.05)
  assert not any(_alive(child.pid) for child in children)
  return process.returncode, stderr


def test_a_signal_at_any_phase_is_one_line_and_the_same_command_finishes_the_run(tmp_path):
  workdir = tmp_path / "run"
  run = ("--config.train.write_report=True", "--config.data.num_workers=1")
  assert _signal_at(workdir, "", signal.SIGINT, *run) == (
      1, "stopped by SIGINT before starting; nothing was written\n")
  assert not workdir.exists()
  # Creating the state and compiling the step; the loop, once in it, stops after a step.
  code, stderr = _signal_at(workdir, "training 8 steps", signal.SIGINT, *run)
  assert code == 1 and re.fullmatch(
      r"stopped by SIGINT(; run the same command to finish| at step 1 of 8, saved in .*)\n",
      stderr), stderr
  assert _signal_at(workdir, "writing the report...", signal.SIGTERM, *run) == (
      1, "stopped by SIGTERM; run the same command to finish\n")
  assert json.loads((workdir / "final.json").read_text())["step"] == 8
  assert page.report_step(workdir / "report") is None
  assert not list((workdir / "report").glob(".*.tmp"))

  finished = train_cli(workdir, *run)
  assert finished.stdout.splitlines() == [
      "writing the report...", f"report {workdir / 'report' / 'index.html'}",
      "run complete at step 8; raise train.num_steps to continue"]
  assert page.report_step(workdir / "report") == 8
