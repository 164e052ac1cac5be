"""One train step: what it updates, and that it equals the step written the plain way."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dcgan_jax import parallel, steps, variants
from dcgan_jax.losses import non_saturating
from dcgan_jax.train_state import EmaTrainState, TrainState, init_state_on, setup_from_config
from experiments.configs import synthetic


def _tiny_setup(**train_overrides):
  config = synthetic.get_config("tiny")
  config.train.update(train_overrides)
  return config, setup_from_config(config)


def _images(config, seed=0):
  """A batch of random uint8 images, with no labels."""
  rng = np.random.default_rng(seed)
  r, b = config.data.resolution, config.train.batch_size
  return {"image": jnp.asarray(rng.integers(0, 256, (b, r, r, 3), np.uint8)),
          "label": jnp.zeros((b, 0), jnp.int8)}


def init_state(setup, seed):
  """The state as training creates it (so its compilation is shared with training's)."""
  return init_state_on(setup, seed, parallel.replicated(parallel.make_mesh()))


def _jit_step(setup):
  return jax.jit(functools.partial(steps.train_step, setup))


def _max_abs_change(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_step_updates_both_networks_and_stays_finite():
  config, setup = _tiny_setup()
  state = init_state(setup, config.seed)
  new_state, metrics = _jit_step(setup)(state, _images(config))
  assert int(new_state.step) == 1
  assert _max_abs_change(state.g_params, new_state.g_params) > 0
  assert _max_abs_change(state.d_params, new_state.d_params) > 0
  assert _max_abs_change(state.g_batch_stats, new_state.g_batch_stats) > 0
  assert _max_abs_change(state.d_batch_stats, new_state.d_batch_stats) > 0
  for leaf in jax.tree.leaves(new_state):
    assert bool(jnp.all(jnp.isfinite(leaf)))
  assert set(metrics) == {"d_loss", "g_loss", "d_real", "d_fake", "d_fake_after"}
  for value in metrics.values():
    assert np.isfinite(float(value))
  # A fresh discriminator cannot tell real from fake: D outputs sit near 1/2.
  assert abs(float(metrics["d_real"]) - 0.5) < 0.1
  assert abs(float(metrics["d_loss"]) - 2 * np.log(2)) < 0.2


def _plain_step(setup, state, images):
  """The step as one would first write it: G runs again inside the G loss."""
  real = steps.to_model_range(images["image"])
  key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 0)
  z = jax.random.normal(key, (real.shape[0], setup.variant.z_dim))
  generator, discriminator = setup.variant.generator, setup.variant.discriminator

  def apply(module, params, stats, x):
    out, upd = module.apply({"params": params, "batch_stats": stats}, x, train=True,
                            mutable=["batch_stats"])
    return out, upd["batch_stats"]

  fake, g_stats = apply(generator, state.g_params, state.g_batch_stats, z)

  def d_loss_fn(d_params):
    r, stats = apply(discriminator, d_params, state.d_batch_stats, real)
    f, stats = apply(discriminator, d_params, stats, jax.lax.stop_gradient(fake))
    return non_saturating.discriminator_bce(r, f), stats

  d_grads, d_stats = jax.grad(d_loss_fn, has_aux=True)(state.d_params)
  d_updates, _ = setup.d_optimizer.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(g_params):
    f, _ = apply(generator, g_params, state.g_batch_stats, z)
    logits, _ = apply(discriminator, d_params, d_stats, f)
    return non_saturating.generator_bce(logits)

  g_grads = jax.grad(g_loss_fn)(state.g_params)
  g_updates, _ = setup.g_optimizer.update(g_grads, state.g_opt_state, state.g_params)
  return optax.apply_updates(state.g_params, g_updates), d_params, g_stats


def test_step_equals_plain_two_pass_formulation():
  config, setup = _tiny_setup()
  state = init_state(setup, config.seed)
  images = _images(config, seed=3)
  new_state, _ = _jit_step(setup)(state, images)
  g_params, d_params, g_stats = jax.jit(functools.partial(_plain_step, setup))(state, images)
  for got, want in [(new_state.g_params, g_params), (new_state.d_params, d_params),
                    (new_state.g_batch_stats, g_stats)]:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)


