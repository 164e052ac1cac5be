"""A trained generator as a Python object: `load_generator(run directory or generator file)`.

  from dcgan_jax import load_generator
  generator = load_generator("runs/cdcgan")            # or step=K, step="best", "g.safetensors"
  faces = generator.sample(16, seed=0, attributes={"Male": 1})   # uint8 (16, R, R, 3)

A generator file (`.safetensors`, written by `python -m experiments.export`) holds what
drawing needs alone: the generator's variables, named by their flattened Flax paths under
"params/" (the weights it draws with: the EMA when the run keeps one) and "batch_stats/";
for a conditional run the conditioned attributes of every training face, int8
"label_rows" (N, A); and in its metadata, under "dcgan_jax", the JSON of the run's
config, the step and the attribute names.
"""

import dataclasses
import json
import numbers
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from dcgan_jax import files, generate, run_dir
from dcgan_jax.data import sources
from dcgan_jax.train_state import TrainState
from dcgan_jax.variants import Variant, variant_from_config

PyTree = Any

# A generator file's metadata key, and the name of its label rows' tensor.
METADATA_KEY = "dcgan_jax"
LABEL_ROWS = "label_rows"
EXPORT_EXTRA = 'pip install -e ".[export]"'


@dataclasses.dataclass(frozen=True)
class Generator:
  """A trained generator, drawing exactly as `experiments.sample`, the evaluations and the
  report draw (`steps.generate_in_model_range`): by the EMA of its parameters when the
  run keeps one; an unconditional one with every BatchNorm normalised by the statistics
  of the batch it is given (as the reference DCGAN draws its grids), `generate.generate`'s
  batch of 256 at a time, so that its images depend on the others drawn with it; a
  conditional one by the running averages, so that each face depends on its own latent
  and attributes alone. A growing (ProGAN) run draws at its step's stage and fade-in."""

  config: ml_collections.ConfigDict
  step: int
  variant: Variant  # its label rows are the attributes alone, in `attributes` order
  state: TrainState  # the generator's variables alone (`sampling_state`)
  # The training faces' label rows (conditioned attributes only), which `sample` draws
  # from; None for an unconditional generator.
  label_source: sources.Source | None

  @property
  def z_dim(self) -> int:
    return self.variant.z_dim

  @property
  def resolution(self) -> int:
    """Of the images it makes: a growing run's current stage's."""
    return self.variant.image_resolution

  @property
  def attributes(self) -> tuple[str, ...]:
    """The attributes it is conditioned on, in the order `generate` takes them."""
    return self.variant.attributes

  @property
  def variables(self) -> dict[str, PyTree]:
    """{"params": the weights it draws with, "batch_stats": the generator's}."""
    return {"params": self.state.g_params, "batch_stats": self.state.g_batch_stats}

  def sample(self, num: int, seed: int = 0,
             attributes: Mapping[str, int] | None = None) -> np.ndarray:
    """uint8 (num, R, R, 3): the images `experiments.sample --num num --seed seed
    [--attributes ...]` writes: latents of the seed, and for a conditional generator the
    attributes of training faces drawn by it, those named in `attributes` ({"Male": 1,
    "Smiling": -1}) set in every row."""
    if not _is_integer(num) or num <= 0:
      raise ValueError(f"num: expected a positive number of images, got {num!r}")
    z, labels = generate.fixed_inputs(self.variant, self.label_source, seed, num)
    if attributes:
      labels = generate.set_attributes(self.variant, labels, attributes, "attributes")
    return generate.generate(self.variant, self.state, z, labels)

  def generate(self, z: np.ndarray, attributes: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, R, R, 3) images of latents z (N, z_dim); a conditional generator needs
    their attributes, +1/-1 (N, len(attributes)) in `attributes` order."""
    z = np.asarray(z)
    if (z.ndim != 2 or z.shape[1] != self.z_dim or not len(z)
        or not np.issubdtype(z.dtype, np.floating)):
      raise ValueError(f"z: expected float latents of shape (N, {self.z_dim}), N >= 1; got "
                       f"{z.dtype} {z.shape}")
    labels = _label_rows(self.attributes, attributes, len(z))
    return generate.generate(self.variant, self.state, z.astype(np.float32), labels)


def _is_integer(value: Any) -> bool:
  """An integer of any kind (a NumPy one too), but not a bool."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _label_rows(names: tuple[str, ...], attributes: np.ndarray | None,
                num: int) -> np.ndarray | None:
  """`Generator.generate`'s attributes as the variant's int8 label rows; one line naming
  what was expected when they do not fit the generator."""
  if not names:
    if attributes is not None:
      raise ValueError("attributes: this generator is not conditional (model.condition=none); "
                       "leave them out")
    return None
  expected = (f"expected +1/-1 attributes of shape ({num}, {len(names)}), in the order "
              f"{', '.join(names)}")
  if attributes is None:
    raise ValueError(f"attributes: this generator is conditional: {expected}")
  attributes = np.asarray(attributes)
  if attributes.shape != (num, len(names)) or not np.isin(attributes, (1, -1)).all():
    raise ValueError(f"attributes: {expected}; got {attributes.dtype} {attributes.shape}"
                     + ("" if attributes.shape != (num, len(names)) else " with other values"))
  return attributes.astype(np.int8)


