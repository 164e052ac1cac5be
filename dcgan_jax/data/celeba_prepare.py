"""CelebA (or any folder of faces) prepared once into ArrayRecord shards.

The shard format is described in `data.shards`.

Sources: the official img_align_celeba.zip, a folder of images (Kaggle's layout too), with
the attribute and partition listings when present; or parquet files in the layout of the
Hugging Face CelebA datasets (see `_scan_parquet`), read with pyarrow, which only this
input needs.

Preprocessing: conversion to 8-bit RGB (see `to_rgb`), centre square crop of `crop`
pixels (at most the image's short side), antialiased resize with PIL's Lanczos filter to
`resolution`. Images are assigned to shards by sorted name, contiguously, so the same
input gives the same bytes whatever the worker count.

Restarts: DIR/.prepare_state.json, with the flags and source fingerprint, is written
before anything else; each shard is written to a temporary name, fsynced and renamed,
then recorded in it; a re-run with the same flags skips the recorded shards and redoes
the rest. metadata.json is written last, the same way, and replaces the state file.

DIR must be new, empty, or hold this tool's output for the same flags (the state file or
metadata.json, and only the files those flags write), so a run never overwrites a file
it did not write.
"""

import collections
import concurrent.futures
import contextlib
import csv
import ctypes
import dataclasses
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import re
import select
import sys
import threading
import time
import types
import zipfile
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter
from PIL import Image

from dcgan_jax import files
from dcgan_jax.data.shards import FORMAT_VERSION, SPLITS, load_metadata

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CELEBA_SIZE = (178, 218)  # width, height of every aligned-and-cropped CelebA image
MIN_IMAGE_SIDE = 8
_CELEBA_NAME = re.compile(r"^\d{6}\.jpg$")
_STATE_FILE = ".prepare_state.json"
_OUTPUT_FILES = ("metadata.json", _STATE_FILE, "skipped.txt")  # besides the shards
_IMAGES_PER_TASK = 32


class PrepareError(ValueError):
  """Bad flags or input: reported as one line, exit code 2, nothing written."""


# ----------------------------------------------------------------------------- source


class ParquetRow(NamedTuple):
  """Where an image of a parquet source is: a row of a row group of a file."""

  path: Path
  row_group: int
  row: int  # within the row group


@dataclasses.dataclass(frozen=True)
class SourceImages:
  """What --src holds: images by name, and optional attributes and partition."""

  names: list[str]  # sorted: file base names, or as `_parquet_image_names` gives them
  zip_path: Path | None  # images come from this zip's members...
  members: dict[str, str]  # ...named members[name], or from the files members[name]...
  parquet_rows: dict[str, ParquetRow]  # ...or from the parquet rows parquet_rows[name]
  attribute_names: list[str] | None
  attribute_rows: dict[str, list[str]]  # name -> raw values, validated per image
  partition_rows: dict[str, list[str]] | None  # name -> raw values; None: no listing
  is_celeba: bool  # official names: the image size is checked
  fingerprint: str


def _is_image_name(name: str) -> bool:
  return name.lower().endswith(IMAGE_SUFFIXES) and not Path(name).name.startswith(".")


def _is_parquet_name(name: str) -> bool:
  return name.lower().endswith(".parquet") and not name.startswith(".")


def _listing_rows(text: str, is_csv: bool) -> Iterator[list[str]]:
  """Fields of each non-empty line, one line at a time; CRLF or LF line ends."""
  lines = (line.rstrip("\r\n") for line in io.StringIO(text, newline=""))
  rows = csv.reader(lines) if is_csv else (line.split() for line in lines)
  return (row for row in rows if row)


def _rows_of(rows: Iterator[list[str]], names: set[str]) -> dict[str, list[str]]:
  """The rows of the images in `names`: a full listing beside a few images is mostly
  rows of images that are not there, and is not held."""
  return {row[0]: row[1:] for row in rows if row[0] in names}


def _parse_attributes(text: str, is_csv: bool, file_name: str, names: set[str]
                      ) -> tuple[list[str], dict[str, list[str]]]:
  """Attribute names and the raw row of each image in `names`, from the official txt or
  Kaggle csv."""
  rows = _listing_rows(text, is_csv)
  # The txt starts with a count line, then the names; the csv's header names the id column.
  if not is_csv:
    next(rows, None)
  header = next(rows, [])[1 if is_csv else 0:]
  if not header:
    raise PrepareError(f"--src {file_name}: expected a line of attribute names, found none")
  return header, _rows_of(rows, names)


def _parse_partition(text: str, is_csv: bool, names: set[str]) -> dict[str, list[str]]:
  rows = _listing_rows(text, is_csv)
  if is_csv:
    next(rows, None)
  return _rows_of(rows, names)