@pytest.mark.slow
@pytest.mark.parametrize("d_steps", [2, 3])
def test_extra_discriminator_steps_each_update_d(d_steps):
  config, setup = _tiny_setup(d_steps=d_steps)
  state = init_state(setup, config.seed)
  new_state, _ = _jit_step(setup)(state, _images(config))
  _, one_step_setup = _tiny_setup()
  one_step_state, _ = _jit_step(one_step_setup)(state, _images(config))
  assert int(new_state.d_opt_state[0].count) == d_steps
  assert int(one_step_state.d_opt_state[0].count) == 1
  assert int(new_state.g_opt_state[0].count) == 1


def test_step_randomness_comes_from_state_key_and_step():
  config, setup = _tiny_setup()
  state = init_state(setup, config.seed)
  images = _images(config)
  step = _jit_step(setup)
  a, _ = step(state, images)
  b, _ = step(state, images)
  c, _ = step(state.replace(step=state.step + 1), images)
  jax.tree.map(np.testing.assert_array_equal, a.g_params, b.g_params)
  assert _max_abs_change(a.g_params, c.g_params) > 0


@pytest.mark.slow
def test_bfloat16_computes_in_bf16_but_keeps_float32_state():
  config, setup = _tiny_setup()
  config.model.dtype = "bfloat16"
  bf16_setup = setup_from_config(config)
  state = init_state(bf16_setup, config.seed)
  images = _images(config)
  new_state, metrics = _jit_step(bf16_setup)(state, images)
  for leaf in jax.tree.leaves((new_state.g_params, new_state.d_params, new_state.g_opt_state,
                               new_state.d_opt_state)):
    assert leaf.dtype in (jnp.float32, jnp.int32)
  assert all(v.dtype == jnp.float32 and np.isfinite(float(v)) for v in metrics.values())
  # The same step in float32 lands close by: bf16 changes rounding, not the math.
  f32_state, f32_metrics = _jit_step(setup)(init_state(setup, config.seed), images)
  np.testing.assert_allclose(float(metrics["d_loss"]), float(f32_metrics["d_loss"]), rtol=0.05)
  assert 0 < _max_abs_change(new_state.g_params, f32_state.g_params) < 1e-3


def test_labels_do_not_change_an_unconditional_step():
  config, setup = _tiny_setup()
  state = init_state(setup, config.seed)
  batch = _images(config)
  rng = np.random.default_rng(5)
  labelled = {**batch, "label": jnp.asarray(rng.choice(np.int8([-1, 1]), (16, 40)))}
  step = _jit_step(setup)
  a, metrics_a = step(state, batch)
  b, metrics_b = step(state, labelled)
  jax.tree.map(np.testing.assert_array_equal, (a, metrics_a), (b, metrics_b))


@pytest.mark.parametrize("key, value, known", [
    ("model.arch", "dcgann", "dcgan"),
    ("loss.name", "hinge_typo", "non_saturating"),
    ("model.impl", "fastest", "fast, reference"),
])
def test_unknown_variant_names_are_one_line_errors_listing_the_known(key, value, known):
  config = synthetic.get_config("tiny")
  section, name = key.split(".")
  config[section][name] = value
  with pytest.raises(ValueError) as error:
    variants.variant_from_config(config)
  message = str(error.value)
  assert "\n" not in message and key in message and repr(value) in message and known in message


def test_the_default_variant_is_the_dcgan_with_its_loss():
  variant = variants.variant_from_config(synthetic.get_config("tiny"))
  assert variant.loss is non_saturating.LOSS
  assert type(variant.generator).__name__ == "Generator" and variant.generator.resolution == 16


@pytest.mark.slow
def test_generator_ema_is_the_exponential_average_and_samples_come_from_it():
  config, setup = _tiny_setup(g_ema_decay=0.9)
  state = init_state(setup, config.seed)
  assert isinstance(state, EmaTrainState)
  step = _jit_step(setup)
  expected = jax.tree.map(np.asarray, state.g_params)
  for seed in range(3):
    state, _ = step(state, _images(config, seed=seed))
    expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * np.asarray(p), expected, state.g_params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               state.g_ema_params, expected)
  z = jnp.asarray(np.random.default_rng(0).normal(size=(4, config.model.z_dim)), jnp.float32)
  sampled = steps.generate_images(setup.variant, state, z)

  def drawn_with(params):
    return steps.from_model_range(setup.variant.generate(params, state.g_batch_stats, z, None)[0])

  np.testing.assert_array_equal(sampled, drawn_with(state.g_ema_params))
  assert not np.array_equal(sampled, drawn_with(state.g_params))


def test_without_ema_the_state_has_no_average():
  config, setup = _tiny_setup()
  state = init_state(setup, config.seed)
  assert type(state) is TrainState and not hasattr(state, "g_ema_params")
