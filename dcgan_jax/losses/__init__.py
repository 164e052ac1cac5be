"""GAN objectives, one module each, in the shape the train step calls them.

A `Loss` pairs a discriminator loss and a generator loss. Each is given `critic`, the
discriminator's apply function `critic(params, state, batch) -> (outputs, state)`, its
parameters and mutable state (BatchNorm statistics), the batches it judges (dicts with
"image", float in [-1, 1], and "label") and a PRNG key, so a regulariser that needs
interpolates or noise fits the same signature. Each returns `(loss, (state, metrics))`:
the loss to differentiate, the discriminator state after its passes, and scalar metrics
named by the loss itself, which the loop logs as they come.
"""

import dataclasses
from typing import Any, Callable, Mapping

import jax

PyTree = Any
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
Critic = Callable[[PyTree, PyTree, Batch], tuple[jax.Array, PyTree]]
LossResult = tuple[jax.Array, tuple[PyTree, Metrics]]
# (critic, d_params, d_state, real, fake, key) -> (loss, (d_state, metrics))
DiscriminatorLoss = Callable[[Critic, PyTree, PyTree, Batch, Batch, jax.Array], LossResult]
GeneratorLoss = Callable[[Critic, PyTree, PyTree, Batch, Batch, jax.Array], LossResult]


@dataclasses.dataclass(frozen=True)
class Loss:
  """A GAN objective, and how to read the metrics it emits."""

  discriminator: DiscriminatorLoss
  generator: GeneratorLoss
  # Plot labels of the metrics whose value at equilibrium (D cannot tell real from
  # fake) is `equilibrium`; the report draws them on one panel with that level marked.
  output_metrics: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)
  output_axis_label: str = ""
  equilibrium: float | None = None


def discriminator_loss_of_outputs(loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
                                  metrics_fn: Callable[[jax.Array, jax.Array], Metrics]
                                  ) -> DiscriminatorLoss:
  """A discriminator loss that depends only on D's outputs on the real and the fake batch.

  The two batches pass separately, real first, so each gets its own BatchNorm
  statistics, as in the reference DCGAN.
  """

  def discriminator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                         fake: Batch, key: jax.Array) -> LossResult:
    del key  # deterministic
    real_out, d_state = critic(d_params, d_state, real)
    fake_out, d_state = critic(d_params, d_state, fake)
    return loss_fn(real_out, fake_out), (d_state, metrics_fn(real_out, fake_out))

  return discriminator_loss


def generator_loss_of_outputs(loss_fn: Callable[[jax.Array], jax.Array],
                              metrics_fn: Callable[[jax.Array], Metrics]) -> GeneratorLoss:
  """A generator loss that depends only on D's outputs on the fake batch."""

  def generator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                     fake: Batch, key: jax.Array) -> LossResult:
    del real, key  # the fakes alone decide it
    fake_out, d_state = critic(d_params, d_state, fake)
    return loss_fn(fake_out), (d_state, metrics_fn(fake_out))

  return generator_loss


def output_means(real_out: jax.Array, fake_out: jax.Array) -> Metrics:
  """D's mean raw output on each batch."""
  return {"d_real": real_out.mean(), "d_fake": fake_out.mean()}


def output_mean_after_update(fake_out: jax.Array) -> Metrics:
  return {"d_fake_after": fake_out.mean()}


OUTPUT_MEAN_METRICS = {"d_real": "mean D(x), real batch",
                       "d_fake": "mean D(G(z)) before the D update",
                       "d_fake_after": "mean D(G(z)) after the D update"}
