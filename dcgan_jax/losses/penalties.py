"""Gradient penalties on the discriminator, added to any loss's discriminator term.

- `gp`: WGAN-GP (Gulrajani et al. 2017), weight * mean (||grad_x D(x_hat)|| - 1)^2 over
  x_hat = e * x_real + (1 - e) * x_fake, one e ~ U[0, 1] per sample (two-sided).
- `r1`: R1 (Mescheder et al. 2018), weight / 2 * mean ||grad_x D(x_real)||^2.
- `drift` (`loss.drift_weight`, besides any of these): ProGAN's (Karras et al. 2018)
  weight * mean D(x_real)^2, which keeps a Wasserstein critic's outputs near zero.

Gradients are per sample, so the discriminator must treat samples independently: no
batch normalisation (`model.d_norm` other than `batch`). The penalty's own passes leave
D's state (e.g. spectral-norm vectors) as the loss's passes left it.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from dcgan_jax import losses
from dcgan_jax.losses import Batch, Critic, PyTree

Penalty = Callable[[Critic, PyTree, PyTree, Batch, Batch, jax.Array], jax.Array]


def _input_gradients(critic: Critic, d_params: PyTree, d_state: PyTree, batch: Batch,
                     images: jax.Array) -> jax.Array:
  """d D(x_i) / d x_i for each sample: the gradient of the summed outputs."""

  def summed_outputs(x):
    outputs, _ = critic(d_params, d_state, {**batch, "image": x})
    return jnp.sum(outputs)

  return jax.grad(summed_outputs)(images)


def _squared_norms(gradients: jax.Array) -> jax.Array:
  return jnp.sum(gradients.reshape(gradients.shape[0], -1) ** 2, axis=1)


def gradient_penalty(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                     fake: Batch, key: jax.Array) -> jax.Array:
  """mean (||grad D(x_hat)|| - 1)^2 at random interpolates of real and fake samples."""
  real_images = real["image"]
  e = jax.random.uniform(key, (real_images.shape[0],) + (1,) * (real_images.ndim - 1))
  interpolates = e * real_images + (1.0 - e) * fake["image"]
  gradients = _input_gradients(critic, d_params, d_state, real, interpolates)
  return jnp.mean((jnp.sqrt(_squared_norms(gradients)) - 1.0) ** 2)


def r1_penalty(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch, fake: Batch,
               key: jax.Array) -> jax.Array:
  """mean ||grad D(x)||^2 / 2 on the real samples."""
  del fake, key
  gradients = _input_gradients(critic, d_params, d_state, real, real["image"])
  return 0.5 * jnp.mean(_squared_norms(gradients))


def drift(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch, fake: Batch,
          key: jax.Array) -> jax.Array:
  """mean D(x)^2 on the real samples."""
  del fake, key
  outputs, _ = critic(d_params, d_state, real)
  return jnp.mean(jnp.square(outputs))


PENALTIES: dict[str, Penalty | None] = {"none": None, "gp": gradient_penalty, "r1": r1_penalty}


def with_penalty(loss: losses.Loss, penalty: Penalty, weight: float,
                 metric: str = "d_penalty") -> losses.Loss:
  """`loss` with `weight * penalty` added to its discriminator term; the unweighted
  penalty is logged as `metric`."""

  def discriminator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                         fake: Batch, key: jax.Array) -> losses.LossResult:
    loss_key, penalty_key = jax.random.split(key)
    value, (new_state, metrics) = loss.discriminator(critic, d_params, d_state, real, fake,
                                                     loss_key)
    penalty_value = penalty(critic, d_params, new_state, real, fake, penalty_key)
    return value + weight * penalty_value, (new_state, metrics | {metric: penalty_value})

  return dataclasses.replace(loss, discriminator=discriminator_loss)
