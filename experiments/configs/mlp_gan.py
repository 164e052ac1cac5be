"""The fully connected GAN (Goodfellow et al. 2014, "Generative Adversarial Nets"), as
the course's first face generator: flattened images, three hidden dense layers of 256,
512 and 1024 units with LeakyReLU(0.2) in each network, a tanh output, and the paper's
non-saturating generator loss. The paper trained with SGD and momentum (and maxout
units in D); this preset keeps the DCGAN preset's Adam (2e-4, beta1 0.5) and data so
the family compares on equal terms.

  python -m experiments.celeba --workdir runs/mlp_gan --config experiments/configs/mlp_gan.py \
      --config.data.dir=data/celeba64
"""

import ml_collections

from experiments.configs import common, dcgan


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = dcgan.dcgan_config()
  config.model.arch = "mlp"
  config.model.nf = 256  # the first hidden layer's width
  config.model.d_norm = "none"
  return common.apply_variant(config, variant)
