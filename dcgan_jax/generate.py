"""Images from a variant's generator: fixed latents, batched sampling, interpolation, and
restoring a trained run to draw from."""

import dataclasses
import functools
import itertools
from pathlib import Path
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dcgan_jax import checkpointing, files, population, run_dir, steps, summaries
from dcgan_jax.data import sources
from dcgan_jax.train_state import GanSetup, TrainState, abstract_state, setup_from_config
from dcgan_jax.variants import Variant, check_name

# fold_in constants for `fixed_latents`: the noise of training's sample grids and of its
# evaluations never collides with training keys or with each other.
SAMPLE_NOISE_STREAM = 1
EVAL_NOISE_STREAM = 2


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  config: ml_collections.ConfigDict
  setup: GanSetup
  state: TrainState
  # The training data, which a conditional run draws its label rows from (else None).
  source: sources.Source | None = None

  @property
  def variant(self) -> Variant:
    """The variant as the run's last step left it (a growing run's current stage)."""
    return self.setup.variant.after_steps(self.step)

  @property
  def step(self) -> int:
    return int(self.state.step)

  def inputs(self, seed: int, num: int, stream: int | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """`fixed_inputs` of this run."""
    return fixed_inputs(self.variant, self.source, seed, num, stream)


def load_run(workdir: Path, step: int | None = None, *, best: bool = False,
             member: int | None = None) -> TrainedRun:
  """The run's config.json and its latest (or `step`, or with `best` its best-scoring)
  checkpoint, on one device; of a population, member `member` (required there) as its
  solo run. A conditional run also opens its training data, for the attribute names and
  label rows."""
  config = run_dir.read_config(workdir)
  members = population.members_of_run(config, member, workdir)
  if members is not None:
    config = population.member_config(config, members.members[member])
    if best:
      workdir = run_dir.member_dir(workdir, member)
  source = None
  if config.model.condition != "none":
    source = sources.create_source(config.data, config.seed)
  attribute_names = source.attribute_names if source else ()
  setup = setup_from_config(config, attribute_names)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  directory = workdir / ("checkpoints_best" if best else "checkpoints")
  if best and not directory.exists():
    raise FileNotFoundError(f"--best: {workdir} has no best checkpoint; it is kept when the run "
                            f"evaluates during training (eval.every_steps > 0)")
  if members is None:
    state = checkpointing.restore_state(directory, abstract_state(setup, sharding), step)
  else:
    # A member's state has the layout the population's shared setup gives it.
    members = dataclasses.replace(members, attribute_names=tuple(attribute_names))
    if best:
      state = checkpointing.restore_state(directory, abstract_state(members.setup, sharding),
                                          step)
    else:
      state = population.of_member(checkpointing.restore_state(
          directory, population.abstract_population(members, sharding), step), member)
  return TrainedRun(config, setup, state, source)


def fixed_latents(variant: Variant, seed: int, num: int, stream: int | None = None
                  ) -> np.ndarray:
  """`num` latents that are a function of the seed (and `stream`) alone."""
  key = jax.random.PRNGKey(seed)
  if stream is not None:
    key = jax.random.fold_in(key, stream)
  return np.asarray(variant.sample_latents(key, num))


def fixed_inputs(variant: Variant, source: sources.Source | None, seed: int, num: int,
                 stream: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
  """`fixed_latents`, and for a conditional variant the label rows of `num` training
  examples drawn (with replacement) by the same seed and stream, so the attribute
  combinations are those real faces have; None for an unconditional variant."""
  z = fixed_latents(variant, seed, num, stream)
  if not variant.conditional:
    return z, None
  rng = np.random.default_rng([seed] if stream is None else [seed, stream])
  return z, sources.read_batch(source, rng.integers(len(source), size=num))["label"]


def set_attributes(variant: Variant, labels_BA: np.ndarray | None,
                   settings: Mapping[str, int], flag: str = "--attributes") -> np.ndarray:
  """A copy of the label rows with the named attributes set to +1 or -1 in every row;
  errors name `flag`, where the settings came from."""
  if not variant.conditional:
    raise ValueError(f"{flag}: this run is not conditional (model.condition=none)")
  labels_BA = labels_BA.copy()
  for name, value in settings.items():
    check_name(f"{flag}: attribute", name, variant.attributes)
    if value not in (1, -1):
      raise ValueError(f"{flag}: {name}={value}; an attribute is set to 1 or -1")
    labels_BA[:, variant.label_columns[variant.attributes.index(name)]] = value
  return labels_BA


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
  """A uint8 grid image: one slerp path per row (with one label row each, if conditional)."""
  z = interpolation_latents(run.variant, seed, num_rows, num_cols)
  _, labels = run.inputs(seed, num_rows)
  if labels is not None:
    labels = np.repeat(labels, num_cols, axis=0)
  return summaries.image_grid(generate(run.variant, run.state, z, labels), num_cols=num_cols)


def attribute_grid(run: TrainedRun, seed: int, num_rows: int) -> np.ndarray:
  """A uint8 grid image of a conditional run: one latent and label row per row; the first
  column as drawn, then one column per attribute of the run (in `variant.attributes`
  order) with that attribute toggled."""
  z, labels = run.inputs(seed, num_rows)
  columns = [labels]
  for column in run.variant.label_columns:
    toggled = labels.copy()
    toggled[:, column] = -toggled[:, column]
    columns.append(toggled)
  return _grid_of_label_columns(run, z, columns)


def attribute_settings_grid(run: TrainedRun, seed: int, num_rows: int,
                            names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
  """A uint8 grid image of a conditional run, and its column titles: one latent (and the
  other attributes of a training face) per row, under every setting of the named
  attributes to +1 and -1, one setting per column ("+Male -Smiling", ...)."""
  z, labels = run.inputs(seed, num_rows)
  settings = list(itertools.product((1, -1), repeat=len(names)))
  columns = [set_attributes(run.variant, labels, dict(zip(names, values))) for values in settings]
  titles = [" ".join(f"{'+' if value > 0 else '-'}{name}" for name, value in zip(names, values))
            for values in settings]
  return _grid_of_label_columns(run, z, columns), titles


def _grid_of_label_columns(run: TrainedRun, z_NZ: np.ndarray,
                           columns: Sequence[np.ndarray]) -> np.ndarray:
  """Row r: latent r under the label rows' row r of each column."""
  num_rows, num_cols = len(z_NZ), len(columns)
  labels_grid = np.stack(columns, axis=1).reshape(num_rows * num_cols, -1)
  images = generate(run.variant, run.state, np.repeat(z_NZ, num_cols, axis=0), labels_grid)
  return summaries.image_grid(images, num_cols=num_cols)


def write_samples(run: TrainedRun, out_dir: Path, num: int, seed: int,
                  attributes: Mapping[str, int] | None = None) -> None:
  """`num` samples as out_dir/000000.png, 000001.png, ...; `attributes` (a conditional
  run's) are set in every label row, the others come from training examples."""
  z, labels = run.inputs(seed, num)
  if attributes:
    labels = set_attributes(run.variant, labels, attributes)
  images = generate(run.variant, run.state, z, labels)
  out_dir.mkdir(parents=True, exist_ok=True)
  for i, image in enumerate(images):
    files.write_png(out_dir / f"{i:06d}.png", image)
