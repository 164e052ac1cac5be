"""The SNGAN ResNet generator and discriminator (Miyato et al. 2018), laid out as Mimicry
(Lee & Town 2020) trains them at 64x64, and with one block fewer at 32x32.

Generator: z -> dense to 4x4x(nf * 2**n) -> n residual up-blocks halving the channels
(BN, ReLU, nearest 2x upsampling, 3x3 conv, BN, ReLU, 3x3 conv; a 1x1 conv shortcut
after the same upsampling) -> BN, ReLU, 3x3 conv to RGB, tanh; n = log2(R / 4).
Discriminator: an optimised first block to nf channels at R/2 (3x3 conv, ReLU, 3x3 conv,
2x2 average pool; shortcut: pool, then 1x1 conv), then n blocks doubling the channels
and halving the size (ReLU, 3x3 conv, ReLU, 3x3 conv, pool; shortcut: 1x1 conv, pool),
ReLU, a sum over positions and a dense layer to one logit. With nf = 64 at 64x64 these
are Mimicry's SNGAN 64 networks (1024 channels at the narrow end).

Weights are Xavier-uniform, with gain sqrt(2) in the residual paths and 1 in the
shortcuts and end layers (Mimicry's); biases start at zero. The generator's layers that
feed a BatchNorm have no bias: the normalisation cancels it, so its gradient is pure
rounding, which Adam would turn into a random walk. `d_norm` "spectral" divides
every discriminator weight by its spectral norm, "none" leaves it plain; the
discriminator never has batch normalisation.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from dcgan_jax.models import layers

# What `model.d_norm` may be: the discriminator never has batch or layer normalisation.
D_NORMS = ("spectral", "none")


def _xavier(gain: float):
  return nn.initializers.variance_scaling(gain**2, "fan_avg", "uniform")


def num_blocks(resolution: int) -> int:
  n = math.log2(resolution / 4)
  if resolution < 32 or n != int(n):
    raise ValueError(f"model.arch=resnet needs data.resolution a power of two >= 32, "
                     f"got {resolution}")
  return int(n)


def _batch_norm(x: jax.Array, labels_BA: jax.Array | None, train: bool) -> jax.Array:
  """BatchNorm, conditional on the attributes when given (`layers.ConditionalBatchNorm`)."""
  if labels_BA is None:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
  return layers.ConditionalBatchNorm(use_running_average=not train, momentum=0.9,
                                     epsilon=1e-5)(x, labels_BA)


def _upsample(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _pool(x: jax.Array) -> jax.Array:
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


class GeneratorBlock(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, labels_BA: jax.Array | None, train: bool) -> jax.Array:
    # Every output here reaches a BatchNorm next (this block's, the next block's or the
    # last one), so no layer has a bias.
    def conv(features, size, gain):
      return nn.Conv(features, (size, size), use_bias=False, kernel_init=_xavier(gain))

    h = _upsample(nn.relu(_batch_norm(x, labels_BA, train)))
    h = conv(self.features, 3, math.sqrt(2))(h)
    h = conv(self.features, 3, math.sqrt(2))(nn.relu(_batch_norm(h, labels_BA, train)))
    return h + conv(self.features, 1, 1.0)(_upsample(x))


class Generator(nn.Module):
  """z (B, z_dim) -> images (B, R, R, 3) in [-1, 1], float32. Given +1/-1 attributes
  (B, A), every BatchNorm is conditional on them (`layers.ConditionalBatchNorm`)."""

  resolution: int = 64
  nf: int = 64

  @nn.compact
  def __call__(self, z_BZ: jax.Array, labels_BA: jax.Array | None = None, *,
               train: bool) -> jax.Array:
    n = num_blocks(self.resolution)
    x = nn.Dense(4 * 4 * self.nf * 2**n, use_bias=False, kernel_init=_xavier(1.0))(z_BZ)
    x = x.reshape(-1, 4, 4, self.nf * 2**n)
    for i in reversed(range(n)):
      x = GeneratorBlock(self.nf * 2**i)(x, labels_BA, train)
    x = nn.relu(_batch_norm(x, labels_BA, train))
    x = nn.Conv(3, (3, 3), kernel_init=_xavier(1.0))(x)
    return jnp.tanh(x.astype(jnp.float32))


def _apply_layer(layer: nn.Module, x: jax.Array, spectral: bool, train: bool) -> jax.Array:
  """`layer(x)`, its kernel spectrally normalised when `spectral`."""
  if spectral:
    return nn.SpectralNorm(layer)(x, update_stats=train)
  return layer(x)


class DiscriminatorBlock(nn.Module):
  features: int
  first: bool  # the optimised first block, on the image itself
  spectral: bool

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    def conv(h, features, size, gain, name):
      layer = nn.Conv(features, (size, size), kernel_init=_xavier(gain), name=name)
      return _apply_layer(layer, h, self.spectral, train)

    hidden = self.features if self.first else x.shape[-1]
    h = conv(x if self.first else nn.relu(x), hidden, 3, math.sqrt(2), "Conv_0")
    h = _pool(conv(nn.relu(h), self.features, 3, math.sqrt(2), "Conv_1"))
    if self.first:
      shortcut = conv(_pool(x), self.features, 1, 1.0, "Shortcut")
    else:
      shortcut = _pool(conv(x, self.features, 1, 1.0, "Shortcut"))
    return h + shortcut


class Discriminator(nn.Module):
  """images (B, R, R, 3) in [-1, 1] (and, if conditional, attributes (B, A) in +1/-1)
  -> logits (B,), float32; attributes enter through a projection head on the pooled
  features, as in Miyato & Koyama's conditional SNGAN (`heads`: see
  `layers.conditional_output`)."""

  nf: int = 64
  norm: str = "spectral"
  heads: tuple[str, ...] = ("projection",)

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, labels_BA: jax.Array | None = None, *,
               train: bool) -> jax.Array:
    n = num_blocks(x_BHWC.shape[1])
    spectral = self.norm == "spectral"
    x = DiscriminatorBlock(self.nf, first=True, spectral=spectral)(x_BHWC, train)
    for i in range(1, n + 1):
      x = DiscriminatorBlock(self.nf * 2**i, first=False, spectral=spectral)(x, train)
    x = jnp.sum(nn.relu(x), axis=(1, 2))
    dense = nn.Dense(1, kernel_init=_xavier(1.0), name="Dense_0")
    logits = _apply_layer(dense, x, spectral, train).reshape(-1).astype(jnp.float32)
    # The final layer's Xavier initialisation has variance 2 / (fan in + fan out).
    stddev = math.sqrt(2 / (x.shape[-1] + 1))
    return layers.conditional_output(logits, labels_BA, x, stddev, spectral, train, self.heads)
