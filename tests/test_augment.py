"""DiffAugment: each augmentation does what its name says, per image, differentiably,
and the train step applies the policy to everything the discriminator sees."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcgan_jax import augment, parallel, steps
from dcgan_jax.train_state import init_state_on, setup_from_config
from tests.runs import tiny_config

KEY = jax.random.PRNGKey(0)


def _images(b=8, size=16, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (b, size, size, 3)), jnp.float32)


@pytest.mark.parametrize("dy, dx", [(0, 0), (2, -1), (-2, 2), (1, 0)])
def test_shift_moves_the_image_and_fills_zeros_like_numpy(dy, dx):
  image = np.asarray(_images(1, 16)[0])
  want = np.zeros_like(image)
  h, w = image.shape[:2]
  want[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
      image[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
  np.testing.assert_array_equal(augment._shift(jnp.asarray(image), dy, dx), want)


def test_translation_moves_each_image_by_at_most_an_eighth():
  x = np.zeros((32, 16, 16, 1), np.float32)
  x[:, 8, 8] = 1.0  # one bright pixel in the middle of each image
  moved = np.asarray(augment.translation(jnp.asarray(x), KEY))
  _, flat = np.nonzero(moved[..., 0].reshape(32, -1))
  rows, cols = flat // 16, flat % 16
  assert moved.sum() == 32  # nothing lost: the pixel stays inside
  assert np.all(np.abs(rows - 8) <= 2) and np.all(np.abs(cols - 8) <= 2)
  assert len(set(zip(rows, cols))) > 5  # shifts differ between images


def test_cutout_zeroes_one_clipped_square_of_half_the_size_per_image():
  x = jnp.ones((32, 16, 16, 3))
  out = np.asarray(augment.cutout(x, KEY))
  for image in out:
    zero_rows, zero_cols = np.nonzero(image[..., 0] == 0)
    assert len(zero_rows) > 0
    box_h, box_w = np.ptp(zero_rows) + 1, np.ptp(zero_cols) + 1
    assert box_h <= 8 and box_w <= 8 and len(zero_rows) == box_h * box_w  # a solid rectangle
    assert np.all(image[..., 1:] == image[..., :1])  # all channels alike
  assert len({float(image.sum()) for image in out}) > 1  # clipped differently at the borders


def test_color_is_a_per_image_affine_change():
  x = _images(4)
  out = np.asarray(augment.color(x, KEY))
  for before, after in zip(np.asarray(x), out):
    # brightness, saturation and contrast combined: after = a * x + b * grey(x) + c.
    grey = before.mean(axis=2, keepdims=True)
    design = np.stack([before.ravel(), np.broadcast_to(grey, before.shape).ravel(),
                       np.ones(before.size)], axis=1)
    coefficients, residual, *_ = np.linalg.lstsq(design, after.ravel(), rcond=None)
    assert residual[0] < 1e-6 * before.size
  assert not np.allclose(out[0] - np.asarray(x)[0], out[1] - np.asarray(x)[1])


def test_policy_is_differentiable_with_exact_directional_derivatives():
  names = augment.parse_policy("color,translation,cutout")
  x, direction = _images(4, seed=1), _images(4, seed=2)
  f = lambda x: jnp.sum(augment.augment(x, names, KEY) ** 2)
  _, derivative = jax.jvp(f, (x,), (direction,))
  # The augmentations are affine in x for a fixed key, so f is quadratic along the line
  # and the central difference is exact for any step: a large one keeps float32 rounding
  # small.
  eps = 0.5
  numeric = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
  np.testing.assert_allclose(float(derivative), float(numeric), rtol=1e-3)
  assert float(jnp.abs(jax.grad(f)(x)).sum()) > 0


def test_unknown_augmentation_is_a_one_line_error():
  assert augment.parse_policy("") == ()
  assert augment.parse_policy(" color , cutout") == ("color", "cutout")
  with pytest.raises(ValueError, match=r"data.augment .*\['colour'\].*color, translation, cutout"):
    augment.parse_policy("colour,cutout")


@pytest.mark.slow
def test_the_step_augments_what_d_sees_and_stays_deterministic():
  config = tiny_config({"data.augment": "translation,cutout"})
  setup, plain_setup = setup_from_config(config), setup_from_config(tiny_config())
  assert setup.augment == ("translation", "cutout")
  state = init_state_on(plain_setup, 0, parallel.replicated(parallel.make_mesh()))
  batch = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3),
                                                                   np.uint8)),
           "label": jnp.zeros((16, 0), jnp.int8)}
  step = jax.jit(functools.partial(steps.train_step, setup))
  a, metrics = step(state, batch)
  b, _ = step(state, batch)
  plain, plain_metrics = jax.jit(functools.partial(steps.train_step, plain_setup))(state, batch)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert float(metrics["d_loss"]) != float(plain_metrics["d_loss"])
  assert all(np.isfinite(float(v)) for v in metrics.values())
