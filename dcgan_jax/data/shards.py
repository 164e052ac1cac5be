"""Prepared face shards: their format, and random access to them for the loader.

Prepared directory layout::

  DIR/metadata.json                           written last; its presence means "complete"
  DIR/{split}-{k:05d}-of-{n:05d}.array_record the records of one split, in image-name order
  DIR/skipped.txt                             images left out, one "name<TAB>reason" a line

Record format (no pickle): the image as raw uint8 bytes, row-major (H, W, 3) RGB with
H = W = resolution, followed by one signed byte (+1 or -1) per attribute in
`attribute_names` order (nothing when the source has no attributes). Every record of a
directory has the same length. Shards are uncompressed with one record per group, so a
random read is one seek and no decompression.

`metadata.json` holds: format_version, resolution, crop, resample ("lanczos"),
attribute_names (list, or null when the source has none), source_fingerprint, split and
num_shards (the flags), and `splits`: for each written split its image count and shard
file names. The source fingerprint is a sha256 over the sorted image names with their
byte sizes (zip member sizes or file sizes), plus the bytes of the attribute and
partition listings: cheap to compute, and it changes when images are added, removed or
replaced by files of another size.

`data.celeba_prepare` writes them, into a directory of the user's or, for a `data.dir` that
names a source rather than shards, into the cache (see `prepared_cache`).
"""

import json
import os
from pathlib import Path

import numpy as np

from dcgan_jax import files

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")


def prepare_command(data_dir: str | Path) -> str:
  return ("python -m experiments.prepare_celeba --src /path/to/img_align_celeba.zip "
          f"--out {data_dir}")


def default_cache_home() -> Path:
  return Path.home() / ".cache" / "dcgan_jax"


def cache_home() -> Path:
  """The project's cache folder, which the Inception weights are looked for in first:
  $DCGAN_JAX_CACHE, else ~/.cache/dcgan_jax/."""
  return Path(os.environ.get("DCGAN_JAX_CACHE") or default_cache_home())


def prepared_cache() -> Path:
  """Where the shards of sources given as data.dir are prepared, one folder per source,
  crop and resolution (`sources.prepared_dir`)."""
  return cache_home() / "prepared"


def _remedy(data_dir: str | Path) -> str:
  """How to mend unusable shards: prepare them again, or, in the cache, delete them (no
  prepare_celeba run wrote them, and the next run that reads their source prepares them)."""
  data_dir = Path(data_dir)
  if data_dir.resolve().parent == prepared_cache().resolve():
    return f"delete {data_dir}, and the next run prepares it again"
  return f"prepare it again with: {prepare_command(data_dir)}"


def load_metadata(data_dir: str | Path) -> dict:
  """metadata.json of a prepared directory, or a ValueError naming the prepare command."""
  data_dir = Path(data_dir)
  path = data_dir / "metadata.json"
  if not path.is_file():
    raise ValueError(f"data.dir {data_dir} holds no prepared shards (no metadata.json); "
                     f"create them with: {prepare_command(data_dir)}")
  try:
    metadata = json.loads(path.read_text())
  except ValueError as error:
    raise ValueError(f"data.dir {data_dir} has an unreadable metadata.json ({error}); "
                     f"{_remedy(data_dir)}") from None
  if metadata.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"data.dir {data_dir} was prepared in format version "
                     f"{metadata.get('format_version')}, this version reads {FORMAT_VERSION}; "
                     f"{_remedy(data_dir)}")
  return metadata


class PreparedImages:
  """Random-access examples of one split (a `sources.Source`), for grain; picklable."""

  def __init__(self, data_dir: str | Path, split: str = "train"):
    from grain import sources  # pylint: disable=g-import-not-at-top  (slow; prepare needs none)

    self.data_dir = Path(data_dir)
    self.split = split
    metadata = load_metadata(self.data_dir)
    if split not in metadata["splits"] or not metadata["splits"][split]["count"]:
      raise ValueError(f"data.dir {data_dir} has no images in split {split!r}; it has "
                       f"{sorted(s for s, v in metadata['splits'].items() if v['count'])}")
    paths = [self.data_dir / name for name in metadata["splits"][split]["shards"]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
      raise ValueError(f"data.dir {data_dir} lacks shards {missing}; {_remedy(data_dir)}")
    self.resolution = metadata["resolution"]
    self.attribute_names = metadata["attribute_names"] or []
    self._image_bytes = self.resolution * self.resolution * 3
    self._record_bytes = self._image_bytes + len(self.attribute_names)
    try:
      self._records = sources.ArrayRecordDataSource([str(p) for p in paths])
    except Exception as error:  # riegeli raises many kinds for a damaged shard
      raise ValueError(f"data.dir {data_dir}: the shards of split {split!r} cannot be read "
                       f"({files.one_line(error)}); {_remedy(data_dir)}") from None

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    """{"image": uint8 (R, R, 3), "label": int8 (A,)}, read-only views of the record."""
    try:
      record = self._records[index]
    except Exception as error:  # riegeli raises many kinds for a damaged shard
      raise ValueError(f"data.dir {self.data_dir}: record {index} of split {self.split!r} "
                       f"cannot be read ({files.one_line(error)}); "
                       f"{_remedy(self.data_dir)}") from None
    if len(record) != self._record_bytes:
      raise ValueError(f"data.dir {self.data_dir}: record {index} of split {self.split!r} holds "
                       f"{len(record):,} bytes, not the {self._record_bytes:,} of a "
                       f"{self.resolution}px image and {len(self.attribute_names)} attributes "
                       f"that its metadata.json describes; {_remedy(self.data_dir)}")
    pixels = np.frombuffer(record, np.uint8, count=self._image_bytes)
    return {"image": pixels.reshape(self.resolution, self.resolution, 3),
            "label": np.frombuffer(record, np.int8, count=len(self.attribute_names),
                                   offset=self._image_bytes)}

  def __repr__(self) -> str:
    return f"PreparedImages({str(self.data_dir)!r}, split={self.split!r}, n={len(self)})"
