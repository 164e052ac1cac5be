"""Runs the project's entry points as a user would, in a subprocess from the repo root."""

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_TINY = "experiments/configs/synthetic.py:tiny"


def with_xla_flags(*extra: str) -> dict[str, str]:
  """An environment's XLA_FLAGS: the suite's own (see conftest) and `extra`."""
  return {"XLA_FLAGS": " ".join([os.environ.get("XLA_FLAGS", ""), *extra]).strip()}


def free_port() -> int:
  """A TCP port free now on this machine, for a multi-process run's coordinator."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_module(module: str, *args: str, env: dict[str, str] | None = None,
               check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
  full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
  result = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
  if check and result.returncode != 0:
    raise AssertionError(f"{module} {args} failed ({result.returncode}):\n{result.stderr[-3000:]}")
  return result


def train(workdir: Path, *overrides: str, **kwargs) -> subprocess.CompletedProcess:
  return run_module("experiments.celeba", "--workdir", workdir, "--config", SYNTHETIC_TINY,
                    *overrides, **kwargs)
