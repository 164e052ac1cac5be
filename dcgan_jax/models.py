"""DCGAN generator and discriminator (Radford et al. 2015) as pure Flax Linen modules.

Shapes follow the paper's 64x64 network and scale down for 32 and 16 pixels by
dropping middle blocks: the generator starts at 4x4 with `nf * 2**(n-1)` channels and
doubles resolution `n = log2(resolution / 4)` times; the discriminator mirrors it.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# BatchNorm momentum 0.9 is PyTorch's default (0.1 there counts the other way), which
# every DCGAN baseline uses; Flax's default of 0.99 tracks the running stats too slowly.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def conv_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """N(0, 0.02), the paper's initialisation for every convolution."""
  return 0.02 * jax.random.normal(key, shape, dtype)


def bn_scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """N(1, 0.02) BatchNorm scale, as in the reference DCGAN implementation."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def num_blocks(resolution: int) -> int:
  """Number of 2x resolution changes between 4x4 and `resolution`."""
  n = math.log2(resolution / 4)
  if resolution < 8 or n != int(n):
    raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
  return int(n)


def _batch_norm(train: bool, dtype: Any) -> nn.BatchNorm:
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=_BN_MOMENTUM,
      epsilon=_BN_EPSILON,
      scale_init=bn_scale_init,
      dtype=dtype,
  )


class Generator(nn.Module):
  """z (B, z_dim) -> images (B, R, R, 3) in [-1, 1]."""

  resolution: int = 64
  nf: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z_BZ: jax.Array, train: bool) -> jax.Array:
    n = num_blocks(self.resolution)
    x = z_BZ.astype(self.dtype)[:, None, None, :]
    # A 4x4 transposed conv on a 1x1 input, i.e. one dense layer per output pixel.
    x = nn.ConvTranspose(
        self.nf * 2 ** (n - 1), (4, 4), padding="VALID", use_bias=False,
        kernel_init=conv_init, dtype=self.dtype)(x)
    x = nn.relu(_batch_norm(train, self.dtype)(x))
    for i in reversed(range(n - 1)):
      x = upsample_conv(self.nf * 2**i, self.dtype)(x)
      x = nn.relu(_batch_norm(train, self.dtype)(x))
    x = upsample_conv(3, self.dtype)(x)
    return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
  """images (B, R, R, 3) in [-1, 1] -> logits (B,)."""

  nf: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, train: bool) -> jax.Array:
    n = num_blocks(x_BHWC.shape[1])
    x = x_BHWC.astype(self.dtype)
    for i in range(n):
      x = downsample_conv(self.nf * 2**i, self.dtype)(x)
      if i > 0:
        x = _batch_norm(train, self.dtype)(x)
      x = nn.leaky_relu(x, 0.2)
    x = nn.Conv(1, (4, 4), padding="VALID", use_bias=False, kernel_init=conv_init,
                dtype=self.dtype)(x)
    return x.reshape(x.shape[0]).astype(jnp.float32)


def upsample_conv(features: int, dtype: Any) -> nn.Module:
  """4x4 stride-2 transposed conv that doubles H and W (PyTorch's k=4, s=2, p=1)."""
  # lax.conv_transpose pads the dilated input by k - 1 - p = 2 on each side.
  return nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
                          use_bias=False, kernel_init=conv_init, dtype=dtype)


def downsample_conv(features: int, dtype: Any) -> nn.Module:
  """4x4 stride-2 conv that halves H and W (PyTorch's k=4, s=2, p=1)."""
  return nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                 use_bias=False, kernel_init=conv_init, dtype=dtype)
