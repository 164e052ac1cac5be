"""Wasserstein GAN loss (Arjovsky et al. 2017): the critic maximises
mean D(x) - mean D(G(z)), an estimate of the Wasserstein-1 distance when D is
1-Lipschitz (enforced by a gradient penalty, `loss.penalty=gp`, as in Gulrajani et al.
2017); G maximises mean D(G(z))."""

import jax
import jax.numpy as jnp

from dcgan_jax import losses


def critic_difference(real_out: jax.Array, fake_out: jax.Array) -> jax.Array:
  return jnp.mean(fake_out) - jnp.mean(real_out)


def generator_critic(fake_out: jax.Array) -> jax.Array:
  return -jnp.mean(fake_out)


LOSS = losses.loss_of_outputs(critic_difference, generator_critic, losses.OUTPUT_MEANS)