@dataclasses.dataclass(frozen=True)
class _ConditionedColumns:
  """A source whose label rows are cut to a variant's attributes, in its order."""

  source: sources.Source
  columns: tuple[int, ...]

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> sources.Example:
    example = self.source[index]
    return {**example, "label": example["label"][list(self.columns)]}


@dataclasses.dataclass(frozen=True)
class _StoredLabelRows:
  """The label rows a generator file keeps, as a source of faces without pixels (0x0
  images): `generate.fixed_inputs` reads only their labels."""

  rows: np.ndarray

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, index: int) -> sources.Example:
    return {"image": np.zeros((0, 0, 3), np.uint8), "label": self.rows[index]}


def variant_at(config: ml_collections.ConfigDict, attributes: Sequence[str],
               step: int) -> Variant:
  """The run's variant as a state at `step` draws (a growing run's stage of its last
  step), taking label rows of `attributes` alone, in that order."""
  return variant_from_config(config, attributes).after_steps(step)


def sampling_state(step: int, variables: Mapping[str, PyTree]) -> TrainState:
  """A TrainState holding only what `steps.generate_images` reads: the step and the
  generator's `Generator.variables`, whose "params" are the weights to draw with (its
  `sampling_params`); no EMA beside them, discriminator, optimiser or key. Runs and files
  make the same one, so both compile the same program."""
  return TrainState(step=jnp.asarray(step, jnp.int32), g_params=variables["params"],
                    d_params={}, g_batch_stats=variables["batch_stats"], d_batch_stats={},
                    g_opt_state=None, d_opt_state=None, key=None)


def _generator(config: ml_collections.ConfigDict, step: int, attributes: Sequence[str],
               variables: Mapping[str, PyTree], label_source: sources.Source | None
               ) -> Generator:
  return Generator(config, step, variant_at(config, attributes, step),
                   sampling_state(step, variables), label_source)


def _from_run(workdir: Path, step: int | str | None, member: int | None) -> Generator:
  if step == "best":
    run = generate.load_run(workdir, best=True, member=member)
  elif step is None or _is_integer(step):
    run = generate.load_run(workdir, None if step is None else int(step), member=member)
  else:
    raise ValueError(f"step: expected None (the latest), a step number or 'best', got {step!r}")
  label_source = None
  if run.variant.conditional:
    label_source = _ConditionedColumns(run.source, run.variant.label_columns)
  variables = {"params": run.state.sampling_params, "batch_stats": run.state.g_batch_stats}
  return _generator(run.config, run.step, run.variant.attributes, variables, label_source)


def import_safetensors(path: Path):
  """safetensors' numpy API: an optional dependency, which only generator files need."""
  try:
    import safetensors.numpy  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError(f"{path}: generator files need safetensors: {EXPORT_EXTRA}") from None
  return safetensors


