"""The DCGAN networks: shapes, the paper's initialisation, and PyTorch with copied weights."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcgan_jax import variants
from dcgan_jax.models import dcgan, mlp, resnet
from tests.runs import tiny_config


def _build(g, d, z):
  """G's variables and a train-mode batch from z, then D's variables and logits on it."""
  g_vars = g.init(jax.random.PRNGKey(1), z, train=False)
  x, _ = g.apply(g_vars, z, train=True, mutable=["batch_stats"])
  d_vars = d.init(jax.random.PRNGKey(2), x, train=False)
  logits, _ = d.apply(d_vars, x, train=True, mutable=["batch_stats"])
  return g_vars, d_vars, x, logits


@functools.lru_cache(maxsize=None)
def _init(resolution, nf=8, batch=6, z_dim=20):
  """Networks, latents and `_build`'s results, compiled once per size; cached, so never
  modify them."""
  g, d = dcgan.Generator(resolution, nf), dcgan.Discriminator(nf)
  z = jnp.asarray(np.random.default_rng(0).normal(size=(batch, z_dim)), jnp.float32)
  return (g, d, z, *jax.jit(functools.partial(_build, g, d))(z))


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_shapes_and_dtypes(resolution):
  # Traced, not compiled: shapes need no values.
  g, d = dcgan.Generator(resolution, 8), dcgan.Discriminator(8)
  g_vars, d_vars, x, logits = jax.eval_shape(functools.partial(_build, g, d),
                                             jax.ShapeDtypeStruct((6, 20), jnp.float32))
  assert x.shape == (6, resolution, resolution, 3) and x.dtype == jnp.float32
  assert logits.shape == (6,) and logits.dtype == jnp.float32
  # One 4x4 (transposed) convolution per resolution step, and one more at each end.
  assert len(g_vars["params"]) - len(g_vars["batch_stats"]) == dcgan.num_blocks(resolution) + 1
  assert len([k for k in d_vars["params"] if k.startswith("Conv")]) == \
      dcgan.num_blocks(resolution) + 1


@pytest.mark.slow
@pytest.mark.parametrize("resolution", [16, 32])
def test_outputs_are_images_in_range_and_finite_logits(resolution):
  _, _, _, _, _, x, logits = _init(resolution)
  assert float(jnp.max(jnp.abs(x))) <= 1.0 and float(jnp.std(x)) > 0
  assert bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.slow
def test_initialisation_follows_the_paper():
  # The 32x32 networks at nf=8: ~22k conv weights and ~100 BatchNorm scales, enough to
  # pin the mean and spread inside the tolerances.
  _, _, _, g_vars, d_vars, _, _ = _init(32)
  params = {**{f"g/{k}": v for k, v in g_vars["params"].items()},
            **{f"d/{k}": v for k, v in d_vars["params"].items()}}
  kernels = np.concatenate([np.ravel(v["kernel"]) for k, v in params.items() if "Conv" in k])
  scales = np.concatenate([np.ravel(v["scale"]) for k, v in params.items() if "BatchNorm" in k])
  biases = np.concatenate([np.ravel(v["bias"]) for k, v in params.items() if "BatchNorm" in k])
  assert kernels.size > 20_000 and scales.size > 100
  assert abs(kernels.mean()) < 1e-3 and abs(kernels.std() - 0.02) < 1e-3
  assert abs(scales.mean() - 1) < 5e-3 and abs(scales.std() - 0.02) < 5e-3
  assert np.all(biases == 0)


def test_bad_resolution_is_refused():
  with pytest.raises(ValueError, match="power of two"):
    dcgan.num_blocks(48)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("resolution", [16, pytest.param(32, marks=pytest.mark.slow)])
def test_matches_pytorch_with_copied_weights(resolution, train):
  torch = pytest.importorskip("torch")
  from tests import torch_reference

  g, d, z, g_vars, d_vars, _, _ = _init(resolution)
  # Non-trivial running statistics, so eval mode is tested for real.
  g_vars = {**g_vars, "batch_stats": jax.tree.map(
      lambda a: a + 0.3 * jax.random.uniform(jax.random.PRNGKey(3), a.shape), g_vars["batch_stats"])}
  torch_g = torch_reference.generator(resolution, 8, 20)
  torch_d = torch_reference.discriminator(resolution, 8)
  torch_reference.load_flax_params(torch_g, g_vars["params"], g_vars["batch_stats"])
  torch_reference.load_flax_params(torch_d, d_vars["params"], d_vars["batch_stats"])
  torch_g.train(train)
  torch_d.train(train)

  x, _ = jax.jit(functools.partial(g.apply, train=train, mutable=["batch_stats"]))(g_vars, z)
  with torch.no_grad():
    x_torch = torch_g(torch.tensor(np.asarray(z))[:, :, None, None]).permute(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(x), x_torch.numpy(), rtol=1e-4, atol=1e-5)

  logits, _ = jax.jit(functools.partial(d.apply, train=train, mutable=["batch_stats"]))(d_vars, x)
  with torch.no_grad():
    logits_torch = torch_d(torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)).reshape(-1)
  np.testing.assert_allclose(np.asarray(logits), logits_torch.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_fully_connected_networks_shapes_and_independent_samples():
  g, d = mlp.Generator(resolution=16, hidden=8), mlp.Discriminator(hidden=8)
  z = jnp.asarray(np.random.default_rng(0).normal(size=(3, 20)), jnp.float32)
  g_vars, d_vars, x, logits = jax.jit(functools.partial(_build, g, d))(z)
  assert x.shape == (3, 16, 16, 3) and float(jnp.max(jnp.abs(x))) <= 1.0
  assert logits.shape == (3,)
  assert [v["kernel"].shape[1] for v in g_vars["params"].values()] == [8, 16, 32, 16 * 16 * 3]
  # No batch statistics: one sample's output does not depend on the others.
  alone = d.apply(d_vars, x[:1], train=True)
  np.testing.assert_allclose(alone, logits[:1], rtol=1e-5)


@pytest.mark.parametrize("resolution", [32, 64])
def test_resnet_shapes_follow_mimicrys_sngan(resolution):
  g, d = resnet.Generator(resolution, nf=64), resnet.Discriminator(nf=64)
  g_vars, d_vars, x, logits = jax.eval_shape(functools.partial(_build, g, d),
                                             jax.ShapeDtypeStruct((2, 128), jnp.float32))
  n = resnet.num_blocks(resolution)
  assert x.shape == (2, resolution, resolution, 3) and logits.shape == (2,)
  # 1024 channels at the narrow end at 64x64, as Mimicry's SNGAN 64.
  assert g_vars["params"]["Dense_0"]["kernel"].shape == (128, 4 * 4 * 64 * 2**n)
  assert d_vars["params"]["Dense_0"]["kernel"].shape == (64 * 2**n, 1)
  assert len([k for k in d_vars["params"] if k.startswith("DiscriminatorBlock")]) == n + 1
  # Every discriminator weight is spectrally normalised: one power-iteration vector each.
  paths = {name: [jax.tree_util.keystr(path)
                  for path, _ in jax.tree_util.tree_leaves_with_path(d_vars[name])]
           for name in ("params", "batch_stats")}
  num_kernels = len([p for p in paths["params"] if p.endswith("['kernel']")])
  num_vectors = len([p for p in paths["batch_stats"] if p.endswith("/kernel/u']")])
  assert num_vectors == num_kernels == 3 * (n + 1) + 1


def test_resnet_is_refused_below_32_pixels():
  with pytest.raises(ValueError, match="model.arch=resnet needs data.resolution"):
    variants.variant_from_config(tiny_config({"model.arch": "resnet", "model.d_norm": "none"}))
