"""DCGAN's four convolution shapes, each computed two ways with the same parameter.

Each layer owns one `kernel` of shape (4, 4, C_in, C_out), laid out exactly as Flax's
`nn.ConvTranspose` / `nn.Conv` lay it out, so checkpoints do not depend on `impl`:

- `impl="reference"`: the plain `lax` convolution those Flax layers run.
- `impl="fast"`: the same function as matrix products over 2x2 windows, which XLA runs
  far faster on CPU (there `lax.conv_transpose` forward and backward is an order of
  magnitude slower than PyTorch's, and strided convolutions are slow too):

  * stride-2 transposed conv: each 2x2 window of the (padded) input produces, through
    one (4*C_in, 4*C_out) matrix, the four output pixels of its 2x2 phases that it
    fully determines; the phases are then interleaved. No multiply is wasted on the
    zeros a transposed convolution inserts.
  * stride-2 conv: space-to-depth, then one matrix product over 2x2 windows of blocks.
  * the generator's first layer (1x1 -> 4x4) and the discriminator's last (4x4 -> 1x1):
    a single matrix product.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_CHANNELS_LAST = ("NHWC", "HWIO", "NHWC")
IMPLS = ("fast", "reference")

CONV_STDDEV = 0.02


def conv_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """N(0, 0.02), the DCGAN paper's initialisation for every convolution."""
  return CONV_STDDEV * jax.random.normal(key, shape, dtype)


# Taps of the 4-tap transposed-conv kernel that reach output phase (even, odd) from the
# first and second pixel of a 2-pixel input window.
_PHASE_TAPS = np.array([[0, 2], [1, 3]])


def _phase_kernel(kernel: jax.Array) -> jax.Array:
  """(4, 4, Ci, Co) transposed-conv kernel -> (2*2*Ci, 2*2*Co) window-to-phases matrix.

  Rows are ordered (window row, window col, Ci), columns (row phase, col phase, Co).
  """
  ci, co = kernel.shape[2:]
  taps = kernel[_PHASE_TAPS[:, :, None, None], _PHASE_TAPS[None, None, :, :]]
  # taps: (row phase, window row, col phase, window col, Ci, Co)
  return taps.transpose(1, 3, 4, 0, 2, 5).reshape(4 * ci, 4 * co)


def _windows_2x2(x: jax.Array) -> jax.Array:
  """(B, H, W, C) -> (B, H-1, W-1, 4*C): every 2x2 window, (row, col, C) ordered."""
  h, w = x.shape[1] - 1, x.shape[2] - 1
  return jnp.concatenate([x[:, i:i + h, j:j + w] for i in (0, 1) for j in (0, 1)], axis=-1)


def _matmul_2d(x: jax.Array, w: jax.Array) -> jax.Array:
  return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def _space_to_depth(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(
      b, h // 2, w // 2, 4 * c)


def _conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_CHANNELS_LAST)


def upsample_2x(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """PyTorch's ConvTranspose2d(k=4, s=2, p=1) in Flax's kernel layout: (B,H,W,Ci) -> (B,2H,2W,Co)."""
  if impl == "reference":
    return jax.lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)), dimension_numbers=_CHANNELS_LAST)
  b, h, w, _ = x.shape
  co = kernel.shape[3]
  windows = _windows_2x2(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
  phases = _matmul_2d(windows, _phase_kernel(kernel)).reshape(b, h + 1, w + 1, 2, 2, co)
  # Output pixel (2i + a, 2j + c) comes from the window starting at (i + a, j + c).
  rows = [jnp.stack([phases[:, a:a + h, c:c + w, a, c] for c in (0, 1)], axis=3) for a in (0, 1)]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, co)


