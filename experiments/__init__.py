"""The project's commands, each run as `python -m experiments.NAME`."""

import sys


def _run_as_command() -> bool:
  args = sys.orig_argv
  return "-m" in args[:-1] and args[args.index("-m") + 1].startswith("experiments.")


if _run_as_command():
  # A command's first seconds import JAX: a signal then ends it in one line too (cli.run).
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.install_signal_handlers()
