"""Non-saturating GAN losses in logit form (Goodfellow et al. 2014, as used by DCGAN).

`log_sigmoid` keeps the binary cross-entropy finite for logits of any size, which
`log(sigmoid(x))` does not.
"""

import jax
import jax.numpy as jnp


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """BCE with real -> 1 and fake -> 0, averaged over each batch and summed."""
  return -jnp.mean(jax.nn.log_sigmoid(real_logits)) - jnp.mean(jax.nn.log_sigmoid(-fake_logits))


def generator_loss(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating generator loss: BCE of fakes against the real label."""
  return -jnp.mean(jax.nn.log_sigmoid(fake_logits))
