"""Trains a DCGAN on faces.

  python -m experiments.celeba --workdir DIR [--config FILE] [--config.train.num_steps=N]

Running the same command again resumes from the latest checkpoint in DIR. For several
hosts, start one process per host with --coordinator_address, --num_processes and
--process_id (or in an environment jax.distributed detects by itself, pass
--distributed).
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags
import jax

from dcgan_jax import train
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and samples.",
                               required=True)
config_flags.DEFINE_config_file("config", "experiments/configs/celeba64.py",
                                "Experiment config file.", lock_config=True)
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() with auto-detection.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for multi-host training.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_ALLOW_CHANGES = flags.DEFINE_list(
    "allow_changes", [], "Config keys (optimiser settings) that may differ from the "
    "checkpoints' on resume, e.g. train.g_lr,train.d_lr to retry a run that diverged.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _DISTRIBUTED.value or _COORDINATOR.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  logging.set_verbosity(logging.ERROR)
  try:
    train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value,
                             allow_changes=_ALLOW_CHANGES.value)
  except (ValueError, FileNotFoundError) as error:  # Bad flags, config or data: one line.
    cli.fail(error)
  except train.TrainingStopped as stopped:
    print(stopped, file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
  # grain's worker batches still in shared memory when training stops early are unlinked
  # by multiprocessing's resource tracker, which would warn about each: the tracker
  # process takes its warning filters from these options.
  sys.warnoptions.append("ignore::UserWarning:multiprocessing.resource_tracker")
  cli.run(main)
