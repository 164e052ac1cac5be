"""Trains a GAN on faces.

  python -m experiments.celeba --workdir DIR [--config NAME_OR_FILE] [--config.train.num_steps=N]

--config takes a preset's name (`synthetic`, `dcgan`, `wgan_gp:tiny`, ...) or a config
file's path. A length given on the command line wins: --config.train.num_steps unsets
the config's train.num_epochs, --config.train.num_epochs=None (or 0) unsets it too, and
giving both is an error. --print_config shows the resolved config and exits.

Running the same command again resumes from the latest checkpoint in DIR. For several
hosts, start one process per host with --coordinator_address, --num_processes and
--process_id (or in an environment jax.distributed detects by itself, pass
--distributed).
"""

import sys

from absl import flags
from ml_collections import config_flags
import jax

from dcgan_jax import train
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and "
                               "samples (required but with --print_config).")
_DEFAULT_CONFIG = "celeba64"  # given by parse_flags: see cli.with_default_config
config_flags.DEFINE_config_file("config", None,
                                "A preset's name (e.g. synthetic, dcgan:tiny) or a config "
                                f"file (default: {_DEFAULT_CONFIG}).", lock_config=True)
_PRINT_CONFIG = flags.DEFINE_bool("print_config", False, "Print the resolved config and exit.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() with auto-detection.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for multi-host training.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_ALLOW_CHANGES = flags.DEFINE_list(
    "allow_changes", [], "Config keys (optimiser settings) that may differ from the "
    "checkpoints' on resume, e.g. train.g_lr,train.d_lr to retry a run that diverged.")


_EPOCHS_UNSET = ("--config.train.num_epochs=None", "--config.train.num_epochs=0",
                 "--config.train.num_epochs=0.0")


def parse_flags(argv: list[str]) -> list[str]:
  """`cli.parse_flags`, and the run's length as the command line gives it: flags cannot
  set None, so `num_epochs=None` (or 0) is taken here, and a step count given alone
  unsets the config's epoch count instead of being silently overridden by it."""
  argv = cli.with_default_config(argv, _DEFAULT_CONFIG)
  epochs_unset = any(arg in _EPOCHS_UNSET for arg in argv)
  remaining = cli.parse_flags([arg for arg in argv if arg not in _EPOCHS_UNSET])
  steps_given = cli.given("config.train.num_steps")
  if steps_given and cli.given("config.train.num_epochs"):
    cli.fail("--config.train.num_steps and --config.train.num_epochs both set the length; "
             "give one")
  if steps_given or epochs_unset:
    flags.FLAGS.config.train.num_epochs = None
  return remaining


def main(argv: list[str]) -> None:
  del argv
  if _DISTRIBUTED.value or _COORDINATOR.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  if _PRINT_CONFIG.value:
    print(flags.FLAGS.config)
    return
  if not _WORKDIR.value:
    cli.fail("--workdir is required: the directory the run writes to (and resumes from)")
  try:
    train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value,
                             allow_changes=_ALLOW_CHANGES.value)
  except (ValueError, FileNotFoundError) as error:  # Bad flags, config or data: one line.
    cli.fail(error)
  except train.TrainingStopped as stopped:
    cli.exit_stopped(stopped)


if __name__ == "__main__":
  # grain's worker batches still in shared memory when training stops early are unlinked
  # by multiprocessing's resource tracker, which would warn about each: the tracker
  # process takes its warning filters from these options.
  sys.warnoptions.append("ignore::UserWarning:multiprocessing.resource_tracker")
  cli.run(main, parse_flags)
