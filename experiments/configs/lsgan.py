"""LSGAN (Mao et al. 2017, "Least Squares Generative Adversarial Networks"): the DCGAN
networks and optimiser trained with the paper's least-squares loss in its 0-1 coding
(a=0, b=1, c=1: D regresses real to 1 and fake to 0, G pushes its fakes to 1).

  python -m experiments.celeba --workdir runs/lsgan --config experiments/configs/lsgan.py \
      --config.data.dir=data/celeba64
"""

import ml_collections

from experiments.configs import common, dcgan


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = dcgan.dcgan_config()
  config.loss.name = "least_squares"
  return common.apply_variant(config, variant)