def _read_file(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
  """A safetensors file's metadata and tensors; one line naming it if it is not one."""
  safetensors = import_safetensors(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such generator file")
  try:
    with safetensors.safe_open(path, framework="np") as opened:
      return opened.metadata() or {}, {name: opened.get_tensor(name) for name in opened.keys()}
  except (safetensors.SafetensorError, OSError) as error:
    raise ValueError(f"{path} is not a safetensors file ({files.one_line(error)})") from None


def file_header(generator: Generator) -> str:
  """The JSON a generator file keeps under METADATA_KEY."""
  return json.dumps({"config": run_dir.config_as_dict(generator.config),
                     "step": generator.step, "attributes": list(generator.attributes)},
                    sort_keys=True)


def flat_variables(variables: Mapping[str, PyTree]) -> dict[str, Any]:
  """{"params/ConvTranspose_0/kernel": leaf, ...}: the names of a generator file's tensors."""
  return {f"{collection}/{name}": leaf for collection, tree in variables.items()
          for name, leaf in traverse_util.flatten_dict(tree, sep="/").items()}


def _expected_shapes(variant: Variant) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """The (shape, dtype) of every variable tensor of a file of the variant's generator."""
  g_vars, _ = jax.eval_shape(variant.init_variables, jax.random.PRNGKey(0),
                             jax.random.PRNGKey(1))
  return {name: (tuple(value.shape), np.dtype(value.dtype))
          for name, value in flat_variables(g_vars).items()}


def _check_tensors(path: Path, tensors: Mapping[str, np.ndarray],
                   expected: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> None:
  """One line naming the first tensor that the generator of the file's config lacks, or
  has with another shape or dtype (a file of another version of the networks)."""
  found = {name: (tuple(value.shape), value.dtype) for name, value in tensors.items()}

  def described(entry: tuple[tuple[int, ...], np.dtype] | None) -> str:
    return "absent" if entry is None else f"{entry[1]} {entry[0]}"

  for name in sorted(expected.keys() | found.keys()):
    if found.get(name) != expected.get(name):
      raise ValueError(f"{path}: tensor {name} is {described(found.get(name))} in the file and "
                       f"{described(expected.get(name))} in the generator of its config")


def _header(path: Path, metadata: Mapping[str, str]
            ) -> tuple[ml_collections.ConfigDict, int, tuple[str, ...]]:
  """The config, step and attribute names a generator file keeps (`file_header`)."""
  if METADATA_KEY not in metadata:
    raise ValueError(f"{path} is a safetensors file but not a generator file (no "
                     f"{METADATA_KEY!r} in its metadata); write one with experiments.export")
  try:
    header = json.loads(metadata[METADATA_KEY])
    config = ml_collections.ConfigDict(run_dir.with_added_keys(header["config"]))
    return config, int(header["step"]), tuple(header["attributes"])
  except (ValueError, KeyError, TypeError, AttributeError) as error:
    raise ValueError(f"{path}: its {METADATA_KEY!r} metadata is not what experiments.export "
                     f"writes ({type(error).__name__}: {files.one_line(error)})") from None


def _from_file(path: Path) -> Generator:
  metadata, tensors = _read_file(path)
  config, step, attributes = _header(path, metadata)
  label_rows = tensors.pop(LABEL_ROWS, None)
  if attributes and (label_rows is None or label_rows.dtype != np.int8
                     or label_rows.shape[1:] != (len(attributes),)):
    raise ValueError(f"{path}: a conditional generator's file holds int8 {LABEL_ROWS} "
                     f"(N, {len(attributes)}), the attributes of its training faces")
  _check_tensors(path, tensors, _expected_shapes(variant_at(config, attributes, step)))
  variables = {"batch_stats": {}, **traverse_util.unflatten_dict(
      {name: jnp.asarray(value) for name, value in tensors.items()}, sep="/")}
  return _generator(config, step, attributes, variables,
                    None if label_rows is None else _StoredLabelRows(label_rows))


def load_generator(source: str | os.PathLike, step: int | str | None = None,
                   member: int | None = None) -> Generator:
  """The generator of a run directory at its latest checkpoint (or `step`, or "best", its
  best-scoring one), of a population's `member` there, or that of a generator file
  (`.safetensors`, which holds one step). Bad input is a one-line ValueError or
  FileNotFoundError naming it."""
  path = Path(source)
  if path.suffix != ".safetensors":
    return _from_run(path, step, member)
  if step is not None:
    raise ValueError(f"step: {path} holds the generator of one step; leave step out")
  if member is not None:
    raise ValueError(f"member: {path} holds the generator of one run; leave member out")
  return _from_file(path)
