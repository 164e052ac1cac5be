"""Progressive Growing of GANs (Karras et al. 2018, ICLR) as pure Flax Linen modules.

Design values taken from the paper (and, where the paper is silent, its official code):

- Resolutions 4x4 up to `max_resolution`, doubling per stage: stage s trains at
  4 * 2**s (section 2, Table 2).
- Feature maps: 512 up to 32x32, then halved per doubling (Table 2), here
  `min(nf, nf * 32 // r)` so `nf` scales the whole network.
- Equalised learning rate (section 4.1): weights drawn from N(0, 1), scaled at runtime by
  He's constant gain / sqrt(fan_in), gain sqrt(2) for layers followed by a leaky ReLU, 1 for
  the linear to_rgb and logit layers, and sqrt(2)/4 for the generator's first dense layer
  (official code); biases start at zero.
- Pixelwise feature normalisation (section 4.2) in the generator on the latent and
  after the first dense layer and every 3x3 convolution, epsilon 1e-8.
- Leaky ReLU slope 0.2 everywhere but the to_rgb and logit layers, which are linear; no
  tanh on the images (Table 2).
- Minibatch standard deviation (section 3) as an extra channel before the
  discriminator's last 3x3 convolution, group size 4, epsilon 1e-8 (official code).
- Nearest-neighbour 2x upsampling in the generator, 2x2 box-filter downsampling in the
  discriminator and for real images (section 2, Table 2).
- New resolutions are faded in linearly with alpha from 0 to 1 (section 2, Figure 2).

Every layer of every resolution is created at `init`, whatever stage the module was built
with, so a checkpoint's structure never changes while the network grows; a module of any
stage can apply those parameters.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

_LRELU_SLOPE = 0.2
_HE_GAIN = math.sqrt(2)
_CHANNELS_LAST = ("NHWC", "HWIO", "NHWC")

# What `model.d_norm` may be: the paper's discriminator has no normalisation layers (the
# equalised learning rate and the generator's pixel norm take their place).
D_NORMS = ("none",)


def channels(resolution: int, nf: int) -> int:
  """Feature maps at `resolution`: `nf` up to 32x32, then halved per doubling."""
  return max(1, min(nf, nf * 32 // resolution))


def num_stages(max_resolution: int) -> int:
  """Number of stages up to `max_resolution`; stage s trains at 4 * 2**s."""
  if max_resolution < 8 or max_resolution & (max_resolution - 1):
    raise ValueError(f"data.resolution must be a power of two >= 8, got {max_resolution}")
  return max_resolution.bit_length() - 2


def resolutions(max_resolution: int) -> list[int]:
  """Each stage's resolution, 4 up to `max_resolution`."""
  return [4 * 2**s for s in range(num_stages(max_resolution))]


def _check_stage(stage: int, max_resolution: int) -> int:
  """The stage's resolution, or a ValueError if `stage` is out of range."""
  n = num_stages(max_resolution)
  if not 0 <= stage < n:
    raise ValueError(f"stage must be in [0, {n - 1}] for resolution {max_resolution}, "
                     f"got {stage}")
  return 4 * 2**stage


class EqualizedDense(nn.Module):
  """Dense layer with the equalised learning rate: N(0, 1) weights scaled by
  gain / sqrt(fan_in) at every call, so Adam's step is the same size for every layer."""

  features: int
  gain: float = _HE_GAIN
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.normal(1.0), (fan_in, self.features))
    y = x @ (kernel * (self.gain / math.sqrt(fan_in)))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y


class EqualizedConv(nn.Module):
  """Stride-1 SAME convolution with the equalised learning rate (see `EqualizedDense`)."""

  features: int
  kernel_size: int
  gain: float = _HE_GAIN

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> jax.Array:
    k = self.kernel_size
    fan_in = k * k * x_BHWC.shape[-1]
    kernel = self.param("kernel", nn.initializers.normal(1.0),
                        (k, k, x_BHWC.shape[-1], self.features))
    y = jax.lax.conv_general_dilated(x_BHWC, kernel * (self.gain / math.sqrt(fan_in)),
                                     (1, 1), "SAME", dimension_numbers=_CHANNELS_LAST)
    return y + self.param("bias", nn.initializers.zeros, (self.features,))


