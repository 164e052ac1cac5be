"""Gradient penalties against closed-form gradients, spectral normalisation against a
numpy SVD, and the discriminator normalisations in the train step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcgan_jax import parallel, steps, variants
from dcgan_jax.losses import penalties
from dcgan_jax.models import dcgan
from dcgan_jax.train_state import init_state_on, setup_from_config
from tests.runs import tiny_config

NUM_SAMPLES, DIM, HIDDEN = 6, 5, 7


def _tanh_critic():
  """D(x) = v . tanh(W x): its input gradient is W^T (v * (1 - tanh(W x)^2)), in closed form."""
  rng = np.random.default_rng(0)
  w, v = rng.normal(size=(HIDDEN, DIM)), rng.normal(size=HIDDEN)

  def critic(params, state, batch):
    return jnp.tanh(batch["image"] @ params["w"].T) @ params["v"], state

  def input_gradients(x):
    return (v * (1 - np.tanh(x @ w.T) ** 2)) @ w

  return critic, {"w": jnp.asarray(w), "v": jnp.asarray(v)}, input_gradients


def _batches(seed):
  rng = np.random.default_rng(seed)
  labels = np.zeros((NUM_SAMPLES, 0), np.int8)
  return ({"image": jnp.asarray(rng.normal(size=(NUM_SAMPLES, DIM))), "label": labels},
          {"image": jnp.asarray(rng.normal(size=(NUM_SAMPLES, DIM))), "label": labels})


def test_gradient_penalty_is_two_sided_at_per_sample_interpolates():
  critic, params, input_gradients = _tanh_critic()
  real, fake = _batches(1)
  key = jax.random.PRNGKey(4)
  e = np.asarray(jax.random.uniform(key, (NUM_SAMPLES, 1)))  # one mixing weight per sample
  assert len(np.unique(e)) == NUM_SAMPLES
  x_hat = e * np.asarray(real["image"]) + (1 - e) * np.asarray(fake["image"])
  norms = np.linalg.norm(input_gradients(x_hat), axis=1)
  got = penalties.gradient_penalty(critic, params, (), real, fake, key)
  np.testing.assert_allclose(float(got), np.mean((norms - 1) ** 2), rtol=1e-5)


def test_r1_penalty_is_half_the_squared_gradient_norm_on_real_samples():
  critic, params, input_gradients = _tanh_critic()
  real, fake = _batches(2)
  got = penalties.r1_penalty(critic, params, (), real, fake, jax.random.PRNGKey(0))
  want = 0.5 * np.mean(np.sum(input_gradients(np.asarray(real["image"])) ** 2, axis=1))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_penalty_is_added_to_the_loss_with_its_weight_and_logged():
  critic, params, _ = _tanh_critic()
  real, fake = _batches(3)
  base = variants.LOSSES["wasserstein"]
  penalised = penalties.with_penalty(base, penalties.gradient_penalty, 10.0)
  key = jax.random.PRNGKey(5)
  total, (_, metrics) = penalised.discriminator(critic, params, (), real, fake, key)
  unpenalised, _ = base.discriminator(critic, params, (), real, fake, key)
  penalty = penalties.gradient_penalty(critic, params, (), real, fake, jax.random.split(key)[1])
  np.testing.assert_allclose(float(total), float(unpenalised) + 10 * float(penalty), rtol=1e-6)
  np.testing.assert_allclose(float(metrics["d_penalty"]), float(penalty), rtol=1e-6)


@pytest.mark.slow
def test_spectral_norm_sigma_converges_to_the_largest_singular_value():
  d = dcgan.Discriminator(nf=8, norm="spectral")
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
  variables = d.init(jax.random.PRNGKey(1), x, train=False)

  @jax.jit
  def power_iterations(stats):
    def one(stats, _):
      _, updates = d.apply({**variables, "batch_stats": stats}, x, train=True,
                           mutable=["batch_stats"])
      return updates["batch_stats"], None
    return jax.lax.scan(one, stats, None, length=100)[0]

  stats = power_iterations(variables["batch_stats"])
  sigmas = {path: value for path, value in jax.tree_util.tree_leaves_with_path(stats)
            if "sigma" in jax.tree_util.keystr(path)}
  convs = sorted(variables["params"])
  assert len(sigmas) == len(convs) == 3  # every convolution, the first and the last included
  for i in range(len(convs)):
    kernel = np.asarray(variables["params"][f"Conv_{i}"]["kernel"])
    largest = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    (sigma,) = [float(v) for p, v in sigmas.items() if f"Conv_{i}/kernel" in jax.tree_util.keystr(p)]
    np.testing.assert_allclose(sigma, largest, rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("d_norm", ["layer", "none"])
def test_discriminators_without_batch_norm_treat_samples_independently(d_norm):
  d = dcgan.Discriminator(nf=8, norm=d_norm)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16, 16, 3)), jnp.float32)
  variables = d.init(jax.random.PRNGKey(1), x, train=False)
  assert "batch_stats" not in variables or not jax.tree.leaves(variables["batch_stats"])
  whole, _ = d.apply(variables, x, train=True, mutable=["batch_stats"])
  first, _ = d.apply(variables, x[:1], train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(whole[:1], first, rtol=1e-5, atol=1e-6)


def test_a_penalty_with_batch_norm_is_refused_naming_both_keys():
  with pytest.raises(ValueError) as error:
    variants.variant_from_config(tiny_config({"loss.penalty": "gp"}))
  assert "loss.penalty" in str(error.value) and "model.d_norm" in str(error.value)
  with pytest.raises(ValueError, match="model.d_norm 'group' is unknown"):
    variants.variant_from_config(tiny_config({"model.d_norm": "group"}))
  for arch, norm in (("mlp", "batch"), ("mlp", "group"), ("resnet", "layer")):
    with pytest.raises(ValueError, match="model.d_norm") as error:
      variants.variant_from_config(tiny_config({"model.arch": arch, "model.d_norm": norm,
                                                "data.resolution": 32}))
    assert norm in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("overrides, d_keys", [
    ({"loss.name": "wasserstein", "loss.penalty": "gp", "model.d_norm": "layer"},
     {"d_loss", "d_real", "d_fake", "d_penalty"}),
    ({"loss.name": "hinge", "model.d_norm": "spectral"}, {"d_loss", "d_real", "d_fake"}),
])
@pytest.mark.slow
def test_step_trains_each_family_member(overrides, d_keys):
  config = tiny_config(overrides)
  setup = setup_from_config(config)
  state = init_state_on(setup, config.seed, parallel.replicated(parallel.make_mesh()))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (16, 16, 16, 3), np.uint8)),
           "label": jnp.zeros((16, 0), jnp.int8)}
  new_state, metrics = jax.jit(functools.partial(steps.train_step, setup))(state, batch)
  assert set(metrics) == d_keys | {"g_loss", "d_fake_after"}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.d_params, new_state.d_params)
  assert all(jax.tree.leaves(changed))
  if overrides.get("model.d_norm") == "spectral":  # the power iteration moved its vectors
    assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                                            state.d_batch_stats, new_state.d_batch_stats)))
