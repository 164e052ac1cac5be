"""What every command shares: flags parsed with one-line errors, and how it fails.

Bad input of any kind (an unknown or mistyped flag or config key, a missing config
file, a bad value) ends in one line on stderr, `error: ...`, and exit code 2, before
anything is written.
"""

import re
import sys
from typing import Callable, NoReturn, Sequence

from absl import app, flags

USAGE_ERROR = 2


def fail(message: object) -> NoReturn:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(USAGE_ERROR)


def _config_override(argv: Sequence[str], unknown: str) -> str:
  """The --config.KEY=VALUE argument whose key ends in the unknown name."""
  for arg in argv:
    if arg.startswith("--config.") and re.search(rf"[.]{re.escape(unknown)}(=|$)", arg):
      return arg
  return f"--config...{unknown}"


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every failure (including the config file's and its
  overrides') turned into `fail`'s one line."""
  try:
    remaining = flags.FLAGS(argv)
    if "config" in flags.FLAGS:
      flags.FLAGS.config.keys()  # a config file that failed to load raises only when read
    return remaining
  except flags.Error as error:
    fail(" ".join(str(error).split()))
  except AttributeError as error:
    # ml_collections: "'num_step'\nDid you mean "num_steps" instead of "num_step"?"
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
  except (ValueError, TypeError, KeyError, SyntaxError) as error:
    fail(" ".join(str(error).split()))


def run(main: Callable[[list[str]], None]) -> None:
  """app.run(main) with `parse_flags`."""
  app.run(main, flags_parser=parse_flags)
