"""Hinge GAN loss (Lim & Ye 2017; the loss of SNGAN, Miyato et al. 2018): D is a margin
classifier, mean relu(1 - D(x)) + mean relu(1 + D(G(z))); G maximises D(G(z)), as in
the Wasserstein loss."""

import jax
import jax.numpy as jnp

from dcgan_jax import losses
from dcgan_jax.losses import wasserstein


def discriminator_hinge(real_out: jax.Array, fake_out: jax.Array) -> jax.Array:
  return jnp.mean(jax.nn.relu(1.0 - real_out)) + jnp.mean(jax.nn.relu(1.0 + fake_out))


LOSS = losses.Loss(
    discriminator=losses.discriminator_loss_of_outputs(discriminator_hinge, losses.output_means),
    generator=losses.generator_loss_of_outputs(wasserstein.generator_critic, losses.output_mean_after_update),
    output_metrics=losses.OUTPUT_MEAN_METRICS,
    output_axis_label="mean D",
)
