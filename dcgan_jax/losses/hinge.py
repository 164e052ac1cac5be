"""Hinge GAN loss (Lim & Ye 2017; the loss of SNGAN, Miyato et al. 2018): D is a margin
classifier, mean relu(1 - D(x)) + mean relu(1 + D(G(z))); G maximises D(G(z)), as in
the Wasserstein loss."""

import jax
import jax.numpy as jnp

from dcgan_jax import losses
from dcgan_jax.losses import wasserstein


def discriminator_hinge(real_out: jax.Array, fake_out: jax.Array) -> jax.Array:
  return jnp.mean(jax.nn.relu(1.0 - real_out)) + jnp.mean(jax.nn.relu(1.0 + fake_out))


LOSS = losses.loss_of_outputs(discriminator_hinge, wasserstein.generator_critic,
                              losses.OUTPUT_MEANS)
