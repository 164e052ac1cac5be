"""Images from a variant's generator: fixed latents, batched sampling, interpolation, and
restoring a trained run to draw from."""

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dcgan_jax import checkpointing, files, run_dir, steps, summaries
from dcgan_jax.train_state import GanSetup, TrainState, abstract_state, setup_from_config
from dcgan_jax.variants import Variant

# fold_in constants for `fixed_latents`: the noise of training's sample grids and of its
# evaluations never collides with training keys or with each other.
SAMPLE_NOISE_STREAM = 1
EVAL_NOISE_STREAM = 2


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  config: ml_collections.ConfigDict
  setup: GanSetup
  state: TrainState

  @property
  def variant(self) -> Variant:
    return self.setup.variant

  @property
  def step(self) -> int:
    return int(self.state.step)


def load_run(workdir: Path, step: int | None = None) -> TrainedRun:
  """The run's config.json and its latest (or `step`) checkpoint, on one device."""
  config = run_dir.read_config(workdir)
  setup = setup_from_config(config)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  state = checkpointing.restore_state(workdir / "checkpoints", abstract_state(setup, sharding),
                                      step)
  return TrainedRun(config, setup, state)


def fixed_latents(variant: Variant, seed: int, num: int, stream: int | None = None
                  ) -> np.ndarray:
  """`num` latents that are a function of the seed (and `stream`) alone."""
  key = jax.random.PRNGKey(seed)
  if stream is not None:
    key = jax.random.fold_in(key, stream)
  return np.asarray(variant.sample_latents(key, num))


@functools.lru_cache(maxsize=4)
def sampler(variant: Variant):
  """The jitted `steps.generate_images` of a variant, compiled once per batch shape."""
  return jax.jit(functools.partial(steps.generate_images, variant))


def generate(variant: Variant, state: TrainState, z_BZ: np.ndarray,
             labels_BA: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
  """uint8 (B, R, R, 3) images from latents (and labels, for a conditional variant),
  generated `batch_size` at a time."""
  sample = sampler(variant)
  chunks = []
  for start in range(0, len(z_BZ), batch_size):
    part = slice(start, start + batch_size)
    labels = None if labels_BA is None else jnp.asarray(labels_BA[part])
    chunks.append(np.asarray(sample(state, jnp.asarray(z_BZ[part]), labels)))
  return np.concatenate(chunks)


def slerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
  """Spherical interpolation, which keeps Gaussian latents at a typical norm."""
  z0n, z1n = z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)
  omega = np.arccos(np.clip(np.dot(z0n, z1n), -1.0, 1.0))
  t = t[:, None]
  if omega < 1e-6:
    return (1 - t) * z0 + t * z1
  return (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)


def interpolation_latents(variant: Variant, seed: int, num_rows: int, num_cols: int
                          ) -> np.ndarray:
  """num_rows slerp paths of num_cols steps, each between two random latents."""
  ends = fixed_latents(variant, seed, 2 * num_rows)
  t = np.linspace(0.0, 1.0, num_cols)
  return np.concatenate([slerp(ends[2 * r], ends[2 * r + 1], t) for r in range(num_rows)])


def interpolation_grid(run: TrainedRun, seed: int, num_rows: int, num_cols: int) -> np.ndarray:
  """A uint8 grid image: one slerp path per row."""
  z = interpolation_latents(run.variant, seed, num_rows, num_cols)
  return summaries.image_grid(generate(run.variant, run.state, z), num_cols=num_cols)


def write_samples(run: TrainedRun, out_dir: Path, num: int, seed: int) -> None:
  """`num` samples as out_dir/000000.png, 000001.png, ..."""
  images = generate(run.variant, run.state, fixed_latents(run.variant, seed, num))
  out_dir.mkdir(parents=True, exist_ok=True)
  for i, image in enumerate(images):
    files.write_png(out_dir / f"{i:06d}.png", image)
