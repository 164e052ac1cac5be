"""DCGAN generator and discriminator (Radford et al. 2015) as pure Flax Linen modules.

Shapes follow the paper's 64x64 network and scale down for 32 and 16 pixels by
dropping middle blocks: the generator starts at 4x4 with `nf * 2**(n-1)` channels and
doubles resolution `n = log2(resolution / 4)` times; the discriminator mirrors it.
Layers are named as `nn.ConvTranspose` / `nn.Conv` would be, and `impl` only changes
how they are computed (see layers.py), never the parameters.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dcgan_jax.models import layers

# BatchNorm momentum 0.9 is PyTorch's default (0.1 there counts the other way), which
# every DCGAN baseline uses; Flax's default of 0.99 tracks the running stats too slowly.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


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
  """z (B, z_dim) -> images (B, R, R, 3) in [-1, 1], float32. Given +1/-1 attributes
  (B, A), every BatchNorm is conditional on them (`layers.ConditionalBatchNorm`)."""

  resolution: int = 64
  nf: int = 64
  dtype: Any = jnp.float32
  impl: str = "fast"

  @nn.compact
  def __call__(self, z_BZ: jax.Array, labels_BA: jax.Array | None = None, *,
               train: bool) -> jax.Array:
    n = num_blocks(self.resolution)

    def conv(features: int, op, index: int) -> layers.Conv4x4:
      return layers.Conv4x4(features, op, self.impl, self.dtype, name=f"ConvTranspose_{index}")

    def norm(x: jax.Array) -> jax.Array:
      if labels_BA is None:
        return _batch_norm(train, self.dtype)(x)
      return layers.ConditionalBatchNorm(
          use_running_average=not train, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
          scale_init=bn_scale_init, dtype=self.dtype)(x, labels_BA)

    x = conv(self.nf * 2 ** (n - 1), layers.project_1x1_to_4x4, 0)(z_BZ[:, None, None, :])
    x = nn.relu(norm(x))
    for block, i in enumerate(reversed(range(n - 1)), start=1):
      x = conv(self.nf * 2**i, layers.upsample_2x, block)(x)
      x = nn.relu(norm(x))
    x = conv(3, layers.upsample_2x, n)(x)
    return jnp.tanh(x.astype(jnp.float32))


# How the discriminator is normalised (`model.d_norm`); every name another architecture
# supports is one of these.
D_NORMS = ("batch", "spectral", "layer", "none")


class Discriminator(nn.Module):
  """images (B, R, R, 3) in [-1, 1] (and, if conditional, attributes (B, A) in +1/-1)
  -> logits (B,), float32.

  `norm` (`model.d_norm`): "batch", BatchNorm after every convolution but the first and
  the last (the paper's); "layer", LayerNorm over each sample's (H, W, C) in the same
  places (the WGAN-GP critic's, which must treat samples independently); "spectral",
  every convolution's kernel divided by its largest singular value, estimated by one
  power iteration per call whose vector is kept in the `batch_stats` collection (Miyato
  et al. 2018), and no other normalisation; "none". With attributes, a projection head
  on the final 4x4 features adds the attribute term and, with a classifier in `heads`,
  D also returns AC-GAN's or ADC-GAN's attribute logits (`layers.conditional_output`).
  """

  nf: int = 64
  dtype: Any = jnp.float32
  impl: str = "fast"
  norm: str = "batch"
  heads: tuple[str, ...] = ("projection",)

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, labels_BA: jax.Array | None = None, *,
               train: bool) -> jax.Array:
    n = num_blocks(x_BHWC.shape[1])

    def conv(features: int, op, index: int, x: jax.Array) -> jax.Array:
      layer = layers.Conv4x4(features, op, self.impl, self.dtype, name=f"Conv_{index}")
      if self.norm == "spectral":
        return nn.SpectralNorm(layer, dtype=self.dtype)(x, update_stats=train)
      return layer(x)

    def normalise(x: jax.Array) -> jax.Array:
      if self.norm == "batch":
        return _batch_norm(train, self.dtype)(x)
      if self.norm == "layer":
        return nn.LayerNorm(reduction_axes=(-3, -2, -1), dtype=self.dtype)(x)
      return x

    x = x_BHWC
    for i in range(n):
      x = conv(self.nf * 2**i, layers.downsample_2x, i, x)
      if i > 0:
        x = normalise(x)
      x = nn.leaky_relu(x, 0.2)
    logits = conv(1, layers.reduce_4x4_to_1x1, n, x).reshape(x.shape[0]).astype(jnp.float32)
    return layers.conditional_output(logits, labels_BA, x.reshape(x.shape[0], -1),
                                     layers.CONV_STDDEV, self.norm == "spectral", train,
                                     self.heads)
