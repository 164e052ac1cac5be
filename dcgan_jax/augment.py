"""DiffAugment (Zhao et al. 2020): differentiable augmentations of every image the
discriminator sees, real and generated alike, so D cannot overfit a small training set
while G still gets gradients through the augmented fakes.

`data.augment` names a policy, a comma-separated list applied in this order:

- `color`: per image, brightness + U(-0.5, 0.5), saturation x U(0, 2) around the
  image's grey level, contrast x U(0.5, 1.5) around the image's mean.
- `translation`: per image, a shift by up to 1/8 of the size in each direction,
  filled with zeros.
- `cutout`: per image, a square of half the size at a uniformly drawn centre set to
  zero (clipped at the borders).

Images are float (B, H, W, C) in [-1, 1]; the values are the paper's reference ones.
"""

from typing import Callable

import jax
import jax.numpy as jnp

Augmentation = Callable[[jax.Array, jax.Array], jax.Array]


def color(x_BHWC: jax.Array, key: jax.Array) -> jax.Array:
  b = x_BHWC.shape[0]
  brightness_key, saturation_key, contrast_key = jax.random.split(key, 3)
  x = x_BHWC + jax.random.uniform(brightness_key, (b, 1, 1, 1)) - 0.5
  grey = x.mean(axis=3, keepdims=True)
  x = (x - grey) * jax.random.uniform(saturation_key, (b, 1, 1, 1), maxval=2.0) + grey
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  return (x - mean) * jax.random.uniform(contrast_key, (b, 1, 1, 1), minval=0.5,
                                         maxval=1.5) + mean


def _shift(image_HWC: jax.Array, dy: jax.Array, dx: jax.Array) -> jax.Array:
  """The image moved by (dy, dx) pixels, zeros where nothing moved in."""
  h, w, _ = image_HWC.shape
  padded = jnp.pad(image_HWC, ((h, h), (w, w), (0, 0)))
  return jax.lax.dynamic_slice(padded, (h - dy, w - dx, 0), image_HWC.shape)


def translation(x_BHWC: jax.Array, key: jax.Array) -> jax.Array:
  b, h, w, _ = x_BHWC.shape
  max_dy, max_dx = h // 8, w // 8
  dy_key, dx_key = jax.random.split(key)
  dy = jax.random.randint(dy_key, (b,), -max_dy, max_dy + 1)
  dx = jax.random.randint(dx_key, (b,), -max_dx, max_dx + 1)
  return jax.vmap(_shift)(x_BHWC, dy, dx)


def cutout(x_BHWC: jax.Array, key: jax.Array) -> jax.Array:
  b, h, w, _ = x_BHWC.shape
  cut_h, cut_w = h // 2, w // 2
  y_key, x_key = jax.random.split(key)
  # The square's top-left corner, so that its centre is anywhere in the image.
  top = jax.random.randint(y_key, (b, 1, 1), 0, h) - cut_h // 2
  left = jax.random.randint(x_key, (b, 1, 1), 0, w) - cut_w // 2
  rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
  inside = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)
  return x_BHWC * (~inside)[..., None].astype(x_BHWC.dtype)


AUGMENTATIONS: dict[str, Augmentation] = {
    "color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> tuple[str, ...]:
  """The augmentations `data.augment` names, or a one-line error naming the unknown ones."""
  names = tuple(name.strip() for name in policy.split(",") if name.strip())
  unknown = [name for name in names if name not in AUGMENTATIONS]
  if unknown:
    raise ValueError(f"data.augment {policy!r} names unknown augmentations {unknown}; "
                     f"expected a comma-separated list of {', '.join(AUGMENTATIONS)}")
  return names


def augment(x_BHWC: jax.Array, names: tuple[str, ...], key: jax.Array) -> jax.Array:
  """`x_BHWC` through each named augmentation in turn, each with its own key."""
  for name, name_key in zip(names, jax.random.split(key, max(len(names), 1))):
    x_BHWC = AUGMENTATIONS[name](x_BHWC, name_key)
  return x_BHWC
