"""CelebA (or any folder of faces) prepared once into ArrayRecord shards, and read back.

Prepared directory layout::

  DIR/metadata.json                           written last; its presence means "complete"
  DIR/{split}-{k:05d}-of-{n:05d}.array_record the records of one split, in image-name order
  DIR/skipped.txt                             images left out, one "name<TAB>reason" a line

Record format (no pickle): the image as raw uint8 bytes, row-major (H, W, 3) RGB with
H = W = resolution, followed by one signed byte (+1 or -1) per attribute in
`attribute_names` order (nothing when the source has no attributes). Every record of a
directory has the same length.

`metadata.json` holds: format_version, resolution, crop, resample ("lanczos"),
attribute_names (list or null), source_fingerprint (sha256 over the sorted image names
and byte sizes plus the attribute and partition files' bytes), and per split its count
and shard file names.

Preprocessing: centre square crop of `crop` pixels (clipped to the image), antialiased
Lanczos resize to `resolution`. Same input, same bytes, whatever the worker count.
"""

import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CELEBA_SIZE = (178, 218)  # width, height of every aligned-and-cropped CelebA image
_CELEBA_NAME = re.compile(r"^\d{6}\.jpg$")
_STATE_FILE = ".prepare_state.json"


class PrepareError(ValueError):
  """Bad flags or input: reported as one line, exit code 2, nothing written."""


def prepare_command(data_dir: str | Path) -> str:
  return f"python -m experiments.prepare_celeba --src /path/to/img_align_celeba.zip --out {data_dir}"


# ----------------------------------------------------------------------------- reading


def load_metadata(data_dir: str | Path) -> dict:
  """metadata.json of a prepared directory, or a ValueError naming the prepare command."""
  data_dir = Path(data_dir)
  path = data_dir / "metadata.json"
  if not path.is_file():
    raise ValueError(f"data.dir {data_dir} holds no prepared shards (no metadata.json); "
                     f"create them with: {prepare_command(data_dir)}")
  metadata = json.loads(path.read_text())
  if metadata.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"data.dir {data_dir} was prepared in format version "
                     f"{metadata.get('format_version')}, this version reads {FORMAT_VERSION}; "
                     f"prepare it again with: {prepare_command(data_dir)}")
  return metadata


