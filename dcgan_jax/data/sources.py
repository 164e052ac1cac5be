"""Random-access sources of labelled faces, and reading batches of examples from them.

An example is a dict: "image", uint8 (H, W, 3), and "label", int8 (A,), the attributes
(+1 present, -1 absent) named by the source's `attribute_names` (A may be 0).
"""

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Protocol

import ml_collections
import numpy as np

from dcgan_jax import files
from dcgan_jax.data import celeba_prepare, shards, synthetic_faces

Example = dict[str, np.ndarray]


class Source(Protocol):
  """Random access to examples; picklable, for grain's worker processes."""

  attribute_names: list[str]

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> Example: ...


def create_source(data_config: ml_collections.ConfigDict, seed: int) -> Source:
  """The source named by `data.source`."""
  if data_config.source == "synthetic":
    return synthetic_faces.SyntheticFaces(
        seed=seed, num_images=data_config.num_images, resolution=data_config.resolution)
  if data_config.source == "celeba":
    source = shards.PreparedImages(prepared_dir(data_config), data_config.split)
    if source.resolution < data_config.resolution:
      raise ValueError(
          f"data.dir {data_config.dir} holds {source.resolution}px images but "
          f"data.resolution is {data_config.resolution}; prepare the data again with "
          f"--resolution {data_config.resolution} or change the config.")
    if source.resolution > data_config.resolution:
      return Downscaled(source, source.resolution // data_config.resolution)
    return source
  raise ValueError(f"data.source must be 'synthetic' or 'celeba', got {data_config.source!r}")


def holds_prepared_shards(data_dir: str | Path) -> bool:
  """Whether `data_dir` holds prepared shards (their metadata.json), rather than naming a
  source to prepare them from."""
  return (Path(data_dir) / "metadata.json").is_file()


def prepared_dir(data_config: ml_collections.ConfigDict) -> Path:
  """The prepared shards that `data.dir` (data.source=celeba) names, for every reader of it.

  Shards are returned as they are. Anything else is read as prepare_celeba's --src (images
  with CelebA's listings when present, a zip, parquet files) and resolves to its entry in
  `shards.prepared_cache()`, named by the source's fingerprint, the crop and
  data.resolution, which holds what prepare_celeba writes for it with those flags: so a run
  has the same data identity from either. The first run to need the entry prepares it (a
  stopped preparation is resumed by the next); a damaged or foreign one is a one-line error.
  """
  if not data_config.dir:  # Path("") is the working directory, which is no source
    raise ValueError("data.source=celeba reads data.dir, which is empty: set it to prepared "
                     "shards or to what python -m experiments.prepare_celeba --src reads")
  data_dir = Path(data_config.dir)
  if holds_prepared_shards(data_dir):
    return data_dir
  config = celeba_prepare.PrepareConfig(resolution=data_config.resolution)
  fingerprint = _source_fingerprint(data_dir)
  entry = shards.prepared_cache() / f"{fingerprint[:16]}-crop{config.crop}-{config.resolution}px"
  if not holds_prepared_shards(entry):
    _prepare_into_cache(data_dir, entry, config)
  _check_cache_entry(data_dir, entry, celeba_prepare.output_identity(fingerprint, config))
  return entry


def _source_fingerprint(data_dir: Path) -> str:
  """`scan_source`'s fingerprint of the source data.dir names; one line when it is none."""
  try:
    return _scanned_fingerprint(data_dir.resolve())
  except celeba_prepare.PrepareError as error:
    raise ValueError(f"data.dir {data_dir} holds no prepared shards (no metadata.json) and is "
                     f"no source that python -m experiments.prepare_celeba --src reads "
                     f"({error})") from None


@functools.cache
def _scanned_fingerprint(source: Path) -> str:
  """Scanned once per process: listing a big source takes seconds, and the loader,
  data.json, evaluation and the report each ask."""
  return celeba_prepare.scan_source(source).fingerprint


def _prepare_into_cache(data_dir: Path, entry: Path,
                        config: celeba_prepare.PrepareConfig) -> None:
  """Prepares data.dir into its cache entry with prepare_celeba's code, checks, resume and
  progress lines. One preparation holds the cache at a time: a run that starts while
  another prepares stops at once, naming it, and finds the shards when started again. The
  processes of a multi-process run would each prepare on their own, so they do not."""
  import jax  # pylint: disable=g-import-not-at-top  (not in grain's worker processes)
  if jax.process_count() > 1:
    raise ValueError(f"data.dir {data_dir} is a source, not prepared shards, and a run of "
                     f"{jax.process_count()} processes does not prepare it: prepare it first "
                     f"with python -m experiments.prepare_celeba --src {data_dir} --out DIR "
                     f"--resolution {config.resolution} and set data.dir=DIR")
  try:
    entry.parent.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise ValueError(f"data.dir {data_dir} is to be prepared into {entry}, which cannot be "
                     f"created ({error.strerror or error}); set DCGAN_JAX_CACHE to a writable "
                     f"folder") from None
  with files.locked(shards.cache_home(), "DCGAN_JAX_CACHE"):
    if holds_prepared_shards(entry):  # by the run that held the lock before this one
      return
    print(f"preparing data.dir {data_dir} into {entry}, once: later runs read it there",
          file=sys.stderr, flush=True)
    try:
      celeba_prepare.prepare(data_dir, entry, config)
    except celeba_prepare.PrepareError as error:
      # prepare leaves no entry behind for a bad source; one left is what it refused.
      remedy = f"; delete {entry} to prepare it afresh" if entry.exists() else ""
      raise ValueError(f"data.dir {data_dir} cannot be prepared into {entry}: "
                       f"{error}{remedy}") from None


def _check_cache_entry(data_dir: Path, entry: Path, identity: dict[str, object]) -> None:
  """A one-line error, naming the entry and what to do, unless it holds the shards of
  `identity` (a damaged one is `load_metadata`'s error, which says the same)."""
  metadata = shards.load_metadata(entry)
  differing = ", ".join(f"{key} {metadata.get(key)!r}, expected {value!r}"
                        for key, value in identity.items() if metadata.get(key) != value)
  if differing:
    raise ValueError(f"data.dir {data_dir}: its cached shards {entry} were prepared from other "
                     f"data or flags ({differing}); delete {entry}, and the next run prepares "
                     f"it again")


@dataclasses.dataclass(frozen=True)
class Downscaled:
  """A source's images made `factor` times smaller, each pixel the mean of a factor x
  factor block (both resolutions are powers of two): larger prepared faces train a
  smaller model, a `:tiny` config for one, without preparing them again."""

  source: Source
  factor: int

  @property
  def attribute_names(self) -> list[str]:
    return self.source.attribute_names

  @property
  def resolution(self) -> int:
    return self.source.resolution // self.factor

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> Example:
    example = self.source[index]
    height, width, channels = example["image"].shape
    blocks = example["image"].reshape(height // self.factor, self.factor,
                                      width // self.factor, self.factor, channels)
    # Halves round up, as PIL's Image.reduce rounds them.
    image = np.floor(blocks.mean(axis=(1, 3), dtype=np.float32) + 0.5).astype(np.uint8)
    return {**example, "image": image}


def data_identity(data_config: ml_collections.ConfigDict, seed: int) -> dict[str, object]:
  """What the images a config reads are, wherever they lie: prepared shards by their
  source's fingerprint, crop, split and the resolution read; synthetic faces by what makes
  them. The same data moved to another directory keeps its identity."""
  if data_config.source == "celeba":
    metadata = shards.load_metadata(prepared_dir(data_config))
    return {"source_fingerprint": metadata["source_fingerprint"], "crop": metadata["crop"],
            "resolution": data_config.resolution, "split": data_config.split}
  return {"source": data_config.source, "num_images": data_config.num_images,
          "resolution": data_config.resolution, "seed": seed}


def read_batch(source: Source, indices: np.ndarray) -> Example:
  """The examples at `indices`, stacked: "image" (N, H, W, 3), "label" (N, A)."""
  examples = [source[int(i)] for i in indices]
  return {key: np.stack([example[key] for example in examples]) for key in ("image", "label")}


def read_images(source: Source, indices: np.ndarray) -> np.ndarray:
  """uint8 (N, H, W, 3): the images alone at `indices`."""
  return read_batch(source, indices)["image"]


def sample_indices(num_images: int, num: int, rng: np.random.Generator) -> np.ndarray:
  """`num` distinct indices below `num_images`, sorted; all of them when `num` is as large."""
  if num >= num_images:
    return np.arange(num_images)
  return np.sort(rng.choice(num_images, num, replace=False))
