"""Every fast layer equals the plain Flax layer with the same kernel: outputs and gradients."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcgan_jax.models import dcgan, layers

CASES = [
    # (fast op, plain Flax layer with the same kernel, input shape)
    (layers.upsample_2x,
     lambda co: nn.ConvTranspose(co, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=False),
     (3, 5, 6, 4)),
    (layers.upsample_2x,
     lambda co: nn.ConvTranspose(co, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=False),
     (2, 4, 4, 8)),
    (layers.downsample_2x,
     lambda co: nn.Conv(co, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False),
     (3, 8, 6, 4)),
    (layers.downsample_2x,
     lambda co: nn.Conv(co, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False),
     (2, 16, 16, 3)),
    (layers.project_1x1_to_4x4,
     lambda co: nn.ConvTranspose(co, (4, 4), padding="VALID", use_bias=False), (3, 1, 1, 10)),
    (layers.reduce_4x4_to_1x1,
     lambda co: nn.Conv(co, (4, 4), padding="VALID", use_bias=False), (3, 4, 4, 8)),
]


@pytest.mark.parametrize("op, flax_layer, shape", CASES)
@pytest.mark.parametrize("impl", layers.IMPLS)
def test_layer_matches_flax_forward_and_gradients(op, flax_layer, shape, impl):
  # numpy draws: an eager jax.random call would compile a sampler per shape.
  rng = np.random.default_rng(sum(shape))
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(4, 4, shape[-1], 5)), jnp.float32)
  plain = flax_layer(5)
  y_ref = plain.apply({"params": {"kernel": kernel}}, x)
  # A random linear read-out makes every output element matter to the gradient.
  weights = jnp.asarray(rng.normal(size=y_ref.shape), jnp.float32)

  def loss_ref(x, kernel):
    return jnp.sum(plain.apply({"params": {"kernel": kernel}}, x) * weights)

  def loss_ours(x, kernel):
    return jnp.sum(op(x, kernel, impl) * weights)

  np.testing.assert_allclose(jax.jit(op, static_argnums=2)(x, kernel, impl), y_ref,
                             rtol=1e-5, atol=1e-5)
  grads = [jax.jit(jax.grad(loss, (0, 1)))(x, kernel) for loss in (loss_ours, loss_ref)]
  for got, want in zip(*grads):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def _init(module, x):
  return jax.jit(functools.partial(module.init, train=False))(jax.random.PRNGKey(1), x)


def _shapes(module, x):
  return jax.eval_shape(functools.partial(module.init, train=False), jax.random.PRNGKey(1), x)


# 16x16 networks hold every layer kind of the larger ones.
@pytest.mark.slow
@pytest.mark.parametrize("resolution", [16])
def test_whole_networks_agree_across_impls(resolution):
  z = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16)), jnp.float32)
  fast_g, ref_g = (dcgan.Generator(resolution, 8, impl=i) for i in layers.IMPLS)
  g_vars = _init(fast_g, z)
  # The same parameter tree either way, so checkpoints do not depend on `impl`.
  assert jax.tree.structure(g_vars) == jax.tree.structure(_shapes(ref_g, z))

  def g_loss(params, model):
    x, _ = model.apply({**g_vars, "params": params}, z, train=True, mutable=["batch_stats"])
    return jnp.sum(x ** 2), x

  g_grad = jax.jit(jax.value_and_grad(g_loss, has_aux=True), static_argnums=1)
  (_, x_fast), grads_fast = g_grad(g_vars["params"], fast_g)
  (_, x_ref), grads_ref = g_grad(g_vars["params"], ref_g)
  np.testing.assert_allclose(x_fast, x_ref, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), grads_fast, grads_ref)

  fast_d, ref_d = (dcgan.Discriminator(8, impl=i) for i in layers.IMPLS)
  d_vars = _init(fast_d, x_ref)
  assert jax.tree.structure(d_vars) == jax.tree.structure(_shapes(ref_d, x_ref))

  def d_out(params, model):
    logits, _ = model.apply({**d_vars, "params": params}, x_ref, train=True, mutable=["batch_stats"])
    return jnp.sum(logits), logits

  d_grad = jax.jit(jax.value_and_grad(d_out, has_aux=True), static_argnums=1)
  (_, l_fast), grads_fast = d_grad(d_vars["params"], fast_d)
  (_, l_ref), grads_ref = d_grad(d_vars["params"], ref_d)
  np.testing.assert_allclose(l_fast, l_ref, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), grads_fast, grads_ref)
