"""Data parallelism: 1 device, 4 devices and 2 processes x 2 devices train the same model."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from dcgan_jax import checkpointing
from dcgan_jax.data import sources
from dcgan_jax.train_state import abstract_state, setup_from_config
from experiments.configs import synthetic
from tests.cli import REPO, SYNTHETIC_TINY, run_module, train
from tests.preset_runs import NUM_STEPS as PRESET_STEPS, PRESETS, tiny_preset
from tests.runs import train_tiny

# Trains whole runs (several, or in other processes): left out of the quick check.
pytestmark = pytest.mark.slow

NUM_STEPS = 6


def _devices_env(count: int) -> dict[str, str]:
  return {"XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"}


def _restore(workdir):
  setup = setup_from_config(synthetic.get_config("tiny"))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return checkpointing.restore_state(workdir / "checkpoints", abstract_state(setup, sharding))


def _assert_same_model(workdir_a, workdir_b):
  a, b = _restore(workdir_a), _restore(workdir_b)
  assert int(a.step) == int(b.step) == NUM_STEPS
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("one_device")
  train_tiny(workdir, {"train.num_steps": NUM_STEPS})
  return workdir


def test_four_devices_match_one_device(one_device, tmp_path):
  train(tmp_path, f"--config.train.num_steps={NUM_STEPS}", env=_devices_env(4))
  assert '"num_devices": 4' in (tmp_path / "final.json").read_text()
  _assert_same_model(one_device, tmp_path)


def test_batch_that_does_not_divide_over_devices_is_refused(tmp_path):
  result = train(tmp_path, "--config.train.batch_size=18", env=_devices_env(4), check=False)
  assert result.returncode != 0
  assert "train.batch_size 18 must divide by the number of devices 4" in result.stderr


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_of_two_devices_match_one_device(one_device, tmp_path):
  port = _free_port()
  processes = [
      subprocess.Popen(
          [sys.executable, "-m", "experiments.celeba", "--workdir", str(tmp_path),
           "--config", SYNTHETIC_TINY, f"--config.train.num_steps={NUM_STEPS}",
           # Evaluation saves a best checkpoint at the same steps as the regular one.
           "--config.eval.every_steps=3",
           f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
           f"--process_id={i}"],
          cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu", **_devices_env(2)},
          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)
  ]
  outputs = [p.communicate(timeout=300)[0] for p in processes]
  assert [p.returncode for p in processes] == [0, 0], outputs
  final = (tmp_path / "final.json").read_text()
  assert '"num_devices": 4' in final and '"num_processes": 2' in final
  # Only process 0 writes summaries.
  assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
  assert [p.name for p in (tmp_path / "checkpoints_best").iterdir() if p.name.isdigit()]
  _assert_same_model(one_device, tmp_path)


def test_every_preset_trains_the_same_model_on_four_devices(preset_runs, tmp_path):
  """Each preset's networks, loss, penalty and normalisation."""
  one = preset_runs[0]
  run_module("tests.preset_runs", tmp_path, env=_devices_env(4))
  for name in PRESETS:
    assert json.loads((tmp_path / name / "final.json").read_text())["num_devices"] == 4
    config = tiny_preset(name)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    setup = setup_from_config(config,
                              sources.create_source(config.data, config.seed).attribute_names)
    a, b = (checkpointing.restore_state(run / name / "checkpoints",
                                        abstract_state(setup, sharding))
            for run in (one, tmp_path))
    assert int(a.step) == int(b.step) == PRESET_STEPS
    first = [json.loads((run / name / "metrics.jsonl").read_text().splitlines()[0])
             for run in (one, tmp_path)]
    for key in ("d_loss", "d_real", "d_fake"):  # D's first pass, before any update
      np.testing.assert_allclose(first[1][key], first[0][key], rtol=1e-4, atol=1e-6,
                                 err_msg=f"{name} {key}")
    # G's loss comes after one D update, which the amplified rounding below moves a little.
    np.testing.assert_allclose(first[1]["g_loss"], first[0]["g_loss"], rtol=1e-3, atol=1e-3,
                               err_msg=f"{name} g_loss")
    # The parameters agree up to the order of floating-point sums, which Adam amplifies
    # where a gradient is nearly zero: with beta1 = 0 its first updates move a parameter
    # by about +-lr whatever the gradient's size, so rounding that flips a tiny
    # gradient's sign moves that parameter by up to 2 lr per update. A data-parallel
    # error (statistics per device, a mis-sharded batch) moves all of them.
    bound = 2 * max(config.train.g_lr, config.train.d_lr) * PRESET_STEPS
    x, y = (np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(s)]) for s in (a, b))
    off = ~np.isclose(x, y, rtol=1e-4, atol=1e-5)
    assert off.mean() < 0.01 and np.all(np.abs(x - y)[off] <= bound), (name, off.mean())
