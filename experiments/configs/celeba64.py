"""CelebA 64x64 with the DCGAN paper's hyperparameters (the default config).

  python -m experiments.prepare_celeba --src img_align_celeba.zip --out data/celeba64
  python -m experiments.celeba --workdir runs/celeba64 --config.data.dir=data/celeba64

Append `:tiny` to the config path for a seconds-long smoke run.
"""

import ml_collections

from experiments.configs import common


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = common.base_config()
  config.data.source = "celeba"
  config.data.dir = "data/celeba64"
  config.data.resolution = 64
  config.train.batch_size = 128
  config.train.num_epochs = 20.0
  config.train.log_every = 100
  config.train.sample_every = 1000
  config.train.checkpoint_every = 2000
  config.eval.every_steps = 5000
  return common.apply_variant(config, variant)
