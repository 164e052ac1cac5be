"""What every command shares: flags parsed with one-line errors, and how it fails.

Bad input of any kind (an unknown or mistyped flag or config key, a missing config
file, a bad value) ends in one line on stderr, `error: ...`, and exit code 2, before
anything is written.
"""

import gc
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from absl import app, flags, logging

USAGE_ERROR = 2
STOPPED = 1


def fail(message: object) -> NoReturn:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(USAGE_ERROR)


def _config_override(argv: Sequence[str], unknown: str) -> str:
  """The --config.KEY=VALUE argument whose key ends in the unknown name."""
  for arg in argv:
    if arg.startswith("--config.") and re.search(rf"[.]{re.escape(unknown)}([.=]|$)", arg):
      return arg
  return f"--config...{unknown}"


CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def config_file(value: str) -> str:
  """A --config value: a preset name (`synthetic`, `dcgan:tiny`) becomes the project's
  experiments/configs/NAME.py, wherever the command runs; a path stays as it is."""
  name, colon, variant = value.partition(":")
  if "/" in name or name.endswith(".py"):
    return value
  path = CONFIG_DIR / f"{name}.py"
  if not path.exists():
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem not in ("__init__", "common"))
    fail(f"--config: no config named {name!r}; expected a file path or one of: "
         f"{', '.join(known)}")
  return f"{path}{colon}{variant}"


def _with_config_files(argv: list[str]) -> list[str]:
  resolved = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      resolved[i] = "--config=" + config_file(arg[len("--config="):])
    elif arg == "--config" and i + 1 < len(argv):
      resolved[i + 1] = config_file(argv[i + 1])
  return resolved


def with_default_config(argv: list[str], name: str) -> list[str]:
  """`argv` with --config=NAME unless it gives --config. A config flag defined with a
  default would load it, and apply the command line's overrides to it, at import, where
  a mistyped key cannot yet become a one-line error."""
  if any(arg == "--config" or arg.startswith("--config=") for arg in argv):
    return argv
  return [argv[0], f"--config={name}", *argv[1:]]


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every failure (including the config file's and its
  overrides') turned into `fail`'s one line; --config may name a preset."""
  argv = _with_config_files(argv)
  try:
    remaining = flags.FLAGS(argv)
    if "config" in flags.FLAGS:
      flags.FLAGS.config.keys()  # a config file that failed to load raises only when read
    return remaining
  except flags.Error as error:
    if "Error whilst parsing config file" in str(error):  # its text ends with the traceback
      fail(f"--config: {str(error).strip().splitlines()[-1]}")
    message = " ".join(str(error).split())
    unknown = re.fullmatch(r"Unknown command line flag '([^']+)'", message)
    key = unknown and _config_key_named(unknown.group(1))
    fail(message + (f"; config keys are set as --config.{key}=VALUE" if key else ""))
  except (AttributeError, KeyError) as error:
    # ml_collections, a key: "'num_step'\nDid you mean "num_steps" instead of "num_step"?";
    # a section: the same as a KeyError, whose text is that string's repr.
    text = str(error)
    names = re.findall(r"'([^'\\]+)\\?'", text)
    suggestion = re.search(r'Did you mean "([^"]+)"', text)
    if not names:
      fail(" ".join(text.split()))
    message = f"{_config_override(argv, names[0])}: no config key {names[0]!r}"
    fail(message + (f"; did you mean {suggestion.group(1)!r}?" if suggestion else ""))
  except OSError as error:
    # ml_collections: "Failed loading config file ...\n  Attempted ...\n  [Errno 2] ..."
    reasons = re.findall(r"\[Errno \d+\] (.+)", str(error))
    fail(f"--config: {reasons[-1]}" if reasons else " ".join(str(error).split()))
  except (ValueError, TypeError, SyntaxError) as error:
    fail(" ".join(str(error).split()))


def _config_key_named(name: str) -> str | None:
  """SECTION.NAME if NAME (e.g. num_steps) is a key of the configs, else None."""
  # pylint: disable=g-import-not-at-top  (only on this error path)
  from dcgan_jax import run_dir
  from experiments.configs import common
  keys = [key for key in run_dir.flatten(common.base_config().to_dict())
          if key.rsplit(".", 1)[-1] == name]
  return keys[0] if len(keys) == 1 else None


def define_member_flag() -> flags.FlagHolder[int | None]:
  """--member, of the commands that read a trained run: which of a population's members."""
  return flags.DEFINE_integer(
      "member", None, "Of a population's run directory (population.seeds or .sweep): the "
      "member to use, 0 to P-1, as DIR/final.json lists them.", lower_bound=0)


def given(flag: str) -> bool:
  """Whether the command line set `flag` (config overrides exist only when given)."""
  return flag in flags.FLAGS and flags.FLAGS[flag].present


class Stopped(KeyboardInterrupt):
  """SIGINT or SIGTERM outside training's loop (which stops itself after a step)."""


_main_started = False
_stopping = False


def _in_ignoring_callback(frame) -> bool:
  """Whether the signal arrived inside a garbage collector callback or a finaliser, where
  an exception is printed and dropped instead of raised."""
  callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
  while frame is not None:
    if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
      return True
    frame = frame.f_back
  return False


def _on_signal(signum: int, frame) -> None:
  """The first signal raises Stopped; later ones change nothing, so that they cannot
  interrupt the clean-up the first one started."""
  global _stopping
  name = signal.Signals(signum).name
  if not _main_started:  # still importing or parsing flags: nothing is written yet
    _stop(f"stopped by {name} before starting; nothing was written")
  if _stopping:
    return
  if _in_ignoring_callback(frame):
    threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()  # delivered again, outside
    return
  _stopping = True
  raise Stopped(name)


def install_signal_handlers() -> None:
  """SIGINT and SIGTERM end the command with `run`'s one line."""
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, _on_signal)