def downsample_2x(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """Conv2d(k=4, s=2, p=1): (B,H,W,Ci) -> (B,H/2,W/2,Co)."""
  if impl == "reference":
    return _conv(x, kernel, (2, 2), ((1, 1), (1, 1)))
  ci, co = kernel.shape[2:]
  # Tap 2*s + r pairs block offset s with position r inside a 2x2 block.
  blocked = kernel.reshape(2, 2, 2, 2, ci, co).transpose(0, 2, 1, 3, 4, 5).reshape(16 * ci, co)
  blocks = _space_to_depth(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
  return _matmul_2d(_windows_2x2(blocks), blocked)


def project_1x1_to_4x4(z: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """Transposed conv, 4x4 VALID, on a 1x1 input: (B,1,1,Ci) -> (B,4,4,Co)."""
  if impl == "reference":
    return jax.lax.conv_transpose(z, kernel, (1, 1), "VALID", dimension_numbers=_CHANNELS_LAST)
  # Flax's (unflipped) transposed kernel puts tap k at output position 3 - k.
  flipped = kernel[::-1, ::-1]
  return jnp.einsum("bc,hwcd->bhwd", z[:, 0, 0, :], flipped)


def reduce_4x4_to_1x1(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """Conv, 4x4 VALID, on a 4x4 input: (B,4,4,Ci) -> (B,1,1,Co)."""
  if impl == "reference":
    return _conv(x, kernel, (1, 1), "VALID")
  return jnp.einsum("bhwc,hwcd->bd", x, kernel)[:, None, None, :]


class Conv4x4(nn.Module):
  """A bias-free 4x4 (transposed) convolution; `op` is one of the functions above."""

  features: int
  op: Any
  impl: str = "fast"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", conv_init, (4, 4, x.shape[-1], self.features), jnp.float32)
    return self.op(x.astype(self.dtype), kernel.astype(self.dtype), self.impl)


def projection(labels_BA: jax.Array, features_BF: jax.Array, stddev: float,
               spectral: bool, train: bool) -> jax.Array:
  """The projection discriminator's class term (Miyato & Koyama 2018), (B,): the inner
  product of each sample's final features with an embedding of its attributes, y V,
  for +1/-1 attribute vectors y (the sum of one embedding row per attribute, signed).
  Called inside a discriminator's compact `__call__`; the embedding
  is spectrally normalised like the rest of a spectral-norm discriminator.

  `stddev` is that of the final layer's weights: V starts at N(0, stddev^2 / A), so y V
  (a sum of A rows) has the final layer's scale and, at initialisation, the attribute
  term is no larger than the unconditional logit whatever the number of attributes."""
  init = nn.initializers.normal(stddev / np.sqrt(labels_BA.shape[-1]))
  embed = nn.Dense(features_BF.shape[-1], use_bias=False, kernel_init=init, name="Projection")
  if spectral:
    embedded = nn.SpectralNorm(embed)(labels_BA, update_stats=train)
  else:
    embedded = embed(labels_BA)
  return jnp.sum(embedded * features_BF, axis=-1).astype(jnp.float32)


# D's attribute heads: AC-GAN's one logit per attribute, that the sample has it; ADC-GAN's
# four per attribute (`auxiliary_classifier.ADC_CLASSES`), whether a real or a fake face has it.
CLASSIFIER_HEADS = {"classifier": 1, "discriminative_classifier": 4}


def attribute_classes(labels_BA: jax.Array, features_BF: jax.Array, spectral: bool,
                      train: bool, logits_per_attribute: int = 1) -> jax.Array:
  """An auxiliary classifier's logits, (B, A * logits_per_attribute) float32, attribute by
  attribute: a linear map of the final features (AC-GAN, Odena et al. 2017, with one
  logit per attribute; ADC-GAN, Hou et al. 2022, with four). Called inside a
  discriminator's compact `__call__`, spectrally normalised like the rest of such a
  discriminator; it reads only the labels' width."""
  classify = nn.Dense(labels_BA.shape[-1] * logits_per_attribute, name="AttributeClasses")
  if spectral:
    return nn.SpectralNorm(classify)(features_BF, update_stats=train).astype(jnp.float32)
  return classify(features_BF).astype(jnp.float32)


def conditional_output(logits_B: jax.Array, labels_BA: jax.Array | None,
                       features_BF: jax.Array, stddev: float, spectral: bool, train: bool,
                       heads: tuple[str, ...]) -> jax.Array | tuple[jax.Array, jax.Array]:
  """A discriminator's output from its unconditional logits and final features: the
  logits alone without labels; with them, the projection term added (if "projection"
  in `heads`) and, with one of `CLASSIFIER_HEADS` in `heads`, the pair (logits, attribute
  logits). `model.d_projection` and `loss.aux_classifier(_weight)` choose the heads."""
  if labels_BA is None:
    return logits_B
  if "projection" in heads:
    logits_B = logits_B + projection(labels_BA, features_BF, stddev, spectral, train)
  classifier = [head for head in heads if head in CLASSIFIER_HEADS]
  if not classifier:
    return logits_B
  return logits_B, attribute_classes(labels_BA, features_BF, spectral, train,
                                     CLASSIFIER_HEADS[classifier[0]])


class ConditionalBatchNorm(nn.Module):
  """BatchNorm whose scale and bias are functions of a condition (de Vries et al. 2017;
  Miyato & Koyama 2018, as BigGAN's generator uses it): for +1/-1 attributes y (B, A),
  x_hat * (scale + y W_scale) + (bias + y W_bias), x_hat normalised by the batch's
  statistics (train) or the running ones. W_scale and W_bias start at zero: at
  initialisation it is the unconditional BatchNorm with the same scale and bias."""

  use_running_average: bool
  momentum: float
  epsilon: float
  scale_init: Callable[..., jax.Array] = nn.initializers.ones
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, labels_BA: jax.Array) -> jax.Array:
    features, num_attributes = x.shape[-1], labels_BA.shape[-1]
    x_hat = nn.BatchNorm(use_running_average=self.use_running_average, momentum=self.momentum,
                         epsilon=self.epsilon, use_scale=False, use_bias=False,
                         dtype=self.dtype)(x)
    scale = self.param("scale", self.scale_init, (features,))
    bias = self.param("bias", nn.initializers.zeros, (features,))
    scale_of_labels = self.param("scale_of_labels", nn.initializers.zeros,
                                 (num_attributes, features))
    bias_of_labels = self.param("bias_of_labels", nn.initializers.zeros,
                                (num_attributes, features))
    y = labels_BA.astype(jnp.float32)
    per_sample = (x.shape[0], *(1,) * (x.ndim - 2), features)
    gamma = (scale + y @ scale_of_labels).reshape(per_sample)
    beta = (bias + y @ bias_of_labels).reshape(per_sample)
    return x_hat * gamma.astype(x_hat.dtype) + beta.astype(x_hat.dtype)