def _find_listing(folders: list[Path], archive: zipfile.ZipFile | None,
                  archive_names: dict[str, str], stem: str) -> tuple[str, bool, str] | None:
  """(text, is_csv, where) of list_*.txt or its Kaggle list_*.csv twin, if there is one."""
  for suffix in (".txt", ".csv"):
    for folder in folders:
      path = folder / f"{stem}{suffix}"
      if path.is_file():
        return _listing_text(path.read_bytes(), str(path)), suffix == ".csv", str(path)
    if archive is not None and f"{stem}{suffix}" in archive_names:
      member = archive_names[f"{stem}{suffix}"]
      return _listing_text(archive.read(member), member), suffix == ".csv", member
  return None


def _listing_text(data: bytes, where: str) -> str:
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as error:
    raise PrepareError(f"--src {where} is not a text listing (byte {error.start} is not UTF-8); "
                       f"expected CelebA's list_*.txt or Kaggle's list_*.csv") from None


def _check_unique_names(src: Path, paths: list[str]) -> None:
  """Images are known by file name (as in the listings), so two must not share one."""
  by_name: dict[str, str] = {}
  for path in paths:
    name = Path(path).name
    if name in by_name:
      raise PrepareError(f"--src {src} holds two images named {name} ({by_name[name]} and "
                         f"{path}); expected unique file names")
    by_name[name] = path


def scan_source(src: Path) -> SourceImages:
  """Finds the images and listing files of --src (zip, image folder or its parent), or the
  parquet files that it is or holds."""
  if not src.exists():
    raise PrepareError(f"--src {src} does not exist; expected img_align_celeba.zip, "
                       f"a folder of images, the folder holding them, or parquet files")
  archive = None
  if src.is_file():
    if _is_parquet_name(src.name):
      return _scan_parquet(src, [src])
    if not zipfile.is_zipfile(src):
      raise PrepareError(f"--src {src} is neither a zip file, a parquet file nor a folder")
    zip_path, folders = src, [src.parent]
  else:
    found = [p for p in src.rglob("*") if p.is_file()]
    image_files = sorted(p for p in found if _is_image_name(p.name))
    zips = sorted(src.glob("*.zip"))
    parquet_files = sorted(p for p in found if _is_parquet_name(p.name))
    if parquet_files and (image_files or zips):
      # Which one the user meant cannot be told, and neither is a subset of the other.
      raise PrepareError(f"--src {src} holds both parquet files ({parquet_files[0]}) and "
                         f"images ({(image_files or zips)[0]}); expected one kind: make --src "
                         f"the folder of either")
    if parquet_files:
      return _scan_parquet(src, parquet_files)
    zip_path = zips[0] if not image_files and zips else None
    # Listings sit beside the image folder, which Kaggle nests one level deeper, whether
    # --src names the folder holding the listings or the image folder itself.
    parents = sorted({p.parent for p in image_files} | {p.parent.parent for p in image_files})
    folders = [src, *parents, src.parent, src.parent.parent]
  archive_names: dict[str, str] = {}
  if zip_path is not None:
    archive = zipfile.ZipFile(zip_path)
    infos = [i for i in archive.infolist() if not i.is_dir()]
    archive_names = {Path(i.filename).name: i.filename for i in infos}
    image_sizes = {i.filename: i.file_size for i in infos if _is_image_name(i.filename)}
  else:
    image_sizes = {str(p): p.stat().st_size for p in image_files}
  try:
    _check_unique_names(src, list(image_sizes))
    members = {Path(path).name: path for path in image_sizes}
    if not members:
      raise PrepareError(f"--src {src} holds no images (.jpg, .jpeg or .png) or parquet files")
    attributes = _find_listing(folders, archive, archive_names, "list_attr_celeba")
    partition = _find_listing(folders, archive, archive_names, "list_eval_partition")
  finally:
    if archive is not None:
      archive.close()

  names = sorted(members)
  digest = hashlib.sha256()
  for name in names:
    digest.update(f"{name}\t{image_sizes[members[name]]}\n".encode())
  attribute_names, attribute_rows = None, {}
  if attributes is not None:
    digest.update(attributes[0].encode())
    attribute_names, attribute_rows = _parse_attributes(*attributes, set(names))
  partition_rows = None
  if partition is not None:
    digest.update(partition[0].encode())
    partition_rows = _parse_partition(*partition[:2], set(names))
  return SourceImages(
      names=names, zip_path=zip_path, members=members, parquet_rows={},
      attribute_names=attribute_names, attribute_rows=attribute_rows,
      partition_rows=partition_rows, is_celeba=all(_CELEBA_NAME.match(n) for n in names),
      fingerprint=digest.hexdigest())


