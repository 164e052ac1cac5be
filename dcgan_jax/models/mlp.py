"""The fully connected GAN (Goodfellow et al. 2014, as the course's first face GAN):
images flattened to vectors, dense layers with LeakyReLU(0.2), a tanh output.

Generator: z -> `hidden` units, doubling `num_layers - 1` times -> R*R*3, tanh,
reshaped to (R, R, 3). Discriminator: the mirror, flattened image -> halving hidden
layers -> one logit. No normalisation: samples stay independent, so every loss and
penalty applies.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dcgan_jax.models import layers

# What `model.d_norm` may be: these networks normalise nothing.
D_NORMS = ("none",)


class Generator(nn.Module):
  """z (B, z_dim) -> images (B, R, R, 3) in [-1, 1], float32."""

  resolution: int = 32
  hidden: int = 256
  num_layers: int = 3

  @nn.compact
  def __call__(self, z_BZ: jax.Array, train: bool) -> jax.Array:
    del train  # no batch statistics
    x = z_BZ
    for i in range(self.num_layers):
      x = nn.leaky_relu(nn.Dense(self.hidden * 2**i)(x), 0.2)
    x = nn.Dense(self.resolution * self.resolution * 3)(x)
    return jnp.tanh(x).reshape(-1, self.resolution, self.resolution, 3)


class Discriminator(nn.Module):
  """images (B, R, R, 3) in [-1, 1] (and, if conditional, attributes (B, A) in +1/-1)
  -> logits (B,), float32; attributes enter through a projection head on the last
  hidden layer (`heads`: see `layers.conditional_output`)."""

  hidden: int = 256
  num_layers: int = 3
  heads: tuple[str, ...] = ("projection",)

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, labels_BA: jax.Array | None = None, *,
               train: bool) -> jax.Array:
    x = x_BHWC.reshape(x_BHWC.shape[0], -1)
    for i in reversed(range(self.num_layers)):
      x = nn.leaky_relu(nn.Dense(self.hidden * 2**i)(x), 0.2)
    # Dense's default (LeCun normal) initialisation of the final layer: stddev 1/sqrt(fan in).
    return layers.conditional_output(nn.Dense(1)(x).reshape(-1), labels_BA, x,
                                     x.shape[-1]**-0.5, False, train, self.heads)
