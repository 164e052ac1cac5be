"""Conditional DCGAN on CelebA's attributes: the DCGAN (Radford et al. 2015) told what
face to draw, after the conditional GAN of Mirza & Osindero 2014 ("Conditional
Generative Adversarial Nets"), with the discriminator's projection head of Miyato &
Koyama 2018 ("cGANs with Projection Discriminator").

From Mirza & Osindero: the generator's input is z concatenated with the condition y
(here the +1/-1 attribute vector). From Miyato & Koyama: the discriminator adds the
inner product of an embedding of y with its final features, instead of taking y as an
input. Everything else is `dcgan.py` (the paper's networks and Adam 2e-4, beta1 0.5,
batch 128), so a comparison with it isolates the conditioning. All 40 CelebA attributes
condition by default; `--config.model.attributes=Male,Smiling,Eyeglasses` picks a subset.

  python -m experiments.celeba --workdir runs/cdcgan --config experiments/configs/cdcgan.py \
      --config.data.dir=data/celeba64
  python -m experiments.sample --workdir runs/cdcgan --num 16 --out_dir faces \
      --attributes Male=1,Eyeglasses=-1
"""

import ml_collections

from experiments.configs import common, dcgan


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = dcgan.dcgan_config()
  config.model.condition = "attributes"
  return common.apply_variant(config, variant)
