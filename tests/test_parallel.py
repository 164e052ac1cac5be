"""Data parallelism: 1 device, 4 devices and 2 processes x 2 devices train the same model
(every preset on 4 devices: test_presets)."""

import hashlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from dcgan_jax import checkpointing
from dcgan_jax.train_state import abstract_state, setup_from_config
from experiments.configs import synthetic
from tests.cli import REPO, SYNTHETIC_TINY, free_port, train, with_xla_flags
from tests.runs import train_tiny

# Trains whole runs (several, or in other processes): left out of the quick check.
pytestmark = pytest.mark.slow

NUM_STEPS = 6


def _devices_env(count: int) -> dict[str, str]:
  return with_xla_flags(f"--xla_force_host_platform_device_count={count}")


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


def test_two_processes_of_two_devices_match_one_device(one_device, tmp_path):
  port = free_port()
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
  # The digest covers each process's data position, not only process 0's.
  latest = tmp_path / "checkpoints" / str(NUM_STEPS)
  positions = [json.loads((latest / "data" / f"process_{i}-of-2.json").read_text())
               for i in range(2)]
  assert json.loads((latest / "digest" / "metadata").read_text())["data_fingerprints"] == [
      hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest() for p in positions]
  _assert_same_model(one_device, tmp_path)
