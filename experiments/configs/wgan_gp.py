"""WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs") with the
DCGAN networks.

From the paper: the Wasserstein loss with a two-sided gradient penalty of weight 10 at
random interpolates, 5 critic updates per generator update, Adam with learning rate
1e-4, beta1 0 and beta2 0.9, and no batch normalisation in the critic (layer
normalisation instead, the drop-in the paper recommends).

  python -m experiments.celeba --workdir runs/wgan_gp --config experiments/configs/wgan_gp.py \
      --config.data.dir=data/celeba64
"""

import ml_collections

from experiments.configs import common, dcgan


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = dcgan.dcgan_config()
  config.loss.name = "wasserstein"
  config.loss.penalty = "gp"
  config.loss.penalty_weight = 10.0
  config.model.d_norm = "layer"
  config.train.d_steps = 5
  common.set_adam(config, lr=1e-4, beta1=0.0, beta2=0.9)
  return common.apply_variant(config, variant)
