"""SNGAN with the DCGAN networks (Miyato et al. 2018, "Spectral Normalization for
Generative Adversarial Networks", whose "standard CNN" is this discriminator).

From the paper: spectral normalisation of every discriminator layer (one power
iteration per update) in place of batch normalisation, and the hinge loss. The
training parameters are those Mimicry (Lee & Town 2020) trains SNGAN with on CelebA
64x64: batch 64, Adam with learning rate 2e-4, beta1 0, beta2 0.9, 5 discriminator
updates per generator update (Mimicry also decays the rate linearly; here it stays).

  python -m experiments.celeba --workdir runs/sngan --config experiments/configs/sngan.py \
      --config.data.dir=data/celeba64
"""

import ml_collections

from experiments.configs import common, dcgan


def sngan_config() -> ml_collections.ConfigDict:
  """The preset before any `:variant`; `sngan_resnet` starts from it."""
  config = dcgan.dcgan_config()
  config.loss.name = "hinge"
  config.model.d_norm = "spectral"
  config.train.batch_size = 64
  config.train.d_steps = 5
  common.set_adam(config, lr=2e-4, beta1=0.0, beta2=0.9)
  return config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return common.apply_variant(sngan_config(), variant)
