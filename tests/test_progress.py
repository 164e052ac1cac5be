"""The progress line's ETA: its arithmetic on a made-up clock, and its error over a real run."""

import json

import pytest

from dcgan_jax import summaries
from tests import cli


def test_progress_eta_counts_the_pauses_to_come_and_forgets_the_compilation(monkeypatch,
                                                                             capsys):
  clock = [0.0]
  monkeypatch.setattr(summaries.time, "perf_counter", lambda: clock[0])
  progress = summaries.Progress(first_step=0, num_steps=100,
                                intervals={"evaluation": 30, "checkpoint": 0},
                                expected_pauses={"evaluation": 40.0})
  clock[0] += 40.0  # ten steps, compilation included
  assert progress.update(10, {"d_loss": 1.0}, batch_size=64) == 16.0
  clock[0] += 10.0  # ten steps of one second: they replace the compiled interval's rate
  assert progress.update(20, {"d_loss": 1.0}, batch_size=64) == 64.0
  with progress.paused("evaluation"):  # at step 30
    clock[0] += 50.0
  with progress.paused("checkpoint"):  # no interval: not expected again
    clock[0] += 5.0
  clock[0] += 20.0  # ten steps of two seconds: the rate moves 30 % of the way
  assert progress.update(30, {"d_loss": 1.0}, batch_size=64) == 32.0
  lines = capsys.readouterr().out.splitlines()
  # Before an evaluation is measured, 4 are expected (30, 60, 90, 100) at 40 s each.
  assert lines[0].endswith(f"16 img/s  ETA {summaries.format_duration(90 * 4.0 + 4 * 40.0)}")
  assert lines[1].endswith(f"64 img/s  ETA {summaries.format_duration(80 * 1.0 + 4 * 40.0)}")
  # Evaluations still to come after step 30: at 60, 90 and the last step, 100.
  assert lines[2].endswith(
      f"32 img/s  ETA {summaries.format_duration(70 * (0.3 * 2 + 0.7 * 1) + 3 * 50.0)}")


def test_progress_eta_counts_what_follows_the_last_step(monkeypatch, capsys):
  clock = [0.0]
  monkeypatch.setattr(summaries.time, "perf_counter", lambda: clock[0])
  progress = summaries.Progress(first_step=0, num_steps=100, intervals={"sample grid": 50},
                                expected_pauses={"sample grid": 3.0}, after_last_step=7.0)
  for step in (10, 20):
    clock[0] += 10.0
    progress.update(step, {"d_loss": 1.0}, batch_size=8)
  for step, seconds in ((30, 2.0), (40, 1.0)):  # the first grid compiles; it only stands
    with progress.paused("sample grid"):       # until the next is measured
      clock[0] += seconds
    clock[0] += 10.0
    progress.update(step, {"d_loss": 1.0}, batch_size=8)
  lines = capsys.readouterr().out.splitlines()
  # Two sample grids to come (at 50 and 100), then what follows the last step.
  assert lines[1].endswith(f"ETA {summaries.format_duration(80 * 1.0 + 2 * 3.0 + 7.0)}")
  assert lines[2].endswith(f"ETA {summaries.format_duration(70 * 1.0 + 2 * 2.0 + 7.0)}")
  assert lines[3].endswith(f"ETA {summaries.format_duration(60 * 1.0 + 2 * 1.0 + 7.0)}")


@pytest.mark.slow
def test_eta_is_within_a_quarter_of_the_time_left_from_5_percent_of_a_run_on(tmp_path):
  # Timed by the CPU time of a single-threaded run, for the ETA and for the time it is
  # judged against alike: other tests sharing the machine change the wall time left, not
  # the work. Compiling is part of that work: the suite's compilation cache is off.
  result = cli.run_module(
      "experiments.bench_eta", "--workdir", tmp_path / "run", "--config", cli.SYNTHETIC_TINY,
      "--clock", "cpu", *(f"--config.{key}={value}" for key, value in {
          "train.num_steps": 200, "train.log_every": 5, "train.sample_every": 50,
          "train.checkpoint_every": 100, "eval.every_steps": 100, "eval.num_samples": 64,
          "train.write_report": True}.items()),
      env={**cli.with_xla_flags("--xla_cpu_multi_thread_eigen=false",
                                "intra_op_parallelism_threads=1"),
           "JAX_ENABLE_COMPILATION_CACHE": "false"})
  assert (tmp_path / "run" / "report" / "index.html").exists()
  errors = {int(step): error
            for step, error in json.loads(result.stdout.splitlines()[-1])["eta_error_by_step"].items()}
  assert sorted(errors) == list(range(10, 201, 5))
  worst = sorted(errors.items(), key=lambda item: -abs(item[1]))[:5]
  assert abs(worst[0][1]) < 0.25, f"the largest errors (step, error): {worst}"
