"""Trains every preset's `:tiny` variant (or those named) for a few steps on synthetic
faces, with one D update per step, into DIR/<preset>/: in the test process, or as
`python -m tests.preset_runs DIR [PRESET ...]` in a process of its own (e.g. with several
forced CPU devices)."""

import importlib
import sys
from pathlib import Path

from dcgan_jax import train

PRESETS = ("dcgan", "dcgan_ttur", "lsgan", "wgan_gp", "sngan", "sngan_resnet", "mlp_gan",
           "cdcgan")
NUM_STEPS = 2


def tiny_preset(name: str):
  """The preset's `:tiny` variant on synthetic faces, `NUM_STEPS` long, with
  train.d_steps=1: runs on 1 and on 4 devices are compared before Adam's amplification
  of rounding compounds over several D updates (which the train step's own tests cover)."""
  config = importlib.import_module(f"experiments.configs.{name}").get_config("tiny")
  config.train.d_steps = 1
  config.data.source = "synthetic"
  config.train.num_steps = config.train.checkpoint_every = config.train.sample_every = NUM_STEPS
  config.train.log_every = 1
  return config


def train_presets(workdir: Path, names=PRESETS) -> dict[str, dict]:
  return {name: train.train_and_evaluate(tiny_preset(name), workdir / name) for name in names}


if __name__ == "__main__":
  train_presets(Path(sys.argv[1]), sys.argv[2:] or PRESETS)
