"""Least-squares GAN loss (Mao et al. 2017, LSGAN) with the 0-1 coding a=0, b=1, c=1:
D regresses real to 1 and fake to 0, G pushes its fakes to 1; each square is halved as
in the paper. At equilibrium D outputs 1/2 everywhere."""

import jax
import jax.numpy as jnp

from dcgan_jax import losses


def discriminator_squares(real_out: jax.Array, fake_out: jax.Array) -> jax.Array:
  return 0.5 * jnp.mean((real_out - 1.0) ** 2) + 0.5 * jnp.mean(fake_out ** 2)


def generator_squares(fake_out: jax.Array) -> jax.Array:
  return 0.5 * jnp.mean((fake_out - 1.0) ** 2)


LOSS = losses.loss_of_outputs(discriminator_squares, generator_squares, losses.OUTPUT_MEANS,
                              equilibrium=0.5)
