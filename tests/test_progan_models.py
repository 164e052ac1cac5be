"""The Progressive GAN networks: equalised layers, pixel norm, minibatch stddev and the
fade-in between stages, each against an independent numpy computation."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcgan_jax.models import progan

MAX_RES, NF, Z_DIM, BATCH = 32, 8, 8, 4


def _normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """Stride-1 SAME cross-correlation, (B,H,W,Ci) x (k,k,Ci,Co), as a sum over kernel taps."""
  k, h, w = kernel.shape[0], x.shape[1], x.shape[2]
  xp = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
  return sum(xp[:, i:i + h, j:j + w] @ kernel[i, j] for i in range(k) for j in range(k))


def _upsample(x: np.ndarray, factor: int) -> np.ndarray:
  """Nearest-neighbour upsampling by indexing: output pixel (i, j) is input (i // f, j // f)."""
  rows = np.arange(x.shape[1] * factor) // factor
  cols = np.arange(x.shape[2] * factor) // factor
  return x[:, rows][:, :, cols]


def _downsample(x: np.ndarray, factor: int) -> np.ndarray:
  """Box filter with explicit loops over output pixels."""
  b, h, w, c = x.shape
  out = np.zeros((b, h // factor, w // factor, c), np.float64)
  for i in range(h // factor):
    for j in range(w // factor):
      window = x[:, i * factor:(i + 1) * factor, j * factor:(j + 1) * factor]
      out[:, i, j] = window.mean(axis=(1, 2))
  return out


def _randomised(params: dict, name: str, seed: int) -> dict:
  """A copy of `params` with the layer `name`'s kernel and bias replaced by random values."""
  layer = {k: jnp.asarray(_normal(seed + i, v.shape))
           for i, (k, v) in enumerate(params[name].items())}
  return {**params, name: layer}


@functools.lru_cache(maxsize=None)
def _z() -> jax.Array:
  return jnp.asarray(_normal(0, (BATCH, Z_DIM)))


@functools.lru_cache(maxsize=None)
def _g_params() -> dict:
  """The generator's full tree, initialised at stage 0; cached, so never modify it."""
  g = progan.Generator(MAX_RES, NF, stage=0)
  return g.init(jax.random.PRNGKey(1), _z(), train=False)["params"]


@functools.lru_cache(maxsize=None)
def _d_params() -> dict:
  """The discriminator's full tree, initialised at stage 0; cached, so never modify it."""
  x = jnp.zeros((BATCH, 4, 4, 3))
  d = progan.Discriminator(MAX_RES, NF, stage=0)
  return d.init(jax.random.PRNGKey(2), x, train=False)["params"]


def _g(stage: int, alpha, params: dict | None = None) -> np.ndarray:
  g = progan.Generator(MAX_RES, NF, stage, alpha)
  return np.asarray(g.apply({"params": params or _g_params()}, _z(), train=False))


def _d(stage: int, alpha, x: np.ndarray, params: dict | None = None) -> np.ndarray:
  d = progan.Discriminator(MAX_RES, NF, stage, alpha)
  return np.asarray(d.apply({"params": params or _d_params()}, jnp.asarray(x, jnp.float32),
                            train=False))


def test_equalized_dense_initialisation_and_runtime_scale():
  layer = progan.EqualizedDense(128, gain=0.7)
  x = _normal(3, (5, 160))
  params = layer.init(jax.random.PRNGKey(0), x)["params"]
  kernel = np.asarray(params["kernel"])
  assert kernel.shape == (160, 128)  # 20k weights: the tolerances below are ~6 sigma
  assert abs(kernel.mean()) < 0.05 and abs(kernel.std() - 1) < 0.05
  assert np.all(np.asarray(params["bias"]) == 0)
  # A non-zero bias, so adding it is checked too.
  params = {**params, "bias": jnp.asarray(_normal(4, (128,)))}
  expected = x.astype(np.float64) @ (kernel * 0.7 / math.sqrt(160)) + np.asarray(params["bias"])
  np.testing.assert_allclose(layer.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-5)
  no_bias = progan.EqualizedDense(4, use_bias=False).init(jax.random.PRNGKey(0), x)["params"]
  assert set(no_bias) == {"kernel"}


@pytest.mark.parametrize("kernel_size, gain", [(3, math.sqrt(2)), (1, 1.0)])
def test_equalized_conv_initialisation_and_runtime_scale(kernel_size, gain):
  layer = progan.EqualizedConv(40, kernel_size, gain=gain)
  x = _normal(5, (2, 6, 6, 48 if kernel_size == 3 else 300))
  params = layer.init(jax.random.PRNGKey(0), x)["params"]
  kernel = np.asarray(params["kernel"])
  fan_in = kernel_size * kernel_size * x.shape[-1]
  assert kernel.shape == (kernel_size, kernel_size, x.shape[-1], 40) and kernel.size > 10_000
  assert abs(kernel.mean()) < 0.05 and abs(kernel.std() - 1) < 0.05
  assert np.all(np.asarray(params["bias"]) == 0)
  params = {**params, "bias": jnp.asarray(_normal(6, (40,)))}
  expected = _conv_same(x.astype(np.float64), kernel * gain / math.sqrt(fan_in))
  expected = expected + np.asarray(params["bias"])
  np.testing.assert_allclose(layer.apply({"params": params}, x), expected, rtol=1e-4, atol=1e-4)


def test_pixel_norm_matches_numpy():
  x = 3 * _normal(7, (2, 3, 3, 10))
  expected = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + 1e-8)
  np.testing.assert_allclose(progan.pixel_norm(jnp.asarray(x)), expected, rtol=1e-5)


def _minibatch_stddev(x: np.ndarray, group_size: int) -> np.ndarray:
  """The paper's statistic with explicit loops: group m holds samples i with i % M == m."""
  b = x.shape[0]
  g = min(group_size, b)
  m_groups = b // g
  stat = np.zeros(b)
  for m in range(m_groups):
    members = [i for i in range(b) if i % m_groups == m]
    group = x[members].astype(np.float64)
    std = np.sqrt(((group - group.mean(axis=0)) ** 2).mean(axis=0) + 1e-8)
    stat[members] = std.mean()
  extra = np.broadcast_to(stat[:, None, None, None], (*x.shape[:3], 1))
  return np.concatenate([x, extra], axis=-1)


@pytest.mark.parametrize("batch, group_size", [(8, 4), (2, 4), (6, 2), (4, 4)])
def test_minibatch_stddev_matches_grouped_loops(batch, group_size):
  # A per-sample scale, so every group's statistic differs.
  x = _normal(8, (batch, 3, 5, 6)) * np.arange(1, batch + 1)[:, None, None, None]
  y = np.asarray(progan.minibatch_stddev(jnp.asarray(x, jnp.float32), group_size))
  assert y.shape == (batch, 3, 5, 7) and y.dtype == np.float32
  np.testing.assert_allclose(y, _minibatch_stddev(x, group_size), rtol=1e-5)


def test_minibatch_stddev_of_identical_samples_is_the_epsilons_root():
  x = jnp.broadcast_to(jnp.asarray(_normal(15, (1, 2, 2, 3))), (4, 2, 2, 3))
  np.testing.assert_allclose(progan.minibatch_stddev(x)[..., -1], math.sqrt(1e-8), rtol=1e-5)


def test_minibatch_stddev_refuses_a_batch_not_divisible_by_the_group():
  with pytest.raises(ValueError, match="divisible"):
    progan.minibatch_stddev(jnp.zeros((6, 4, 4, 2)), 4)


@pytest.mark.parametrize("factor", [2, 4])
def test_box_downsample_and_upsample_nearest_match_numpy(factor):
  x = _normal(9, (2, 8, 8, 3))
  np.testing.assert_allclose(progan.box_downsample(jnp.asarray(x), factor),
                             _downsample(x, factor), rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(progan.upsample_nearest(jnp.asarray(x), factor),
                                _upsample(x, factor))


def test_channels_follow_the_papers_table_and_bad_resolutions_are_refused():
  assert [progan.channels(4 * 2**s, 512) for s in range(6)] == [512, 512, 512, 512, 256, 128]
  assert progan.channels(1024, 16) == 1
  assert [progan.num_stages(r) for r in (8, 32, 128)] == [2, 4, 6]
  for bad in (4, 48, 0):
    with pytest.raises(ValueError, match="data.resolution must be a power of two >= 8"):
      progan.num_stages(bad)
  with pytest.raises(ValueError, match="stage"):
    progan.Generator(MAX_RES, NF, stage=4).init(jax.random.PRNGKey(0), _z(), train=False)


def test_output_and_parameter_shapes_at_every_stage():
  # Traced, not computed; 64x64 at nf=16, so the channels halve above 32x32.
  z = jax.ShapeDtypeStruct((BATCH, Z_DIM), jnp.float32)
  for stage in range(progan.num_stages(64)):
    r = 4 * 2**stage
    g = progan.Generator(64, 16, stage, 0.5)
    d = progan.Discriminator(64, 16, stage, 0.5)
    g_vars = jax.eval_shape(functools.partial(g.init, train=False), jax.random.PRNGKey(0), z)
    x = jax.eval_shape(functools.partial(g.apply, train=False), g_vars, z)
    assert x.shape == (BATCH, r, r, 3) and x.dtype == jnp.float32
    d_vars = jax.eval_shape(functools.partial(d.init, train=False), jax.random.PRNGKey(0), x)
    logits = jax.eval_shape(functools.partial(d.apply, train=False), d_vars, x)
    assert logits.shape == (BATCH,) and logits.dtype == jnp.float32
  g_params, d_params = g_vars["params"], d_vars["params"]
  assert g_params["dense_4"]["kernel"].shape == (Z_DIM, 4 * 4 * 16)
  assert g_params["block_64"]["conv_a"]["kernel"].shape == (3, 3, 16, 8)
  assert g_params["to_rgb_64"]["kernel"].shape == (1, 1, 8, 3)
  assert d_params["from_rgb_64"]["kernel"].shape == (1, 1, 3, 8)
  assert d_params["block_64"]["conv_b"]["kernel"].shape == (3, 3, 8, 16)
  # The minibatch stddev channel enters the final convolution.
  assert d_params["final_conv"]["kernel"].shape == (3, 3, 17, 16)
  assert d_params["final_dense"]["kernel"].shape == (4 * 4 * 16, 16)
  assert d_params["final_logit"]["kernel"].shape == (16, 1)


@pytest.mark.slow
def test_parameter_tree_is_the_same_at_every_stage():
  trees = []
  for stage in range(progan.num_stages(MAX_RES)):
    r = 4 * 2**stage
    g = progan.Generator(MAX_RES, NF, stage, 0.5)
    d = progan.Discriminator(MAX_RES, NF, stage, 0.5)
    trees.append((g.init(jax.random.PRNGKey(1), _z(), train=False),
                  d.init(jax.random.PRNGKey(2), jnp.zeros((BATCH, r, r, 3)), train=False)))
  g_tree, d_tree = trees[0]
  assert set(g_tree["params"]) == {"dense_4", "conv_4", "block_8", "block_16", "block_32",
                                   "to_rgb_4", "to_rgb_8", "to_rgb_16", "to_rgb_32"}
  assert set(d_tree["params"]) == {"from_rgb_4", "from_rgb_8", "from_rgb_16", "from_rgb_32",
                                   "block_8", "block_16", "block_32", "final_conv",
                                   "final_dense", "final_logit"}
  for tree in trees[1:]:
    assert jax.tree.structure(tree) == jax.tree.structure(trees[0])
    jax.tree.map(np.testing.assert_array_equal, tree, trees[0])
  # The cached stage-0 trees the other tests apply at every stage are these trees.
  jax.tree.map(np.testing.assert_array_equal, g_tree["params"], _g_params())


@pytest.mark.parametrize("stage", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_generator_fades_the_new_resolution_in(stage):
  r = 4 * 2**stage
  new = _g(stage, 1.0)
  assert new.shape == (BATCH, r, r, 3)
  # alpha = 1: only the new to_rgb path counts, bit-exactly...
  np.testing.assert_array_equal(
      _g(stage, 1.0, _randomised(_g_params(), f"to_rgb_{r // 2}", 10)), new)
  # ...and it does count.
  assert not np.allclose(_g(stage, 1.0, _randomised(_g_params(), f"to_rgb_{r}", 10)), new)
  # alpha = 0: the previous stage's images, upsampled.
  old = _upsample(_g(stage - 1, 1.0), 2)
  np.testing.assert_allclose(_g(stage, 0.0), old, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(_g(stage, 0.3), 0.7 * old + 0.3 * new, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 3])
def test_discriminator_fades_the_new_resolution_in(stage):
  r = 4 * 2**stage
  x = _normal(11, (BATCH, r, r, 3))
  # alpha = 0: the previous stage's discriminator on the box-filtered images.
  np.testing.assert_allclose(_d(stage, 0.0, x), _d(stage - 1, 1.0, _downsample(x, 2)),
                             rtol=1e-5, atol=1e-6)
  # alpha = 1: from_rgb at the previous resolution does not count, but the new one does.
  logits = _d(stage, 1.0, x)
  assert logits.shape == (BATCH,)
  np.testing.assert_array_equal(
      _d(stage, 1.0, x, _randomised(_d_params(), f"from_rgb_{r // 2}", 12)), logits)
  assert not np.allclose(_d(stage, 1.0, x, _randomised(_d_params(), f"from_rgb_{r}", 12)), logits)


def test_alpha_traced_under_jit_equals_the_eager_float():
  stage, x = 2, _normal(13, (BATCH, 16, 16, 3))

  @jax.jit
  def both(g_params, d_params, z, x, alpha):
    images = progan.Generator(MAX_RES, NF, stage, alpha).apply({"params": g_params}, z, train=True)
    logits = progan.Discriminator(MAX_RES, NF, stage, alpha).apply({"params": d_params}, x,
                                                                    train=True)
    return images, logits

  for alpha in (0.3, 1.0):
    images, logits = both(_g_params(), _d_params(), _z(), x, jnp.float32(alpha))
    np.testing.assert_allclose(images, _g(stage, alpha), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, _d(stage, alpha, x), rtol=1e-5, atol=1e-5)
  # Traced alpha = 1 still ignores the old path bit-exactly.
  changed = _randomised(_g_params(), "to_rgb_8", 14)
  np.testing.assert_array_equal(both(changed, _d_params(), _z(), x, jnp.float32(1.0))[0], images)


def test_generator_features_are_pixel_normalised():
  g = progan.Generator(MAX_RES, NF, stage=3)
  _, state = g.apply({"params": _g_params()}, _z(), train=False, capture_intermediates=True)
  for name in ("block_8", "block_16", "block_32"):
    (h,) = state["intermediates"][name]["__call__"]
    np.testing.assert_allclose(np.mean(np.square(np.asarray(h, np.float64)), axis=-1), 1.0,
                               rtol=1e-4)
