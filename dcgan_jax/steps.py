"""Pure GAN steps: `train_step(state, images) -> (state, metrics)` and sampling.

Nothing here knows about devices: the loop jits these with the batch sharded over a
named `data` mesh axis, and BatchNorm's batch means become global-batch means.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from dcgan_jax import losses
from dcgan_jax.train_state import GanSetup, PyTree, TrainState

Metrics = dict[str, jax.Array]


def to_model_range(images_BHWC: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1]; done on device so the host ships uint8."""
  return images_BHWC.astype(jnp.float32) / 127.5 - 1.0


def from_model_range(x_BHWC: jax.Array) -> jax.Array:
  """float [-1, 1] -> uint8 [0, 255]."""
  return jnp.clip(jnp.round((x_BHWC + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def _apply_train(module: Any, params: PyTree, batch_stats: PyTree, x: jax.Array):
  """Train-mode forward pass: batch statistics, returns (output, new batch_stats)."""
  out, updates = module.apply(
      {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"])
  return out, updates["batch_stats"]


def _d_update(setup: GanSetup, state: TrainState, real: jax.Array, fake: jax.Array
              ) -> tuple[TrainState, Metrics]:
  """One discriminator step on a real and a (constant) fake batch, passed separately
  so each gets its own BatchNorm statistics, as in the reference DCGAN."""

  def loss_fn(d_params):
    real_logits, stats = _apply_train(setup.discriminator, d_params, state.d_batch_stats, real)
    fake_logits, stats = _apply_train(setup.discriminator, d_params, stats, fake)
    loss = losses.discriminator_loss(real_logits, fake_logits)
    return loss, (stats, real_logits, fake_logits)

  (loss, (stats, real_logits, fake_logits)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.d_params)
  updates, opt_state = setup.d_optimizer.update(grads, state.d_opt_state, state.d_params)
  state = state.replace(d_params=optax.apply_updates(state.d_params, updates),
                        d_batch_stats=stats, d_opt_state=opt_state)
  metrics = {"d_loss": loss,
             "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
             "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}
  return state, metrics


def train_step(setup: GanSetup, state: TrainState, images_BHWC: jax.Array
               ) -> tuple[TrainState, Metrics]:
  """`setup.d_steps` discriminator updates, then one generator update.

  The generator runs forward once per D update; the last forward keeps its VJP so the
  generator update reuses it instead of running G again (same math as the reference,
  where the G step back-propagates through the fake batch the D step just saw).
  """
  real = to_model_range(images_BHWC)
  batch_size = real.shape[0]
  step_key = jax.random.fold_in(state.key, state.step)

  def sample_z(i: int) -> jax.Array:
    return jax.random.normal(jax.random.fold_in(step_key, i), (batch_size, setup.z_dim))

  for i in range(setup.d_steps - 1):
    fake, g_stats = _apply_train(setup.generator, state.g_params, state.g_batch_stats, sample_z(i))
    state, _ = _d_update(setup, state.replace(g_batch_stats=g_stats), real, fake)

  def generate(g_params):
    return _apply_train(setup.generator, g_params, state.g_batch_stats, sample_z(setup.d_steps - 1))

  fake, generator_vjp, g_stats = jax.vjp(generate, state.g_params, has_aux=True)
  state, metrics = _d_update(setup, state.replace(g_batch_stats=g_stats), real, fake)

  def g_loss_fn(fake_images):
    logits, stats = _apply_train(setup.discriminator, state.d_params, state.d_batch_stats,
                                 fake_images)
    return losses.generator_loss(logits), (stats, logits)

  (g_loss, (d_stats, fake_logits)), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = generator_vjp(fake_grad)
  updates, g_opt_state = setup.g_optimizer.update(g_grads, state.g_opt_state, state.g_params)
  state = state.replace(
      step=state.step + 1,
      g_params=optax.apply_updates(state.g_params, updates),
      g_opt_state=g_opt_state,
      d_batch_stats=d_stats,
  )
  metrics |= {"g_loss": g_loss, "d_fake_after": jnp.mean(jax.nn.sigmoid(fake_logits))}
  return state, metrics


def generate_images(setup: GanSetup, state: TrainState, z_BZ: jax.Array) -> jax.Array:
  """uint8 samples from z. Uses the batch's own BatchNorm statistics, as the reference
  DCGAN does when it draws its fixed-noise grid; running averages are left untouched."""
  x, _ = _apply_train(setup.generator, state.g_params, state.g_batch_stats, z_BZ)
  return from_model_range(x)
