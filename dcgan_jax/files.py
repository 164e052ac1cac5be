"""Writing files so that a reader, or a later run, never sees half of one, and one
process at a time in a directory."""

import contextlib
import fcntl
import io
import json
import os
import re
import socket
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image


def temporary_name(name: str) -> str:
  """The name `atomic_path` writes `name` under before renaming it."""
  return f".{name}.tmp"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
  """A temporary name beside `path` to write to, where nothing is (a leftover, even a
  symbolic link planted there, is removed, not written through); when the block ends
  without an error, the file is synced to disk and renamed over `path` (a link at `path`
  is replaced, not followed). An interrupted write leaves the old file (or none), never a
  truncated one."""
  tmp = path.with_name(temporary_name(path.name))
  if os.path.lexists(tmp):
    os.unlink(tmp)
  yield tmp
  fd = os.open(tmp, os.O_RDWR | os.O_NOFOLLOW)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
  os.replace(tmp, path)


def write_atomic(path: Path, data: bytes) -> None:
  with atomic_path(path) as tmp:
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644),
                   "wb") as f:
      f.write(data)


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


LOCK_NAME = ".lock"


@contextlib.contextmanager
def locked(directory: Path, flag: str) -> Iterator[None]:
  """Holds DIR/.lock while this process writes DIR (the directory given as `flag`). A
  second process is refused at once, naming the holder; the lock is an flock, which the
  OS releases when its process dies, so a dead process's lock is simply taken over. The
  file stays, naming the last holder."""
  lock = directory / LOCK_NAME
  if lock.is_symlink() or lock.is_dir():  # a link would be written through
    kind = "a symbolic link" if lock.is_symlink() else "a directory"
    raise ValueError(f"{lock} is {kind}; remove it (the lock is a file of the directory's "
                     f"own)")
  fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
      raise ValueError(f"{flag} {directory} is in use by {holder}; wait for it to end or "
                       f"use another {flag}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)


def one_line(error: BaseException, limit: int = 200) -> str:
  """An error's text as one line of at most `limit` characters (its type's name if it has
  none), for messages that name a file and say what was wrong with it."""
  text = " ".join(str(error).split()) or type(error).__name__
  # tensorstore appends the whole store specification.
  text = re.split(r" See full TensorStore details| \[tensorstore_spec", text)[0]
  return text if len(text) <= limit else text[:limit - 3] + "..."
