"""How right the progress line's ETA is: a run trained in full, each ETA against the time
that was really left.

  python -m experiments.bench_eta --workdir DIR [--config demo] [--config.KEY=VALUE ...]
                                  [--clock wall|cpu]

Trains the config into DIR (a fresh directory: the run is timed from its first step) and
prints one JSON line: the run's seconds, then for each progress line from 5% of the run
on the ETA's relative error (ETA / time left - 1, the time left running to the end of
the report), and the largest of them. `--clock cpu` times the run and its ETA by this
process's CPU time instead of the wall clock: on a machine shared with other work, run
single-threaded (XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1"), it measures the work left, which the others do not move.
"""

import contextlib
import json
import time
from pathlib import Path
from typing import Callable, Iterator

import ml_collections
from absl import flags
from ml_collections import config_flags

from dcgan_jax import summaries, train
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A directory for the run; it must not hold one.")
config_flags.DEFINE_config_file("config", str(cli.CONFIG_DIR / "demo.py"),
                                "A preset's name (e.g. demo, synthetic:tiny) or a config file.",
                                lock_config=True)
_CLOCK = flags.DEFINE_enum("clock", "wall", ["wall", "cpu"],
                           "Time by the wall clock, or by this process's CPU time.")

FROM_FRACTION = 0.05  # of the run's steps: the lines before it hold compilation


@contextlib.contextmanager
def recorded_etas(clock: Callable[[], float]) -> Iterator[list[tuple[float, int, float]]]:
  """Within the block, every ETA a progress line shows, as (clock time, step, seconds)."""
  estimates = []
  eta = summaries.Progress.eta

  def recorded(progress: summaries.Progress, step: int) -> float:
    estimates.append((clock(), step, eta(progress, step)))
    return estimates[-1][2]

  summaries.Progress.eta = recorded
  try:
    yield estimates
  finally:
    summaries.Progress.eta = eta


def eta_errors(config: ml_collections.ConfigDict, workdir: Path,
               clock: Callable[[], float]) -> tuple[float, dict[int, float]]:
  """Trains `config` in `workdir`; returns its seconds by `clock`, and the relative error
  of each ETA from `FROM_FRACTION` of the run on, by step."""
  with recorded_etas(clock) as estimates:
    start = clock()
    train.train_and_evaluate(config, workdir)
    end = clock()
  num_steps = estimates[-1][1]  # the last progress line is the last step's
  return end - start, {step: seconds / (end - when) - 1 for when, step, seconds in estimates
                       if step >= FROM_FRACTION * num_steps}


def main(argv: list[str]) -> None:
  del argv
  if not _WORKDIR.value:
    cli.fail("--workdir is required: a directory for the run")
  workdir = Path(_WORKDIR.value)
  if workdir.exists() and any(workdir.iterdir()):
    cli.fail(f"--workdir {workdir} is not empty: the run must be timed from its first step")
  if _CLOCK.value == "cpu":
    time.perf_counter = time.process_time  # the clock of the ETA and of the run alike
  seconds, errors = eta_errors(flags.FLAGS.config, workdir, time.perf_counter)
  print(json.dumps({"seconds": round(seconds, 1),
                    "eta_error_by_step": {step: round(e, 3) for step, e in errors.items()},
                    "largest_eta_error": round(max(map(abs, errors.values())), 3)}))


if __name__ == "__main__":
  cli.run(main)
