"""Tiny training runs in the test process, as a library user would start them."""

import json
from pathlib import Path
from typing import Any, Mapping

import ml_collections

from dcgan_jax import train
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
