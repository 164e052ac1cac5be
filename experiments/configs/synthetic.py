"""Synthetic faces, 32x32: the demo that trains on a laptop CPU with no download.

  python -m experiments.celeba --workdir runs/synthetic --config experiments/configs/synthetic.py

Append `:tiny` to the config path for a seconds-long smoke run (what the tests use).
"""

import ml_collections

from experiments.configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = common.base_config()
  config.data.source = "synthetic"
  config.data.resolution = 32
  config.data.num_images = 50_000
  config.model.nf = 32
  config.train.batch_size = 64
  config.train.num_steps = 3000
  config.train.log_every = 50
  config.train.sample_every = 500
  config.train.checkpoint_every = 1000
  config.eval.every_steps = 1000
  config.eval.num_samples = 1000
  return common.apply_variant(config, variant)
