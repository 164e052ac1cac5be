"""SNGAN with its ResNet networks (Miyato et al. 2018, "Spectral Normalization for
Generative Adversarial Networks"), as Mimicry (Lee & Town 2020) trains it on CelebA
64x64.

From the paper: the residual generator and discriminator, spectral normalisation of
every discriminator layer, the hinge loss. From Mimicry's CelebA 64x64 setup: 128
latent dimensions, 1024 channels at the narrow end (nf = 64), batch 64, Adam with
learning rate 2e-4, beta1 0 and beta2 0.9, 5 discriminator updates per generator
update (Mimicry also decays the rate linearly; here it stays).

  python -m experiments.celeba --workdir runs/sngan_resnet \
      --config experiments/configs/sngan_resnet.py --config.data.dir=data/celeba64

The ResNet needs at least 32x32 images, so its `:tiny` variant trains at 32.
"""

import ml_collections

from experiments.configs import common, sngan


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = sngan.sngan_config()  # loss, normalisation and training parameters
  config.model.arch = "resnet"
  config.model.z_dim = 128
  config = common.apply_variant(config, variant)
  if variant == "tiny":
    config.data.resolution = 32
  return config