def split_of(source: SourceImages, name: str) -> str:
  """The split of image `name`; ValueError when the partition listing lacks a valid row."""
  if source.partition_rows is None:
    return "train"
  values = source.partition_rows.get(name)
  if values is None:
    raise ValueError("no partition row")
  if values not in (["0"], ["1"], ["2"]):
    raise ValueError(f"malformed partition row {' '.join(values)!r}, expected 0, 1 or 2")
  return SPLITS[int(values[0])]


# The header of list_attr_celeba.txt: a parquet source's attribute columns, in this order.
CELEBA_ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")
# Hugging Face names a split's files after it: train-00000-of-00003.parquet.
_PARQUET_SPLIT = re.compile(r"(train|valid|validation|test)[-_.]")
_SPLIT_OF_PREFIX = {"train": "train", "valid": "valid", "validation": "valid", "test": "test"}
# An attribute value as the listings write it: 1 present; 0, -1 (or False) absent. True and
# False look up as 1 and 0. Other values (2, a null) keep their own text, which
# `parse_attribute_row` rejects, so their image is skipped as for a malformed listing row.
_ATTRIBUTE_TEXT = {1: "1", 0: "-1", -1: "-1"}


@dataclasses.dataclass(frozen=True)
class _ParquetFile:
  """One parquet file of --src as scanned: row locations and labels, no image bytes."""

  where: str  # its path under --src
  split: str
  rows: list[ParquetRow]
  image_paths: list[str | None]
  attributes: dict[str, list[str]]  # CelebA's attribute columns it has, as listing text
  row_group_sizes: list[tuple[int, int]]  # rows and image column bytes, from the footer


def _import_pyarrow(src: Path) -> types.ModuleType:
  """pyarrow with its parquet reader: an optional dependency, that only parquet needs."""
  try:
    import pyarrow.parquet  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise PrepareError(f'--src {src}: reading parquet files needs pyarrow: '
                       f'pip install -e ".[parquet]"') from None
  return pyarrow


def _split_of_parquet_file(path: Path) -> str:
  """The split that the file's name starts with; train, as without a partition, if none."""
  match = _PARQUET_SPLIT.match(path.name)
  return _SPLIT_OF_PREFIX[match.group(1)] if match else "train"


def _field_type(pyarrow: types.ModuleType, struct, name: str):
  """The type of field `name` of a struct type; None when it has none (or is no struct)."""
  if not pyarrow.types.is_struct(struct) or struct.get_field_index(name) < 0:
    return None
  return struct.field(name).type


def _check_columns(pyarrow: types.ModuleType, path: Path, schema) -> None:
  """PrepareError unless `schema` has Hugging Face's image column and CelebA's attribute
  columns (those it has) hold bools or integers."""
  image = schema.field("image").type if "image" in schema.names else None
  if image is None or _field_type(pyarrow, image, "bytes") not in (pyarrow.binary(),
                                                                   pyarrow.large_binary()):
    found = (f"its image column is {image}" if image is not None
             else f"its columns: {', '.join(schema.names)}")
    raise PrepareError(f"--src {path} has no image column of {{bytes, path}} structs "
                       f"(Hugging Face's Image feature); {found}")
  for field in schema:
    if field.name in CELEBA_ATTRIBUTE_NAMES and not (pyarrow.types.is_boolean(field.type) or
                                                     pyarrow.types.is_integer(field.type)):
      raise PrepareError(f"--src {path}: column {field.name} is {field.type}; expected an "
                         f"attribute as bools or integers (1 present; 0 or -1 absent)")


def _row_group_sizes(metadata) -> list[tuple[int, int]]:
  """Rows and image column bytes of each row group: from the footer, so they cost no read."""
  sizes = []
  for index in range(metadata.num_row_groups):
    group = metadata.row_group(index)
    image_bytes = sum(group.column(c).total_uncompressed_size for c in range(group.num_columns)
                      if group.column(c).path_in_schema.startswith("image."))
    sizes.append((group.num_rows, image_bytes))
  return sizes


def _scan_parquet_file(pyarrow: types.ModuleType, path: Path, where: str) -> _ParquetFile:
  """Everything of one file but its image bytes; PrepareError naming it when it is none
  of Hugging Face's image tables."""
  try:
    with pyarrow.parquet.ParquetFile(path) as parquet:
      schema, metadata = parquet.schema_arrow, parquet.metadata
      _check_columns(pyarrow, path, schema)
      has_paths = _field_type(pyarrow, schema.field("image").type, "path") in (
          pyarrow.string(), pyarrow.large_string())
      attribute_names = [name for name in CELEBA_ATTRIBUTE_NAMES if name in schema.names]
      table = parquet.read(columns=(["image.path"] if has_paths else []) + attribute_names)
  except (OSError, pyarrow.ArrowException) as error:
    raise PrepareError(f"--src {path} is not a readable parquet file "
                       f"({files.one_line(error)})") from None
  sizes = _row_group_sizes(metadata)
  images = table.column("image").to_pylist() if has_paths else [None] * metadata.num_rows
  return _ParquetFile(
      where=where, split=_split_of_parquet_file(path),
      rows=[ParquetRow(path, group, row) for group, (count, _) in enumerate(sizes)
            for row in range(count)],
      image_paths=[image and image["path"] for image in images],
      attributes={name: [_ATTRIBUTE_TEXT.get(value, str(value))
                         for value in table.column(name).to_pylist()]
                  for name in attribute_names},
      row_group_sizes=sizes)