def exit_stopped(message: object) -> NoReturn:
  """Training stopped with its work saved (a signal in its loop, or divergence): the line
  says how to go on. Signals from now on change nothing (JAX's exit handlers still run)."""
  global _stopping
  _stopping = True
  print(message, file=sys.stderr, flush=True)
  sys.exit(STOPPED)


def _stop(message: str) -> NoReturn:
  """Prints the line and ends the process at once. After an interrupt inside XLA (a
  compilation, say) the interpreter's own shutdown can crash in JAX's runtime, so it is
  skipped: by now the `finally` blocks have closed the workers, the checkpoint writers and
  the lock, and every file is written under a temporary name and renamed."""
  print(message, file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(STOPPED)


def run(main: Callable[[list[str]], None],
        parser: Callable[[list[str]], list[str]] = parse_flags,
        arguments: tuple[str, ...] = ()) -> None:
  """app.run(main) with `parse_flags` (or a parser built on it), exactly the positional
  `arguments` named and absl's logging down to errors (orbax's and JAX's notes are not
  the command's output); a usage error (a stray argument, a missing path) and a path that
  cannot be written are `fail`'s one line, not the whole usage text or a traceback. SIGINT
  and SIGTERM, at any moment, end the command with one line and exit code 1; running it
  again finishes the work."""
  def main_failing_in_one_line(argv: list[str]) -> None:
    try:
      given = argv[1:]
      if len(given) != len(arguments):
        raise app.UsageError(
            f"expected {' and '.join(arguments)}, got {len(given)}: {given}" if arguments
            else f"unexpected arguments: {given}")
      logging.set_verbosity(logging.ERROR)
      main(argv)
    except app.UsageError as error:
      fail(error)
    except OSError as error:  # a path in the way, without rights, on a full or read-only disk
      if error.filename is None:
        raise
      fail(f"{error.filename}: {error.strerror or error}; check the path and its permissions")
    except KeyboardInterrupt as stopped:
      _stop(f"stopped by {stopped or 'SIGINT'}; run the same command to finish")

  def started_main(argv: list[str]) -> None:
    global _main_started, _stopping
    _main_started = True
    main_failing_in_one_line(argv)
    _stopping = True  # the work is done: a signal while exiting must not turn it into a failure

  install_signal_handlers()
  app.run(started_main, flags_parser=parser)
