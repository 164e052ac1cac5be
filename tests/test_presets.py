"""Every preset builds its variant and trains (its `:tiny` variant, on synthetic faces)."""

import importlib
import json

import jax
import numpy as np
import pytest

from dcgan_jax import checkpointing, variants
from dcgan_jax.data import celeba_prepare, sources
from dcgan_jax.train_state import abstract_state, setup_from_config
from experiments.configs import celeba64, dcgan
from tests.cli import run_module, with_xla_flags
from tests.preset_runs import NUM_STEPS, PRESETS, tiny_preset, train_presets
from tests.runs import assert_trained_alike

# Trains whole runs (several, or in other processes): left out of the quick check.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def preset_runs(tmp_path_factory):
  """Every preset's `:tiny` run on one device, trained once: (directory, final.json of
  each preset by name). Read them, never write into them."""
  workdir = tmp_path_factory.mktemp("presets")
  return workdir, train_presets(workdir)


def _preset(name: str, variant: str = ""):
  return importlib.import_module(f"experiments.configs.{name}").get_config(variant)


def test_celeba64_is_the_dcgan_preset():
  assert celeba64.get_config().to_dict() == dcgan.get_config().to_dict()
  assert celeba64.get_config("tiny").to_dict() == dcgan.get_config("tiny").to_dict()


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_its_tiny_variant(name, preset_runs):
  config, full = _preset(name, "tiny"), _preset(name)
  # The full-size preset is a valid combination too (a conditional one, on CelebA's faces).
  variants.variant_from_config(full, celeba_prepare.CELEBA_ATTRIBUTE_NAMES)
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


# dcgan_ttur is dcgan's networks, loss and normalisation at other learning rates: on four
# devices it takes no path that dcgan does not.
DISTINCT_PRESETS = tuple(name for name in PRESETS if name != "dcgan_ttur")


def test_every_preset_trains_the_same_model_on_four_devices(preset_runs, tmp_path):
  """Each preset's networks, loss, penalty and normalisation."""
  one = preset_runs[0]
  run_module("tests.preset_runs", tmp_path, *DISTINCT_PRESETS,
             env=with_xla_flags("--xla_force_host_platform_device_count=4"))
  for name in DISTINCT_PRESETS:
    assert json.loads((tmp_path / name / "final.json").read_text())["num_devices"] == 4
    config = tiny_preset(name)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    setup = setup_from_config(config,
                              sources.create_source(config.data, config.seed).attribute_names)
    a, b = (checkpointing.restore_state(run / name / "checkpoints",
                                        abstract_state(setup, sharding))
            for run in (one, tmp_path))
    assert int(a.step) == int(b.step) == NUM_STEPS
    first = [json.loads((run / name / "metrics.jsonl").read_text().splitlines()[0])
             for run in (one, tmp_path)]
    for key in ("d_loss", "d_real", "d_fake"):  # D's first pass, before any update
      np.testing.assert_allclose(first[1][key], first[0][key], rtol=1e-4, atol=1e-6,
                                 err_msg=f"{name} {key}")
    # G's loss comes after one D update, which Adam's amplified rounding moves a little.
    np.testing.assert_allclose(first[1]["g_loss"], first[0]["g_loss"], rtol=1e-3, atol=1e-3,
                               err_msg=f"{name} g_loss")
    assert_trained_alike(a, b, max(config.train.g_lr, config.train.d_lr), NUM_STEPS, name)