def _parquet_image_names(parquet_files: list[_ParquetFile]) -> list[list[str]]:
  """The name of each row of each file.

  The file names of the images' paths when every row has one, they are unique, and each
  split's files (in order) hold them sorted; else the file's path and the row's index
  (data/train-00000-of-00003.parquet:00042). Either way the sorted names of a split follow
  the rows' order, so that `_read_parquet_images` reads each row group once.
  """
  by_path = [[path and Path(path).name for path in f.image_paths] for f in parquet_files]
  names = [name for file_names in by_path for name in file_names]
  if None not in names and len(set(names)) == len(names):
    in_order = [[name for f, file_names in zip(parquet_files, by_path) if f.split == split
                 for name in file_names] for split in SPLITS]
    if all(split_names == sorted(split_names) for split_names in in_order):
      return by_path
  return [[f"{f.where}:{index:0{len(str(len(f.rows)))}d}" for index in range(len(f.rows))]
          for f in parquet_files]


def _scan_parquet(src: Path, paths: list[Path]) -> SourceImages:
  """The images of parquet files in the layout of Hugging Face's CelebA datasets.

  Each file is a table with an `image` column of {bytes, path} structs and, optionally,
  any of CelebA's 40 attributes as columns of its names: bools, 0/1 or -1/+1 integers
  (other columns are ignored). A file's split is the one its name starts with (train,
  valid or validation, test), else train. Only where each image is is kept, for
  `_read_parquet_images`: the bytes of CelebA take 1.4 GB.

  The fingerprint covers each file's path, split, and rows and image bytes per row group
  (from the footer: no image is read), and each row's name and attribute values.
  """
  pyarrow = _import_pyarrow(src)
  root = src if src.is_dir() else src.parent
  parquet_files = [_scan_parquet_file(pyarrow, path, path.relative_to(root).as_posix())
                   for path in paths]
  attribute_names = list(parquet_files[0].attributes)
  for f in parquet_files:
    if list(f.attributes) != attribute_names:
      differing = ", ".join(sorted(set(f.attributes) ^ set(attribute_names)))
      raise PrepareError(f"--src {src}: {parquet_files[0].where} and {f.where} have different "
                         f"attribute columns ({differing} in only one); expected the same "
                         f"columns in every file")
  parquet_rows: dict[str, ParquetRow] = {}
  attribute_rows: dict[str, list[str]] = {}
  partition_rows: dict[str, list[str]] = {}
  digest = hashlib.sha256(f"{' '.join(attribute_names)}\n".encode())
  for f, names in zip(parquet_files, _parquet_image_names(parquet_files)):
    partition = [str(SPLITS.index(f.split))]  # as list_eval_partition.txt; one for all rows
    digest.update(f"{f.where}\t{f.split}\t{f.row_group_sizes}\n".encode())
    for index, (name, row) in enumerate(zip(names, f.rows)):
      parquet_rows[name], partition_rows[name] = row, partition
      values = [f.attributes[attribute][index] for attribute in attribute_names]
      if attribute_names:
        attribute_rows[name] = values
      digest.update(f"{name}\t{' '.join(values)}\n".encode())
  if not parquet_rows:
    raise PrepareError(f"--src {src} holds no images: its parquet files have no rows")
  names = sorted(parquet_rows)
  return SourceImages(
      names=names, zip_path=None, members={}, parquet_rows=parquet_rows,
      attribute_names=attribute_names or None, attribute_rows=attribute_rows,
      partition_rows=partition_rows, is_celeba=all(_CELEBA_NAME.match(n) for n in names),
      fingerprint=digest.hexdigest())


# ----------------------------------------------------------------------------- processing


def crop_and_resize(image: Image.Image, crop: int, resolution: int) -> np.ndarray:
  """Centre square crop of `crop` pixels (at most the short side), Lanczos resize."""
  width, height = image.size
  side = min(crop, width, height)
  left, top = (width - side) // 2, (height - side) // 2
  square = image.crop((left, top, left + side, top + side))
  return np.asarray(square.resize((resolution, resolution), Image.Resampling.LANCZOS))


