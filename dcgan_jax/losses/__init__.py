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


@dataclasses.dataclass(frozen=True)
class Readout:
  """How a loss reports D's raw outputs: metrics on the real and fake batches before the
  D update, on the fake batch after it, and their plot labels and axis."""

  before: Callable[[jax.Array, jax.Array], Metrics]
  after: Callable[[jax.Array], Metrics]
  labels: Mapping[str, str]
  axis_label: str


def loss_of_outputs(discriminator_loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
                    generator_loss_fn: Callable[[jax.Array], jax.Array], readout: Readout,
                    equilibrium: float | None = None) -> Loss:
  """A loss that depends only on D's outputs: `discriminator_loss_fn(real_out, fake_out)`
  and `generator_loss_fn(fake_out)`.

  The real and fake batches pass D separately, real first, so each gets its own
  BatchNorm statistics, as in the reference DCGAN.
  """

  def discriminator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                         fake: Batch, key: jax.Array) -> LossResult:
    del key  # deterministic
    real_out, d_state = critic(d_params, d_state, real)
    fake_out, d_state = critic(d_params, d_state, fake)
    return discriminator_loss_fn(real_out, fake_out), (d_state, readout.before(real_out, fake_out))

  def generator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                     fake: Batch, key: jax.Array) -> LossResult:
    del real, key  # the fakes alone decide it
    fake_out, d_state = critic(d_params, d_state, fake)
    return generator_loss_fn(fake_out), (d_state, readout.after(fake_out))

  return Loss(discriminator=discriminator_loss, generator=generator_loss,
              output_metrics=readout.labels, output_axis_label=readout.axis_label,
              equilibrium=equilibrium)


def _output_means(real_out: jax.Array, fake_out: jax.Array) -> Metrics:
  return {"d_real": real_out.mean(), "d_fake": fake_out.mean()}


def _output_mean_after_update(fake_out: jax.Array) -> Metrics:
  return {"d_fake_after": fake_out.mean()}


# D's mean raw output on each batch: the readout of losses whose D is not a probability.
OUTPUT_MEANS = Readout(
    before=_output_means, after=_output_mean_after_update,
    labels={"d_real": "mean D(x), real batch",
            "d_fake": "mean D(G(z)) before the D update",
            "d_fake_after": "mean D(G(z)) after the D update"},
    axis_label="mean D")
