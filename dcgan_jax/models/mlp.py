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
  """images (B, R, R, 3) in [-1, 1] -> logits (B,), float32."""

  hidden: int = 256
  num_layers: int = 3

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, train: bool) -> jax.Array:
    del train
    x = x_BHWC.reshape(x_BHWC.shape[0], -1)
    for i in reversed(range(self.num_layers)):
      x = nn.leaky_relu(nn.Dense(self.hidden * 2**i)(x), 0.2)
    return nn.Dense(1)(x).reshape(-1)
