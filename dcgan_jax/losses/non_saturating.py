"""Non-saturating GAN loss in logit form (Goodfellow et al. 2014, as used by DCGAN).

The discriminator outputs logits; D(x) = sigmoid(logit) is its probability that x is
real. `log_sigmoid` keeps the binary cross-entropy finite for logits of any size, which
`log(sigmoid(x))` does not.
"""

import jax
import jax.numpy as jnp

from dcgan_jax.losses import Batch, Critic, Loss, LossResult, PyTree


def discriminator_bce(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """BCE with real -> 1 and fake -> 0, averaged over each batch and summed."""
  return -jnp.mean(jax.nn.log_sigmoid(real_logits)) - jnp.mean(jax.nn.log_sigmoid(-fake_logits))


def generator_bce(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating generator loss: BCE of fakes against the real label."""
  return -jnp.mean(jax.nn.log_sigmoid(fake_logits))


def discriminator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                       fake: Batch, key: jax.Array) -> LossResult:
  """Real and fake batches pass separately, so each gets its own BatchNorm statistics,
  as in the reference DCGAN. Metrics: D's mean probability on each batch."""
  del key  # deterministic
  real_logits, d_state = critic(d_params, d_state, real)
  fake_logits, d_state = critic(d_params, d_state, fake)
  metrics = {"d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
             "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}
  return discriminator_bce(real_logits, fake_logits), (d_state, metrics)


def generator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                   fake: Batch, key: jax.Array) -> LossResult:
  """Metric: D's mean probability on the fakes after its own update."""
  del real, key  # the fakes alone decide it
  fake_logits, d_state = critic(d_params, d_state, fake)
  return generator_bce(fake_logits), (d_state,
                                      {"d_fake_after": jnp.mean(jax.nn.sigmoid(fake_logits))})


LOSS = Loss(
    discriminator=discriminator_loss,
    generator=generator_loss,
    output_metrics={"d_real": "D(x), real batch",
                    "d_fake": "D(G(z)) before the D update",
                    "d_fake_after": "D(G(z)) after the D update"},
    output_axis_label="mean sigmoid(D)",
    equilibrium=0.5,
)
