"""Writing files so that a reader, or a later run, never sees half of one."""

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def write_atomic(path: Path, data: bytes) -> None:
  """Writes to a temporary name beside `path`, syncs it to disk, then renames it over
  `path`: an interrupted write leaves the old file (or none), never a truncated one."""
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
  write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def png_bytes(image_HWC: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image_HWC).save(buffer, format="PNG")
  return buffer.getvalue()


def write_png(path: Path, image_HWC: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  write_atomic(path, png_bytes(image_HWC))


def write_npz(path: Path, **arrays: np.ndarray) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_atomic(path, buffer.getvalue())