def pixel_norm(x: jax.Array, epsilon: float = 1e-8) -> jax.Array:
  """Each pixel's feature vector scaled to unit mean square over channels."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + epsilon)


def minibatch_stddev(x_BHWC: jax.Array, group_size: int = 4) -> jax.Array:
  """Appends one channel: the mean over (H, W, C) of the features' standard deviation
  within the sample's group, so D can see how varied the batch is.

  Grouped as the official code does: G = min(group_size, B) and the batch is viewed as
  (G, B // G, H, W, C), statistics taken over the first axis, so sample i belongs to
  group i mod (B // G).
  """
  b, h, w, c = x_BHWC.shape
  g = min(group_size, b)
  if b % g:
    raise ValueError(f"minibatch stddev needs the batch ({b}) divisible by the group size ({g})")
  y = x_BHWC.astype(jnp.float32).reshape(g, b // g, h, w, c)
  y = y - jnp.mean(y, axis=0, keepdims=True)
  y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)
  y_M = jnp.mean(y, axis=(1, 2, 3))
  y_BHW1 = jnp.broadcast_to(jnp.tile(y_M, g)[:, None, None, None], (b, h, w, 1))
  return jnp.concatenate([x_BHWC, y_BHW1.astype(x_BHWC.dtype)], axis=-1)


def box_downsample(x_BHWC: jax.Array, factor: int) -> jax.Array:
  """Mean over non-overlapping factor x factor windows."""
  b, h, w, c = x_BHWC.shape
  return x_BHWC.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def upsample_nearest(x_BHWC: jax.Array, factor: int) -> jax.Array:
  """Each pixel repeated factor x factor times."""
  return jnp.repeat(jnp.repeat(x_BHWC, factor, axis=1), factor, axis=2)


def _lrelu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, _LRELU_SLOPE)


class GeneratorBlock(nn.Module):
  """(B, r/2, r/2, C) -> (B, r, r, features): upsample, then two 3x3 convolutions."""

  features: int

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> jax.Array:
    h = upsample_nearest(x_BHWC, 2)
    h = pixel_norm(_lrelu(EqualizedConv(self.features, 3, name="conv_a")(h)))
    return pixel_norm(_lrelu(EqualizedConv(self.features, 3, name="conv_b")(h)))


class DiscriminatorBlock(nn.Module):
  """(B, r, r, C) -> (B, r/2, r/2, features_b): two 3x3 convolutions, then a 2x2 box filter."""

  features_a: int
  features_b: int

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> jax.Array:
    h = _lrelu(EqualizedConv(self.features_a, 3, name="conv_a")(x_BHWC))
    h = _lrelu(EqualizedConv(self.features_b, 3, name="conv_b")(h))
    return box_downsample(h, 2)


class Generator(nn.Module):
  """z (B, z_dim) -> images (B, R, R, 3), float32, unbounded (linear to_rgb), at the
  stage's resolution R = 4 * 2**stage; `alpha` in [0, 1] fades the newest block in."""

  max_resolution: int
  nf: int
  stage: int
  alpha: float | jax.Array = 1.0

  @nn.compact
  def __call__(self, z_BZ: jax.Array, train: bool) -> jax.Array:
    del train  # No batch norm: the same function in training and evaluation.
    resolution = _check_stage(self.stage, self.max_resolution)
    sizes = resolutions(self.max_resolution)
    c4 = channels(4, self.nf)
    blocks = {r: GeneratorBlock(channels(r, self.nf), name=f"block_{r}") for r in sizes[1:]}
    to_rgb = {r: EqualizedConv(3, 1, gain=1.0, name=f"to_rgb_{r}") for r in sizes}

    h = EqualizedDense(4 * 4 * c4, gain=_HE_GAIN / 4, name="dense_4")(pixel_norm(z_BZ))
    h = pixel_norm(_lrelu(h.reshape(-1, 4, 4, c4)))
    h = pixel_norm(_lrelu(EqualizedConv(c4, 3, name="conv_4")(h)))
    hs = {4: h}
    for r in sizes[1:self.stage + 1]:
      hs[r] = blocks[r](hs[r // 2])

    if self.is_initializing():
      # The layers this stage does not use, on zeros, so every stage has the same tree.
      for r in sizes[self.stage + 1:]:
        blocks[r](jnp.zeros((1, r // 2, r // 2, channels(r // 2, self.nf)), h.dtype))
      for r in sizes:
        if r not in (resolution, resolution // 2):
          to_rgb[r](jnp.zeros((1, r, r, channels(r, self.nf)), h.dtype))

    new = to_rgb[resolution](hs[resolution])
    if self.stage == 0:
      return new.astype(jnp.float32)
    old = upsample_nearest(to_rgb[resolution // 2](hs[resolution // 2]), 2)
    # In this form alpha == 1 gives `new` bit-exactly: the old path is multiplied by 0.
    return ((1 - self.alpha) * old + self.alpha * new).astype(jnp.float32)


class Discriminator(nn.Module):
  """images (B, R, R, 3) at the stage's resolution R = 4 * 2**stage -> logits (B,),
  float32; `alpha` in [0, 1] fades the newest block in. B must be divisible by
  min(mbstd_group_size, B)."""

  max_resolution: int
  nf: int
  stage: int
  alpha: float | jax.Array = 1.0
  mbstd_group_size: int = 4

  @nn.compact
  def __call__(self, x_BHWC: jax.Array, train: bool) -> jax.Array:
    del train  # No batch norm: the same function in training and evaluation.
    resolution = _check_stage(self.stage, self.max_resolution)
    sizes = resolutions(self.max_resolution)
    blocks = {r: DiscriminatorBlock(channels(r, self.nf), channels(r // 2, self.nf),
                                    name=f"block_{r}") for r in sizes[1:]}
    from_rgb_layers = {r: EqualizedConv(channels(r, self.nf), 1, name=f"from_rgb_{r}")
                       for r in sizes}

    def from_rgb(r: int, x: jax.Array) -> jax.Array:
      return _lrelu(from_rgb_layers[r](x))

    if self.is_initializing():
      # The layers this stage does not use, on zeros, so every stage has the same tree.
      for r in sizes:
        if r not in (resolution, resolution // 2):
          from_rgb(r, jnp.zeros((1, r, r, 3), x_BHWC.dtype))
        if r > resolution:
          blocks[r](jnp.zeros((1, r, r, channels(r, self.nf)), x_BHWC.dtype))

    if self.stage == 0:
      h = from_rgb(4, x_BHWC)
    else:
      old = from_rgb(resolution // 2, box_downsample(x_BHWC, 2))
      new = blocks[resolution](from_rgb(resolution, x_BHWC))
      h = (1 - self.alpha) * old + self.alpha * new
    for r in reversed(sizes[1:self.stage]):
      h = blocks[r](h)

    h = minibatch_stddev(h, self.mbstd_group_size)
    h = _lrelu(EqualizedConv(channels(4, self.nf), 3, name="final_conv")(h))
    h = _lrelu(EqualizedDense(channels(4, self.nf), name="final_dense")(h.reshape(h.shape[0], -1)))
    logits = EqualizedDense(1, gain=1.0, name="final_logit")(h)
    return logits.reshape(-1).astype(jnp.float32)
