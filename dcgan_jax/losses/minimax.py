"""The original minimax GAN loss (Goodfellow et al. 2014): D as in the non-saturating
loss, while G minimises log(1 - D(G(z))), whose gradient vanishes while D rejects the
fakes confidently; kept for comparison, as the course teaches it."""

import jax
import jax.numpy as jnp

from dcgan_jax import losses
from dcgan_jax.losses import non_saturating


def generator_log_one_minus_d(fake_logits: jax.Array) -> jax.Array:
  """mean log(1 - sigmoid(logit)), in the stable form log_sigmoid(-logit)."""
  return jnp.mean(jax.nn.log_sigmoid(-fake_logits))


LOSS = losses.loss_of_outputs(non_saturating.discriminator_bce, generator_log_one_minus_d,
                              non_saturating.PROBABILITIES, equilibrium=0.5)
