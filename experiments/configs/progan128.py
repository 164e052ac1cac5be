"""Progressive growing to 128x128 faces (Karras et al. 2018, "Progressive Growing of GANs
for Improved Quality, Stability, and Variation").

From the paper: generator and discriminator grow from 4x4 to 128x128, one resolution at
a time; each new resolution fades in linearly over 800k images, then trains stabilised
for 800k images (4x4 only stabilises); real images are box-filtered to the current
resolution and faded the same way. Equalised learning rate (weights N(0, 1) scaled at
runtime by He's constant), pixelwise feature normalisation in the generator (and on z),
minibatch standard deviation (groups of 4) before the discriminator's last block, leaky
ReLU 0.2, no batch normalisation; 512 feature maps up to 32x32, then 256 and 128; a
512-dimensional latent. WGAN-GP loss (gradient penalty weight 10, one critic update per
generator update) with the drift term 0.001 * D(real)^2; Adam with learning rate 1e-3,
beta1 0, beta2 0.99; minibatch 16 at every resolution up to 128x128; the generator's
weights averaged with decay 0.999 for samples and evaluation.

  python -m experiments.prepare_celeba --src img_align_celeba.zip --out data/celeba128 \
      --resolution 128
  python -m experiments.celeba --workdir runs/progan128 --config progan128

The full schedule is 550,000 steps (8.8M images). `:tiny` grows 4 -> 16 px on synthetic
faces in seconds, with a different batch per resolution.
"""

import ml_collections

from experiments.configs import common, dcgan


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = dcgan.dcgan_config()
  config.data.dir = "data/celeba128"
  config.data.resolution = 128
  config.model.arch = "progan"
  config.model.d_norm = "none"
  config.model.nf = 512
  config.model.z_dim = 512
  config.loss.name = "wasserstein"
  config.loss.penalty = "gp"
  config.loss.penalty_weight = 10.0
  config.loss.drift_weight = 0.001
  config.growth.fade_images = 800_000
  config.growth.stable_images = 800_000
  config.growth.batch_sizes = ""
  config.train.batch_size = 16
  config.train.num_epochs = None
  # 4x4: 50,000 steps; each of 8 ... 128: 50,000 fading in and 50,000 stabilised.
  config.train.num_steps = 550_000
  config.train.d_steps = 1
  config.train.g_ema_decay = 0.999
  common.set_adam(config, lr=1e-3, beta1=0.0, beta2=0.99)
  config.train.log_every = 500
  config.train.sample_every = 10_000
  config.train.checkpoint_every = 10_000
  config.eval.every_steps = 50_000
  common.apply_variant(config, variant)
  if variant == "tiny":
    config.data.source = "synthetic"
    config.train.batch_size = 8
    config.growth.batch_sizes = "4:16,8:16,16:8"
    config.growth.fade_images = 32
    config.growth.stable_images = 32
    # 4x4: 2 steps; 8x8: 2 fading in and 2 stabilised at batch 16; 16x16: 4 and 4 at 8.
    config.train.num_steps = 14
  return config
