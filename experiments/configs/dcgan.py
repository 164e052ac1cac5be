"""DCGAN on CelebA 64x64 (Radford et al. 2015, "Unsupervised Representation Learning with
Deep Convolutional Generative Adversarial Networks"): the default config.

From the paper: the all-convolutional generator and discriminator with BatchNorm (none
on D's input layer), ReLU in G and LeakyReLU(0.2) in D, weights from N(0, 0.02), the
non-saturating loss, Adam with learning rate 2e-4 and beta1 0.5 for both networks,
batch 128, 64x64 images.

  python -m experiments.prepare_celeba --src img_align_celeba.zip --out data/celeba64
  python -m experiments.celeba --workdir runs/dcgan --config experiments/configs/dcgan.py \
      --config.data.dir=data/celeba64

Append `:tiny` to the config path for a seconds-long smoke run.
"""

import ml_collections

from experiments.configs import common


def dcgan_config() -> ml_collections.ConfigDict:
  """The preset before any `:variant`; the other presets start from it."""
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
  return config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  return common.apply_variant(dcgan_config(), variant)