class PreparedImages:
  """Random-access uint8 (R, R, 3) images of one split, for grain."""

  def __init__(self, data_dir: str | Path, split: str = "train"):
    from grain import sources  # pylint: disable=g-import-not-at-top

    self.data_dir = Path(data_dir)
    self.split = split
    metadata = load_metadata(self.data_dir)
    if split not in metadata["splits"] or not metadata["splits"][split]["count"]:
      raise ValueError(f"data.dir {data_dir} has no images in split {split!r}; it has "
                       f"{sorted(s for s, v in metadata['splits'].items() if v['count'])}")
    paths = [self.data_dir / name for name in metadata["splits"][split]["shards"]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
      raise ValueError(f"data.dir {data_dir} lacks shards {missing}; prepare it again with: "
                       f"{prepare_command(data_dir)}")
    self.resolution = metadata["resolution"]
    self.attribute_names = metadata["attribute_names"] or []
    self._image_bytes = self.resolution * self.resolution * 3
    self._records = sources.ArrayRecordDataSource([str(p) for p in paths])

  def __len__(self) -> int:
    return len(self._records)

  def _decode_image(self, record: bytes) -> np.ndarray:
    pixels = np.frombuffer(record, np.uint8, count=self._image_bytes)
    return pixels.reshape(self.resolution, self.resolution, 3)

  def __getitem__(self, index: int) -> np.ndarray:
    return self._decode_image(self._records[index])

  def attributes(self, index: int) -> np.ndarray:
    """int8 (+1/-1) attributes of image `index`, in `attribute_names` order."""
    return np.frombuffer(self._records[index], np.int8, offset=self._image_bytes).copy()

  def __repr__(self) -> str:
    return f"PreparedImages({str(self.data_dir)!r}, split={self.split!r}, n={len(self)})"


# ----------------------------------------------------------------------------- source


@dataclasses.dataclass(frozen=True)
class SourceImages:
  """What --src holds: images by name, and optional attributes and partition."""

  names: list[str]  # sorted base names
  zip_path: Path | None  # images come from this zip's members...
  members: dict[str, str]  # ...named members[name], or from files members[name]
  attribute_names: list[str] | None
  attribute_rows: dict[str, list[str]]  # name -> raw values, validated per image later
  partition: dict[str, str]  # name -> split
  is_celeba: bool  # official names: size and attribute rows are checked
  fingerprint: str


def _is_image_name(name: str) -> bool:
  return name.lower().endswith(IMAGE_SUFFIXES) and not Path(name).name.startswith(".")


def _parse_attributes_txt(text: str) -> tuple[list[str], dict[str, list[str]]]:
  lines = text.replace("\r\n", "\n").split("\n")
  names = lines[1].split()
  rows = {}
  for line in lines[2:]:
    fields = line.split()
    if fields:
      rows[fields[0]] = fields[1:]
  return names, rows


def _parse_attributes_csv(text: str) -> tuple[list[str], dict[str, list[str]]]:
  reader = csv.reader(io.StringIO(text))
  header = next(reader)
  return header[1:], {row[0]: row[1:] for row in reader if row}


def _parse_partition(text: str, is_csv: bool) -> dict[str, str]:
  partition = {}
  lines = text.replace("\r\n", "\n").split("\n")[1 if is_csv else 0:]
  for line in lines:
    fields = line.replace(",", " ").split()
    if len(fields) == 2 and fields[1] in ("0", "1", "2"):
      partition[fields[0]] = SPLITS[int(fields[1])]
  return partition


def _find_listing(folders: list[Path], archive_names: dict[str, str], stem: str,
                  archive: zipfile.ZipFile | None) -> tuple[str, bool] | None:
  """Text of list_*.txt or its Kaggle list_*.csv twin, from the folders or the zip."""
  for suffix in (".txt", ".csv"):
    for folder in folders:
      path = folder / f"{stem}{suffix}"
      if path.is_file():
        return path.read_text(encoding="utf-8"), suffix == ".csv"
    if archive is not None and f"{stem}{suffix}" in archive_names:
      return archive.read(archive_names[f"{stem}{suffix}"]).decode("utf-8"), suffix == ".csv"
  return None


def scan_source(src: Path) -> SourceImages:
  """Finds the images and listing files of --src (zip, image folder or its parent)."""
  if not src.exists():
    raise PrepareError(f"--src {src} does not exist; expected img_align_celeba.zip, "
                       f"a folder of images, or the folder holding them")
  archive = None
  if src.is_file():
    if not zipfile.is_zipfile(src):
      raise PrepareError(f"--src {src} is neither a zip file nor a folder")
    zip_path, folders = src, [src.parent]
  else:
    image_files = sorted(p for p in src.rglob("*") if p.is_file() and _is_image_name(p.name))
    zips = sorted(src.glob("*.zip"))
    zip_path = zips[0] if not image_files and zips else None
    folders = [src, *{p.parent for p in image_files}, *{p.parent.parent for p in image_files}]
  archive_names: dict[str, str] = {}
  if zip_path is not None:
    archive = zipfile.ZipFile(zip_path)
    infos = [i for i in archive.infolist() if not i.is_dir()]
    archive_names = {Path(i.filename).name: i.filename for i in infos}
    members = {n: f for n, f in archive_names.items() if _is_image_name(n)}
    sizes = {Path(i.filename).name: i.file_size for i in infos}
  else:
    members = {p.name: str(p) for p in image_files}
    sizes = {p.name: p.stat().st_size for p in image_files}
  try:
    if not members:
      raise PrepareError(f"--src {src} holds no images (.jpg, .jpeg or .png)")
    attributes = _find_listing(folders, archive_names, "list_attr_celeba", archive)
    partition = _find_listing(folders, archive_names, "list_eval_partition", archive)
  finally:
    if archive is not None:
      archive.close()

  digest = hashlib.sha256()
  for name in sorted(members):
    digest.update(f"{name}\t{sizes[name]}\n".encode())
  attribute_names, attribute_rows = None, {}
  if attributes is not None:
    digest.update(attributes[0].encode())
    parse = _parse_attributes_csv if attributes[1] else _parse_attributes_txt
    attribute_names, attribute_rows = parse(attributes[0])
  partition_map = {}
  if partition is not None:
    digest.update(partition[0].encode())
    partition_map = _parse_partition(*partition)
  names = sorted(members)
  return SourceImages(
      names=names, zip_path=zip_path, members=members, attribute_names=attribute_names,
      attribute_rows=attribute_rows, partition=partition_map,
      is_celeba=all(_CELEBA_NAME.match(n) for n in names), fingerprint=digest.hexdigest())


# ----------------------------------------------------------------------------- processing


def crop_and_resize(image: Image.Image, crop: int, resolution: int) -> np.ndarray:
  """Centre square crop of `crop` pixels (at most the short side), Lanczos resize."""
  width, height = image.size
  side = min(crop, width, height)
  left, top = (width - side) // 2, (height - side) // 2
  square = image.crop((left, top, left + side, top + side))
  return np.asarray(square.resize((resolution, resolution), Image.Resampling.LANCZOS))


def parse_attribute_row(values: list[str] | None, num_attributes: int) -> bytes:
  """The attribute bytes of a record; ValueError when the row is missing or malformed."""
  if values is None:
    raise ValueError("no attribute row")
  if len(values) != num_attributes or any(v not in ("1", "-1") for v in values):
    raise ValueError(f"malformed attribute row ({len(values)} values, expected "
                     f"{num_attributes} of 1/-1)")
  return np.array([int(v) for v in values], np.int8).tobytes()


@dataclasses.dataclass(frozen=True)
class _Task:
  name: str
  data: bytes
  attribute_values: list[str] | None
  num_attributes: int  # 0: the source has no attributes
  check_celeba_size: bool
  crop: int
  resolution: int


def _encode(task: _Task) -> tuple[str, bytes | None, str]:
  """(name, record, "") or (name, None, why it was skipped). Runs in a worker process."""
  try:
    attribute_bytes = (parse_attribute_row(task.attribute_values, task.num_attributes)
                       if task.num_attributes else b"")
    with Image.open(io.BytesIO(task.data)) as image:
      image.load()  # decodes fully, so truncated files fail here
      if task.check_celeba_size and image.size != CELEBA_SIZE:
        return task.name, None, f"size {image.size[0]}x{image.size[1]}, expected 178x218"
      if min(image.size) < 8:
        return task.name, None, f"size {image.size[0]}x{image.size[1]}, expected >= 8 px"
      pixels = crop_and_resize(image.convert("RGB"), task.crop, task.resolution)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    return task.name, None, str(error).splitlines()[0] or type(error).__name__
  return task.name, pixels.tobytes() + attribute_bytes, ""


# ----------------------------------------------------------------------------- writing


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
  resolution: int = 64
  crop: int = 178
  num_shards: int = 8
  split: str = "all"

  def splits(self) -> tuple[str, ...]:
    return SPLITS if self.split == "all" else (self.split,)


def _shard_names(split: str, num_shards: int) -> list[str]:
  return [f"{split}-{k:05d}-of-{num_shards:05d}.array_record" for k in range(num_shards)]


def _write_atomic(path: Path, data: bytes) -> None:
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _write_shard(path: Path, records: list[bytes]) -> None:
  from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=g-import-not-at-top

  tmp = path.with_name(f".{path.name}.tmp")
  # One record per group, uncompressed: each image is read with no decompression,
  # which keeps random reads fast (pixels compress poorly anyway).
  writer = ArrayRecordWriter(str(tmp), "group_size:1,uncompressed")
  for record in records:
    writer.write(record)
  writer.close()
  with open(tmp, "rb+") as f:
    os.fsync(f.fileno())
  os.replace(tmp, path)


class _Progress:
  """Images/s on stderr: rewritten in place on a terminal, a line every few seconds otherwise."""

  def __init__(self, total: int):
    self.total, self.done, self.start = total, 0, time.time()
    self._last = self.start

  def rate(self) -> float:
    return self.done / max(time.time() - self.start, 1e-9)

  def update(self, count: int) -> None:
    self.done += count
    now = time.time()
    tty = sys.stderr.isatty()
    if now - self._last < (0.2 if tty else 5.0) and self.done < self.total:
      return
    self._last = now
    line = f"prepared {self.done}/{self.total} images, {self.rate():,.0f} images/s"
    print("\r" + line if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)


def _split_of(source: SourceImages, name: str) -> str:
  return source.partition.get(name, "train") if source.partition else "train"


def _tasks(source: SourceImages, names: list[str], config: PrepareConfig) -> Iterator[_Task]:
  num_attributes = len(source.attribute_names or [])
  archive = zipfile.ZipFile(source.zip_path) if source.zip_path else None
  try:
    for name in names:
      member = source.members[name]
      data = archive.read(member) if archive else Path(member).read_bytes()
      yield _Task(name, data, source.attribute_rows.get(name), num_attributes,
                  source.is_celeba, config.crop, config.resolution)
  finally:
    if archive is not None:
      archive.close()


def _check_out_dir(out: Path, expected: dict) -> None:
  """Refuses an --out that holds shards of another configuration."""
  for name in ("metadata.json", _STATE_FILE):
    path = out / name
    if path.is_file():
      found = json.loads(path.read_text())
      differing = sorted(k for k in expected if found.get(k) != expected[k])
      if differing:
        raise PrepareError(f"--out {out} holds shards of a different configuration "
                           f"({', '.join(f'{k}: {found.get(k)!r} -> {expected[k]!r}' for k in differing)}); "
                           f"use an empty --out or the same flags")


def prepare(src: Path, out: Path, config: PrepareConfig, num_workers: int | None = None) -> dict:
  """Writes the shards and metadata.json of `src` into `out`; returns the metadata.

  Restartable: each finished shard is recorded in a state file, so a re-run after an
  interruption only does the shards that are missing.
  """
  if config.split not in ("all", *SPLITS):
    raise PrepareError(f"--split {config.split!r}: expected all, train, valid or test")
  if config.resolution < 8 or config.crop < 8:
    raise PrepareError(f"--resolution {config.resolution} and --crop {config.crop} must be >= 8")
  source = scan_source(src)
  identity = {"format_version": FORMAT_VERSION, "resolution": config.resolution,
              "crop": config.crop, "source_fingerprint": source.fingerprint,
              "split": config.split, "num_shards": config.num_shards}
  _check_out_dir(out, identity)
  if (out / "metadata.json").is_file():
    print(f"{out} is already prepared with these flags", file=sys.stderr)
    return load_metadata(out)
  out.mkdir(parents=True, exist_ok=True)
  state_path = out / _STATE_FILE
  state = json.loads(state_path.read_text()) if state_path.is_file() else {**identity, "shards": {}}

  by_split = {s: [n for n in source.names if _split_of(source, n) == s] for s in config.splits()}
  total = sum(len(v) for v in by_split.values())
  progress = _Progress(total)
  skipped: list[tuple[str, str]] = [tuple(x) for x in state.get("skipped", [])]
  with concurrent.futures.ProcessPoolExecutor(num_workers) as pool:
    for split, names in by_split.items():
      if not names:
        continue
      num_shards = min(config.num_shards, len(names))
      for shard_name, shard_names in zip(_shard_names(split, num_shards),
                                         np.array_split(np.array(names, dtype=object), num_shards)):
        if shard_name in state["shards"] and (out / shard_name).is_file():
          progress.update(len(shard_names))
          continue
        records = []
        for name, record, reason in pool.map(_encode, _tasks(source, list(shard_names), config),
                                             chunksize=32):
          if record is None:
            skipped.append((name, reason))
          else:
            records.append(record)
          progress.update(1)
        _write_shard(out / shard_name, records)
        state["shards"][shard_name] = len(records)
        state["skipped"] = skipped
        _write_atomic(state_path, json.dumps(state).encode())
  if sys.stderr.isatty():
    print(file=sys.stderr)

  metadata = {
      "format_version": FORMAT_VERSION, "resolution": config.resolution, "crop": config.crop,
      "resample": "lanczos", "attribute_names": source.attribute_names,
      "source_fingerprint": source.fingerprint, "split": config.split,
      "num_shards": config.num_shards, "splits": {}}
  for split, names in by_split.items():
    shards = _shard_names(split, min(config.num_shards, len(names))) if names else []
    metadata["splits"][split] = {"count": sum(state["shards"][s] for s in shards),
                                 "shards": shards}
  skipped_text = "".join(f"{name}\t{reason}\n" for name, reason in sorted(skipped))
  _write_atomic(out / "skipped.txt", skipped_text.encode())
  _write_atomic(out / "metadata.json", (json.dumps(metadata, indent=2) + "\n").encode())
  state_path.unlink()
  written = sum(v["count"] for v in metadata["splits"].values())
  per_split = ", ".join(f"{s} {v['count']}" for s, v in metadata["splits"].items())
  print(f"wrote {written} images to {out} ({per_split}), skipped {len(skipped)} "
        f"(see skipped.txt), {progress.rate():,.0f} images/s", file=sys.stderr)
  return metadata
