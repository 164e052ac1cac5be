"""A generator's files: `.safetensors` (its variables, reloaded by `load_generator`) and
`.onnx` (a graph from latents, and attributes, to images). Their libraries are the
[export] extra's, imported only here and only when such a file is written."""

import copy
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from dcgan_jax import files, generator as generators, steps

ONNX_INPUTS = ("z", "attributes")
ONNX_OUTPUT = "images"
# Opset 21 is the newest that onnxruntime 1.20, the oldest the extra allows, runs.
ONNX_OPSET = 21


def all_label_rows(generator: generators.Generator) -> np.ndarray:
  """int8 (N, A): the conditioned attributes of every training face, in order (a run's
  faces are read whole: a source has no reader of labels alone)."""
  source = generator.label_source
  return np.stack([source[index]["label"] for index in range(len(source))])


def safetensors_bytes(generator: generators.Generator, path: Path) -> bytes:
  """A generator file (see `dcgan_jax.generator`): its variables and, if conditional, its
  training faces' label rows; the config, step and attribute names in the metadata."""
  safetensors = generators.import_safetensors(path)
  tensors = {name: np.asarray(value)
             for name, value in generators.flat_variables(generator.variables).items()}
  if generator.attributes:
    tensors[generators.LABEL_ROWS] = all_label_rows(generator)
  return safetensors.numpy.save(tensors, metadata={
      generators.METADATA_KEY: generators.file_header(generator)})


def _import_onnx_tools(path: Path):
  """jax2onnx and onnx: optional dependencies, which only ONNX files need."""
  try:
    import jax2onnx  # pylint: disable=g-import-not-at-top
    import onnx  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError(f"{path}: writing ONNX needs jax2onnx and onnx: "
                     f"{generators.EXPORT_EXTRA}") from None
  return jax2onnx, onnx


def onnx_bytes(generator: generators.Generator, path: Path,
               draw: Callable[..., jax.Array] = steps.generate_images) -> bytes:
  """An ONNX graph computing `generator.generate` on one batch of any size N: float z
  (N, z_dim) and, if conditional, float +1/-1 attributes (N, A) in `generator.attributes`
  order, to uint8 images (N, R, R, 3) (`draw`'s output: `steps.generate_in_model_range`
  gives the floats they are rounded from, to compare with JAX's own); BatchNorm as
  sampling normalises (an unconditional generator by that batch's statistics, a
  conditional one by the running averages), the weights it draws with (the EMA's, when
  kept), a growing run's stage and fade-in. The metadata holds `file_header`'s JSON.

  Convolutions are computed the `reference` way (the same function, from the same
  parameters: models/layers.py), whose `lax` convolutions ONNX has; jax2onnx 0.17 cannot
  convert the `fast` way's `jnp.pad` of a batch of symbolic size. The generator is traced
  here, not by jax2onnx: while it traces, jax2onnx replaces every Flax BatchNorm, even
  one normalising by the batch, with ONNX's BatchNormalization by the running averages,
  a function sampling never computes."""
  jax2onnx, onnx = _import_onnx_tools(path)
  config = copy.deepcopy(generator.config)
  config.model.impl = "reference"
  variant = generators.variant_at(config, generator.attributes, generator.step)
  (batch,) = jax.export.symbolic_shape("N")
  inputs = [jax.ShapeDtypeStruct((batch, variant.z_dim), jnp.float32)]
  if variant.conditional:
    inputs.append(jax.ShapeDtypeStruct((batch, len(variant.attributes)), jnp.float32))

  def images(z, *attributes):  # the variant's label rows are its attributes alone
    return draw(variant, generator.state, z, *attributes)

  try:
    traced = jax.make_jaxpr(images)(*inputs)
    model = jax2onnx.to_onnx(jax.extend.core.jaxpr_as_fun(traced), inputs, opset=ONNX_OPSET,
                             model_name="dcgan_jax_generator",
                             input_names=ONNX_INPUTS[:len(inputs)], output_names=[ONNX_OUTPUT])
  except Exception as error:  # JAX's shape polymorphism and jax2onnx raise many kinds
    raise ValueError(f"{path}: this generator cannot be written as ONNX for a batch of any "
                     f"size ({type(error).__name__}: {files.one_line(error)})") from error
  onnx.helper.set_model_props(model, {generators.METADATA_KEY: generators.file_header(generator)})
  return model.SerializeToString()


class _Kind(NamedTuple):
  """A kind of file: what imports its libraries (or says in one line which extra has
  them) and what makes its contents; both are given the file's path, to name it."""

  libraries: Callable[[Path], Any]
  contents: Callable[[generators.Generator, Path], bytes]


# By the suffix of the file.
KINDS = {
    ".safetensors": _Kind(generators.import_safetensors, safetensors_bytes),
    ".onnx": _Kind(_import_onnx_tools, onnx_bytes),
}


def check_out(path: Path) -> None:
  """Before anything is loaded: a suffix written here, its libraries installed, and no file
  in the way (an export never replaces one)."""
  if path.suffix not in KINDS:
    raise ValueError(f"--out {path}: expected a file name ending in {' or '.join(KINDS)}")
  KINDS[path.suffix].libraries(path)
  if path.exists() or path.is_symlink():
    raise ValueError(f"--out {path} exists; remove it or choose another name")


def write(generator: generators.Generator, path: Path) -> int:
  """Writes the file (its kind by `path`'s suffix) via a temporary name; its size."""
  contents = KINDS[path.suffix].contents(generator, path)
  path.parent.mkdir(parents=True, exist_ok=True)
  files.write_atomic(path, contents)
  return len(contents)

