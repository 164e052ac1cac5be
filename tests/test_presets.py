"""Every preset builds its variant and trains (its `:tiny` variant, on synthetic faces)."""

import importlib

import numpy as np
import pytest

from dcgan_jax import variants
from dcgan_jax.data import synthetic_faces
from experiments.configs import celeba64, dcgan
from tests.preset_runs import NUM_STEPS, PRESETS

# Trains whole runs (several, or in other processes): left out of the quick check.
pytestmark = pytest.mark.slow


def _preset(name: str, variant: str = ""):
  return importlib.import_module(f"experiments.configs.{name}").get_config(variant)


def test_celeba64_is_the_dcgan_preset():
  assert celeba64.get_config().to_dict() == dcgan.get_config().to_dict()
  assert celeba64.get_config("tiny").to_dict() == dcgan.get_config("tiny").to_dict()


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_its_tiny_variant(name, preset_runs):
  config, full = _preset(name, "tiny"), _preset(name)
  # The full-size preset is a valid combination too (a conditional one, on labelled faces).
  variants.variant_from_config(full, synthetic_faces.ATTRIBUTE_NAMES)
  # `:tiny` shrinks sizes and length only; what makes the preset itself stays.
  assert config.loss.to_dict() == full.loss.to_dict()
  assert config.model.d_norm == full.model.d_norm
  assert config.model.condition == full.model.condition
  for key in ("d_steps", "g_lr", "d_lr", "g_beta1", "d_beta2"):
    assert config.train[key] == full.train[key]
  final = preset_runs[1][name]  # the tiny variant with one D update per step
  assert final["step"] == NUM_STEPS
  assert final["metrics"].keys() >= {"d_loss", "g_loss"}
  assert all(np.isfinite(v) for v in final["metrics"].values())
