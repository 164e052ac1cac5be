"""Images from a trained run: restore its generator, draw samples and interpolations."""

import dataclasses
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dcgan_jax import checkpointing, steps
from dcgan_jax.train_state import GanSetup, TrainState, abstract_state, setup_from_config


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  config: ml_collections.ConfigDict
  setup: GanSetup
  state: TrainState

  @property
  def step(self) -> int:
    return int(self.state.step)


def load_run(workdir: Path, step: int | None = None) -> TrainedRun:
  """The run's config.json and its latest (or `step`) checkpoint, on one device."""
  config_path = workdir / "config.json"
  if not config_path.exists():
    raise ValueError(f"--workdir {workdir} has no config.json: is it a training run directory?")
  config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  setup = setup_from_config(config)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  state = checkpointing.restore_state(workdir / "checkpoints", abstract_state(setup, sharding),
                                      step)
  return TrainedRun(config, setup, state)


def latent_noise(seed: int, num: int, z_dim: int) -> np.ndarray:
  return np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (num, z_dim)))


@functools.lru_cache(maxsize=4)
def sampler(setup: GanSetup):
  """The jitted `steps.generate_images` of a setup, compiled once per batch shape."""
  return jax.jit(functools.partial(steps.generate_images, setup))


def generate_from(setup: GanSetup, state: TrainState, z_NZ: np.ndarray,
                  batch_size: int = 256) -> np.ndarray:
  """uint8 (N, R, R, 3) images, generated `batch_size` at a time."""
  sample = sampler(setup)
  chunks = [np.asarray(sample(state, jnp.asarray(z_NZ[i:i + batch_size])))
            for i in range(0, len(z_NZ), batch_size)]
  return np.concatenate(chunks)


def generate(run: TrainedRun, z_NZ: np.ndarray, batch_size: int = 256) -> np.ndarray:
  return generate_from(run.setup, run.state, z_NZ, batch_size)


def slerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
  """Spherical interpolation, which keeps Gaussian latents at a typical norm."""
  z0n, z1n = z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)
  omega = np.arccos(np.clip(np.dot(z0n, z1n), -1.0, 1.0))
  t = t[:, None]
  if omega < 1e-6:
    return (1 - t) * z0 + t * z1
  return (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)


def interpolation_latents(seed: int, num_rows: int, num_cols: int, z_dim: int) -> np.ndarray:
  """num_rows slerp paths of num_cols steps, each between two random latents."""
  ends = latent_noise(seed, 2 * num_rows, z_dim)
  t = np.linspace(0.0, 1.0, num_cols)
  return np.concatenate([slerp(ends[2 * r], ends[2 * r + 1], t) for r in range(num_rows)])
