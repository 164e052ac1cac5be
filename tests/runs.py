"""Tiny training runs in the test process, as a library user would start them."""

import json
from pathlib import Path
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np

from dcgan_jax import train
from dcgan_jax.train_state import TrainState
from experiments.configs import synthetic


def tiny_config(overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """The tiny synthetic config with `{"train.num_steps": 4, ...}` applied."""
  config = synthetic.get_config("tiny")
  config.update_from_flattened_dict(dict(overrides or {}))
  return config


def train_tiny(workdir: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Trains the tiny config in `workdir`; returns final.json's contents."""
  return train.train_and_evaluate(tiny_config(overrides), workdir)


def fingerprint(workdir: Path) -> str:
  """The state_fingerprint in a finished run's final.json."""
  return json.loads((workdir / "final.json").read_text())["state_fingerprint"]


def checkpoint_steps(workdir: Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def assert_trained_alike(one: TrainState, other: TrainState, learning_rate: float,
                         num_steps: int, what: str = "") -> None:
  """Two trainings of one model over other devices or processes give the same state, all
  but the optimisers' (parameters, the EMA's, BatchNorm statistics, step and key), up to
  the order of floating-point sums, which Adam amplifies where a gradient is nearly
  zero: its first updates move a parameter by about +-lr whatever the gradient's size,
  so rounding that flips a tiny gradient's sign moves that parameter by up to 2 lr per
  update (`learning_rate` the larger of G's and D's). A data-parallel error (statistics
  per device, a mis-sharded batch) moves all of them. Adam's moments are left out: they
  hold the last gradients, whose rounding no update has damped yet (up to 3% apart in a
  population trained by two processes)."""
  x, y = (np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(
      state.replace(g_opt_state=None, d_opt_state=None))]) for state in (one, other))
  off = ~np.isclose(x, y, rtol=1e-4, atol=1e-5)
  assert off.mean() < 0.01 and np.all(np.abs(x - y)[off] <= 2 * learning_rate * num_steps), \
      (what, off.mean(), np.abs(x - y).max())
