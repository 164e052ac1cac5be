"""Every preset builds its variant and trains (its `:tiny` variant, on synthetic faces)."""

import importlib

import numpy as np
import pytest

from dcgan_jax import train, variants
from experiments.configs import celeba64, dcgan

PRESETS = ("dcgan", "dcgan_ttur", "lsgan", "wgan_gp", "sngan", "mlp_gan")


def _preset(name: str, variant: str = ""):
  return importlib.import_module(f"experiments.configs.{name}").get_config(variant)


def test_celeba64_is_the_dcgan_preset():
  assert celeba64.get_config().to_dict() == dcgan.get_config().to_dict()
  assert celeba64.get_config("tiny").to_dict() == dcgan.get_config("tiny").to_dict()


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_its_tiny_variant(name, tmp_path):
  config = _preset(name, "tiny")
  full = _preset(name)
  variants.variant_from_config(full)  # the full-size preset is a valid combination too
  # `:tiny` shrinks sizes and length only; what makes the preset itself stays.
  assert config.loss.to_dict() == full.loss.to_dict()
  assert config.model.d_norm == full.model.d_norm
  for key in ("d_steps", "g_lr", "d_lr", "g_beta1", "d_beta2"):
    assert config.train[key] == full.train[key]
  config.data.source = "synthetic"
  config.train.num_steps = config.train.checkpoint_every = config.train.sample_every = 2
  config.train.log_every = 1
  final = train.train_and_evaluate(config, tmp_path)
  assert final["step"] == 2
  assert all(np.isfinite(v) for v in final["metrics"].values())