# Modes by how they become 8-bit RGB. Any other (F, LAB...) comes only from a file of
# another kind under a .png or .jpg name, and is skipped.
_OPAQUE_MODES = ("1", "L", "P", "RGB", "CMYK", "YCbCr")
_ALPHA_MODES = ("LA", "PA", "RGBA")
# 16-bit grey; older Pillow releases open 16-bit grey PNGs as mode I (32-bit).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _eight_bit_grey(image: Image.Image) -> Image.Image:
  """A 16-bit grey image as L, or LA when it has a transparent value (PNG's tRNS)."""
  values = np.asarray(image)
  if values.min() < 0 or values.max() > 0xFFFF:
    raise ValueError(f"mode {image.mode} values {values.min()}..{values.max()}, expected "
                     f"16-bit values 0..65535")
  # The high byte (65535 -> 255): Pillow's own conversion clips at 255 instead, which
  # turns a 16-bit picture white.
  grey = Image.fromarray((values >> 8).astype(np.uint8))
  if "transparency" not in image.info:
    return grey
  opaque = values != image.info["transparency"]
  return Image.merge("LA", (grey, Image.fromarray((opaque * 255).astype(np.uint8))))


def to_rgb(image: Image.Image) -> Image.Image:
  """A loaded image in 8-bit RGB; ValueError for a mode without a known 8-bit meaning.

  Transparent pixels are composited onto black, rounded: the colour stored under them is
  whatever the editor left there, not part of the picture.
  """
  if image.mode in _SIXTEEN_BIT_MODES:
    image = _eight_bit_grey(image)
  if image.mode in _ALPHA_MODES or (image.mode in _OPAQUE_MODES and
                                    "transparency" in image.info):
    rgba = np.asarray(image.convert("RGBA"), np.uint32)
    return Image.fromarray(((rgba[:, :, :3] * rgba[:, :, 3:] + 127) // 255).astype(np.uint8))
  if image.mode in _OPAQUE_MODES:
    return image.convert("RGB")
  raise ValueError(f"mode {image.mode}, expected one of "
                   f"{', '.join(_OPAQUE_MODES + _ALPHA_MODES + _SIXTEEN_BIT_MODES)}")


def parse_attribute_row(values: list[str] | None, num_attributes: int) -> bytes:
  """The attribute bytes of a record; ValueError when the row is missing or malformed."""
  if values is None:
    raise ValueError("no attribute row")
  if len(values) != num_attributes or any(v not in ("1", "-1") for v in values):
    raise ValueError(f"malformed attribute row ({len(values)} values, expected "
                     f"{num_attributes} of 1/-1)")
  return np.array([int(v) for v in values], np.int8).tobytes()


@dataclasses.dataclass(frozen=True)
class _Encoding:
  """How every image of a run becomes a record."""

  crop: int
  resolution: int
  num_attributes: int  # 0: the source has no attributes
  check_celeba_size: bool


def encode_record(data: bytes, attribute_values: list[str] | None, encoding: _Encoding) -> bytes:
  """The record of one image file; ValueError or OSError says why it cannot be one."""
  attribute_bytes = (parse_attribute_row(attribute_values, encoding.num_attributes)
                     if encoding.num_attributes else b"")
  with Image.open(io.BytesIO(data)) as image:
    image.load()  # decodes fully, so truncated files fail here
    width, height = image.size
    if encoding.check_celeba_size and image.size != CELEBA_SIZE:
      raise ValueError(f"size {width}x{height}, expected {CELEBA_SIZE[0]}x{CELEBA_SIZE[1]}")
    if min(width, height) < MIN_IMAGE_SIDE:
      raise ValueError(f"size {width}x{height}, expected >= {MIN_IMAGE_SIDE} px")
    pixels = crop_and_resize(to_rgb(image), encoding.crop, encoding.resolution)
  return pixels.tobytes() + attribute_bytes


# name, the file's bytes (or why it was not read), its raw attribute row
_Image = tuple[str, bytes | str, list[str] | None]
_Encoded = tuple[str, bytes | None, str]  # name, record or None, why it was skipped


# Set in each worker by `_start_worker`: the pool's flag to abandon its tasks (shared
# memory, not an Event: an Event's named semaphores outlive a process that ends by os._exit).
_abandon: ctypes.c_bool | None = None


def _encode_images(encoding: _Encoding, images: list[_Image]) -> list[_Encoded]:
  """Runs in a worker process; returns early, with what it has, once the pool is abandoned."""
  encoded = []
  for name, data, attribute_values in images:
    if _abandon is not None and _abandon.value:
      break
    if isinstance(data, str):
      encoded.append((name, None, data))
      continue
    try:
      encoded.append((name, encode_record(data, attribute_values, encoding), ""))
    except Image.UnidentifiedImageError:
      encoded.append((name, None, "not an image PIL can read"))
    # Decoders of corrupt files raise many kinds of errors; each only skips its image.
    except Exception as error:  # pylint: disable=broad-except
      encoded.append((name, None, files.one_line(error)))
  return encoded


def _start_worker(parent: int, abandon: ctypes.c_bool) -> None:
  """Pool initializer: keeps `abandon` for `_encode_images`, and ends this worker as soon as
  process `parent` (prepare) ends.

  Killed outright (SIGKILL, or a signal that nothing handles), prepare cannot stop its
  pool, and an orphaned worker would wait for work forever: it holds its task queue's
  write end.
  """
  global _abandon
  _abandon = abandon
  ended = os.pidfd_open(parent)

  def exit_when_ended() -> None:
    select.select([ended], [], [])  # a process's pidfd becomes readable when it ends
    os._exit(1)

  threading.Thread(target=exit_when_ended, daemon=True).start()


@contextlib.contextmanager
def _decoding_pool(num_workers: int) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
  """Worker processes that end with the block, however it ends, and with this process."""
  # Workers come from a fork server, not a fork of this process: a caller that has
  # started threads (JAX has) must not be forked.
  context = multiprocessing.get_context("forkserver")
  abandon = context.RawValue(ctypes.c_bool, False)
  pool = concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=context, initializer=_start_worker,
      initargs=(os.getpid(), abandon))
  try:
    yield pool
  except BaseException:
    # After an error or interrupt the images in hand are of no use: the workers drop their
    # tasks at the next image. (Terminating them instead can cut a result off halfway
    # through the pipe, and the pool's reader then waits for the rest forever.)
    abandon.value = True
    raise
  finally:
    pool.shutdown(cancel_futures=True)


def _encode_in_order(pool: concurrent.futures.Executor, encoding: _Encoding,
                     images: Iterator[_Image], max_tasks_in_flight: int) -> Iterator[_Encoded]:
  """Encodes `images` in the pool, yielding in input order with bounded memory."""
  pending: collections.deque[concurrent.futures.Future] = collections.deque()
  while chunk := list(itertools.islice(images, _IMAGES_PER_TASK)):
    pending.append(pool.submit(_encode_images, encoding, chunk))
    if len(pending) >= max_tasks_in_flight:
      yield from pending.popleft().result()
  while pending:
    yield from pending.popleft().result()


# ----------------------------------------------------------------------------- writing


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
  resolution: int = 64
  crop: int = 178
  num_shards: int = 8
  split: str = "all"

  def splits(self) -> tuple[str, ...]:
    return SPLITS if self.split == "all" else (self.split,)


@dataclasses.dataclass(frozen=True)
class _Shard:
  file_name: str
  image_names: list[str]


def _plan_shards(split: str, names: list[str], num_shards: int) -> list[_Shard]:
  """Contiguous runs of the sorted names; fewer shards than requested for tiny splits."""
  count = min(num_shards, len(names))
  return [_Shard(f"{split}-{k:05d}-of-{count:05d}.array_record", list(part))
          for k, part in enumerate(np.array_split(np.array(names, dtype=object), count))]


def _write_shard(path: Path, records: Iterable[bytes]) -> int:
  """Writes `records` under a temporary name, then renames; returns how many."""
  with files.atomic_path(path) as tmp:
    writer = ArrayRecordWriter(str(tmp), "group_size:1,uncompressed")
    count = 0
    for record in records:
      writer.write(record)
      count += 1
    writer.close()
  return count


class _Progress:
  """Images/s on stderr: rewritten in place on a terminal, a line every few seconds otherwise."""

  def __init__(self, total: int):
    self.total, self.done, self.start = total, 0, time.time()
    self._last = self.start
    self._tty = sys.stderr.isatty()

  def rate(self) -> float:
    return self.done / max(time.time() - self.start, 1e-9)

  def update(self) -> None:
    self.done += 1
    now = time.time()
    if now - self._last < (0.2 if self._tty else 5.0) and self.done < self.total:
      return
    self._last = now
    line = f"prepared {self.done}/{self.total} images, {self.rate():,.0f} images/s"
    print("\r" + line if self._tty else line, end="" if self._tty else "\n", file=sys.stderr,
          flush=True)


# A CelebA JPEG is about 10 KB and a 50-megapixel photo under 64 MB; a file (or a zip
# member, by the size it declares) beyond this is skipped unread.
MAX_IMAGE_FILE_BYTES = 64 * 2**20


def _too_large(size: int) -> str | None:
  """Why an image file of `size` bytes is skipped, if it is."""
  if size <= MAX_IMAGE_FILE_BYTES:
    return None
  return f"a file of {size:,} bytes, above the {MAX_IMAGE_FILE_BYTES:,} an image may take"


def _read_files(source: SourceImages, names: Iterable[str]) -> Iterator[tuple[str, bytes | str]]:
  """Each image's bytes (or why they were not read), from the zip or the folder."""
  archive = zipfile.ZipFile(source.zip_path) if source.zip_path else None
  try:
    for name in names:
      member = source.members[name]
      size = archive.getinfo(member).file_size if archive else Path(member).stat().st_size
      reason = _too_large(size)  # read whole, a larger file would take the memory it declares
      yield name, reason or (archive.read(member) if archive else Path(member).read_bytes())
  finally:
    if archive is not None:
      archive.close()


def _read_parquet_images(source: SourceImages, names: Iterable[str]
                         ) -> Iterator[tuple[str, bytes | str]]:
  """Each image's bytes (or why there are none), holding one row group's at a time: names
  come in row order (see `_parquet_image_names`), so each group is read once."""
  import pyarrow.parquet  # pylint: disable=g-import-not-at-top  (optional; scan_source checked)

  def row_group(name: str) -> tuple[Path, int]:
    return source.parquet_rows[name].path, source.parquet_rows[name].row_group

  with contextlib.ExitStack() as stack:
    opened = {}  # parquet files by path, each parsed once
    for (path, group), group_names in itertools.groupby(names, key=row_group):
      if path not in opened:
        opened[path] = stack.enter_context(pyarrow.parquet.ParquetFile(path))
      images = opened[path].read_row_group(group, columns=["image"]).column("image")
      for name in group_names:
        data = (images[source.parquet_rows[name].row].as_py() or {}).get("bytes")
        if data is None:
          yield name, "no image bytes"
        else:
          yield name, _too_large(len(data)) or data


def _read_images(source: SourceImages, shards: list[_Shard]) -> Iterator[_Image]:
  names = itertools.chain.from_iterable(s.image_names for s in shards)
  read = _read_parquet_images if source.parquet_rows else _read_files
  for name, data in read(source, names):
    yield name, data, source.attribute_rows.get(name)


def _records_of_shard(encoded: Iterator[_Encoded], shard: _Shard, skipped: list[list[str]],
                      progress: _Progress) -> Iterator[bytes]:
  """The records of `shard` from the ordered stream; its failures go to `skipped`."""
  for name, record, reason in itertools.islice(encoded, len(shard.image_names)):
    progress.update()
    if record is None:
      skipped.append([name, reason])
    else:
      yield record


def _check_out_dir(out: Path, expected: dict, own_names: set[str]) -> None:
  """Refuses an --out that holds anything but this tool's output for the `expected` flags.

  metadata.json or the state file, written before anything else, marks the output of an
  earlier run; beside one, only `own_names` and their temporary names may be. Without
  one, only temporary names may: a run killed while writing its first state file.
  """
  if out.exists() and not out.is_dir():
    raise PrepareError(f"--out {out} is a file; expected a directory")
  markers = [out / name for name in ("metadata.json", _STATE_FILE) if (out / name).is_file()]
  for path in markers:
    try:
      found = json.loads(path.read_text())
    except ValueError:
      found = None
    if not isinstance(found, dict):
      raise PrepareError(f"--out {out} holds a {path.name} this tool did not write (not a "
                         f"JSON object); use an empty --out")
    differing = sorted(k for k in expected if found.get(k) != expected[k])
    if differing:
      changes = ", ".join(f"{k}: {found.get(k)!r} -> {expected[k]!r}" for k in differing)
      raise PrepareError(f"--out {out} holds shards of a different configuration "
                         f"({changes}); use an empty --out or the same flags")
  allowed = ({files.LOCK_NAME} | {files.temporary_name(name) for name in own_names}
             | (own_names if markers else set()))
  foreign = sorted(p.name for p in out.iterdir() if p.name not in allowed) if out.is_dir() else []
  if foreign:
    more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
    raise PrepareError(f"--out {out} holds files this tool did not write ({', '.join(foreign[:3])}"
                       f"{more}); expected a new or empty directory, or an earlier output of "
                       f"the same command")


def _no_usable_image(src: Path, skipped: list[list[str]]) -> PrepareError:
  reason, count = collections.Counter(reason for _, reason in skipped).most_common(1)[0]
  example = min(name for name, r in skipped if r == reason)
  return PrepareError(f"--src {src} has no usable image: all {len(skipped)} were skipped, "
                      f"{count} for {reason!r} (e.g. {example})")


def default_num_workers() -> int:
  return len(os.sched_getaffinity(0))


def output_identity(source_fingerprint: str, config: PrepareConfig) -> dict:
  """What an --out's state file and metadata.json record of the source and flags it was
  prepared from: an --out that records other values is not this output."""
  return {"format_version": FORMAT_VERSION, "resolution": config.resolution,
          "crop": config.crop, "source_fingerprint": source_fingerprint,
          "split": config.split, "num_shards": config.num_shards}


def prepare(src: Path, out: Path, config: PrepareConfig, num_workers: int | None = None) -> dict:
  """Writes the shards and metadata.json of `src` into `out`; returns the metadata.

  Restartable: each finished shard is recorded in a state file, so a re-run after an
  interruption only does the shards that are missing. PrepareError, with nothing written,
  when `out` holds other files or none of the images can be used.
  """
  if config.split not in ("all", *SPLITS):
    raise PrepareError(f"--split {config.split!r}: expected all, train, valid or test")
  if min(config.resolution, config.crop) < MIN_IMAGE_SIDE:
    raise PrepareError(f"--resolution {config.resolution} and --crop {config.crop} must be "
                       f">= {MIN_IMAGE_SIDE}")
  if config.num_shards < 1:
    raise PrepareError(f"--num_shards {config.num_shards}: expected at least 1")
  source = scan_source(src)
  identity = output_identity(source.fingerprint, config)
  names_by_split: dict[str, list[str]] = {s: [] for s in config.splits()}
  unsplit: list[list[str]] = []  # images without a usable partition row
  for name in source.names:
    try:
      split = split_of(source, name)
    except ValueError as error:
      unsplit.append([name, str(error)])
      continue
    if split in names_by_split:
      names_by_split[split].append(name)
  if not any(names_by_split.values()):
    raise PrepareError(f"--split {config.split}: --src {src} has no images in that split")
  shards_by_split = {s: _plan_shards(s, names, config.num_shards) if names else []
                     for s, names in names_by_split.items()}
  shard_names = [shard.file_name for shards in shards_by_split.values() for shard in shards]
  _check_out_dir(out, identity, {*_OUTPUT_FILES, *shard_names})
  if (out / "metadata.json").is_file():
    print(f"{out} is already prepared with these flags", file=sys.stderr)
    return load_metadata(out)

  created = not out.exists()
  out.mkdir(parents=True, exist_ok=True)
  # A second prepare into the same --out is refused while this one writes.
  with files.locked(out, "--out"):
    state_path = out / _STATE_FILE
    if state_path.is_file():
      state = json.loads(state_path.read_text())
    else:
      state = {**identity, "shards": {}}
      files.write_atomic(state_path, json.dumps(state).encode())
    pending = [shard for shards in shards_by_split.values() for shard in shards
               if not (shard.file_name in state["shards"] and (out / shard.file_name).is_file())]
    progress = _Progress(sum(len(s.image_names) for s in pending))
    encoding = _Encoding(crop=config.crop, resolution=config.resolution,
                         num_attributes=len(source.attribute_names or []),
                         check_celeba_size=source.is_celeba)
    num_workers = num_workers or default_num_workers()
    with _decoding_pool(num_workers) as pool:
      encoded = _encode_in_order(pool, encoding, _read_images(source, pending),
                                 max_tasks_in_flight=4 * num_workers)
      for shard in pending:
        skipped: list[list[str]] = []
        count = _write_shard(out / shard.file_name,
                             _records_of_shard(encoded, shard, skipped, progress))
        state["shards"][shard.file_name] = {"count": count, "skipped": skipped}
        files.write_atomic(state_path, json.dumps(state).encode())
    if sys.stderr.isatty() and pending:
      print(file=sys.stderr)

    skipped = unsplit + [entry for name in shard_names for entry in state["shards"][name]["skipped"]]
    if not any(state["shards"][name]["count"] for name in shard_names):
      # Empty shards are of no use, and would make this --out refuse a run on a mended --src.
      for name in (*shard_names, _STATE_FILE, files.LOCK_NAME):
        (out / name).unlink()
      if created:
        out.rmdir()
      raise _no_usable_image(src, skipped)
    metadata = {
        "format_version": FORMAT_VERSION, "resolution": config.resolution, "crop": config.crop,
        "resample": "lanczos", "attribute_names": source.attribute_names,
        "source_fingerprint": source.fingerprint, "split": config.split,
        "num_shards": config.num_shards, "splits": {}}
    for split, shards in shards_by_split.items():
      metadata["splits"][split] = {
          "count": sum(state["shards"][s.file_name]["count"] for s in shards),
          "shards": [s.file_name for s in shards]}
    skipped_text = "".join(f"{name}\t{reason}\n" for name, reason in sorted(skipped))
    files.write_atomic(out / "skipped.txt", skipped_text.encode())
    files.write_atomic(out / "metadata.json", (json.dumps(metadata, indent=2) + "\n").encode())
    state_path.unlink()
    written = sum(v["count"] for v in metadata["splits"].values())
    per_split = ", ".join(f"{s} {v['count']}" for s, v in metadata["splits"].items())
    print(f"wrote {written} images to {out} ({per_split}), skipped {len(skipped)} "
          f"(see skipped.txt), {progress.rate():,.0f} images/s", file=sys.stderr)
    return metadata
