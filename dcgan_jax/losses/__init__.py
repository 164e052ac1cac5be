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
