"""DCGAN with the two time-scale update rule (Heusel et al. 2017, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium"): D and G learn at their
own rates, here the course's G 2e-4 and D 1e-4; everything else is the DCGAN preset's.

  python -m experiments.celeba --workdir runs/dcgan_ttur \
      --config experiments/configs/dcgan_ttur.py --config.data.dir=data/celeba64
"""

import ml_collections

from experiments.configs import common, dcgan


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = dcgan.dcgan_config()
  config.train.g_lr = 2e-4
  config.train.d_lr = 1e-4
  return common.apply_variant(config, variant)
