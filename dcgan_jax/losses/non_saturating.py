"""Non-saturating GAN loss in logit form (Goodfellow et al. 2014, as used by DCGAN).

The discriminator outputs logits; D(x) = sigmoid(logit) is its probability that x is
real. `log_sigmoid` keeps the binary cross-entropy finite for logits of any size, which
`log(sigmoid(x))` does not.
"""

import jax
import jax.numpy as jnp

from dcgan_jax import losses


def discriminator_bce(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """BCE with real -> 1 and fake -> 0, averaged over each batch and summed."""
  return -jnp.mean(jax.nn.log_sigmoid(real_logits)) - jnp.mean(jax.nn.log_sigmoid(-fake_logits))


def generator_bce(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating generator loss: BCE of fakes against the real label."""
  return -jnp.mean(jax.nn.log_sigmoid(fake_logits))


def _probabilities(real_logits: jax.Array, fake_logits: jax.Array) -> losses.Metrics:
  return {"d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
          "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}


def _probability_after_update(fake_logits: jax.Array) -> losses.Metrics:
  return {"d_fake_after": jnp.mean(jax.nn.sigmoid(fake_logits))}


# D's mean probability that each batch is real.
PROBABILITIES = losses.Readout(
    before=_probabilities, after=_probability_after_update,
    labels={"d_real": "D(x), real batch",
            "d_fake": "D(G(z)) before the D update",
            "d_fake_after": "D(G(z)) after the D update"},
    axis_label="mean sigmoid(D)")

LOSS = losses.loss_of_outputs(discriminator_bce, generator_bce, PROBABILITIES, equilibrium=0.5)
