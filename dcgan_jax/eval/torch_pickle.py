"""A restricted reader of `torch.save` files: a state dict of plain tensors, as numpy
arrays, without torch and without running any code the file could name.

Only the few names a state dict of tensors is made of resolve while unpickling (the
ordered dict, the tensor rebuild function, the storage types); anything else is refused.
"""

import collections
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}
# The legacy format starts with this number, pickled.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Storage:
  """A flat typed buffer, filled in when its bytes are read."""

  def __init__(self, dtype: np.dtype):
    self.dtype = np.dtype(dtype)
    self.data: np.ndarray | None = None

  def array(self) -> np.ndarray:
    if self.data is None:
      raise ValueError("the file holds no data for a storage it refers to")
    return self.data


class _PendingTensor:
  """A tensor whose storage may not have been read yet (the legacy format stores data last)."""

  def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...],
               stride: tuple[int, ...], *_unused: Any):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def materialise(self) -> np.ndarray:
    flat = self.storage.array()
    if 0 in self.size:
      return np.zeros(self.size, flat.dtype)
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    # as_strided does not check bounds: a corrupt file must not read past the buffer.
    if self.offset < 0 or min(self.stride, default=0) < 0 or last >= len(flat):
      raise ValueError("a tensor in the file reaches outside its storage")
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.size,
                                           [s * itemsize for s in self.stride], writeable=False)
    return np.array(view)


class _StateDictUnpickler(pickle.Unpickler):
  """Unpickles a saved torch state dict and nothing else: no torch, no arbitrary code.

  Only the names a state dict of plain tensors is made of resolve: the ordered dict, the
  tensor rebuild function and the storage types, each to a numpy stand-in.
  """

  def __init__(self, file: BinaryIO, storage: Callable[[tuple], _Storage]):
    super().__init__(file)
    self._storage = storage

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _PendingTensor
    if module == "torch" and name in _STORAGE_DTYPES:
      return _STORAGE_DTYPES[name]
    raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

  def persistent_load(self, pid: Any) -> _Storage:
    if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
    return self._storage(pid[1:])


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a `torch.save`d dict of tensors into numpy arrays, without importing torch.

  Handles both of torch.save's formats: the zip archive (torch >= 1.6: `*/data.pkl`
  plus one `*/data/<key>` member per storage) and the older single stream (pickled magic
  number, protocol and system info, the object, the storage keys, then each storage as
  an int64 element count followed by its bytes).
  """
  path = Path(path)
  if zipfile.is_zipfile(path):
    pending = _read_zip(path)
  else:
    with open(path, "rb") as f:
      pending = _read_legacy(f)
  return {key: tensor.materialise() for key, tensor in pending.items()}


def _read_zip(path: Path) -> dict[str, _PendingTensor]:
  with zipfile.ZipFile(path) as archive:
    pickle_name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
    if pickle_name is None:
      raise ValueError(f"{path} is a zip archive but not one written by torch.save")
    prefix = pickle_name[:-len("data.pkl")]
    byteorder = "<"
    if f"{prefix}byteorder" in archive.namelist():
      byteorder = "<" if archive.read(f"{prefix}byteorder") == b"little" else ">"
    storages: dict[str, _Storage] = {}

    def storage(pid: tuple) -> _Storage:
      dtype, key, _location, numel = pid
      if key not in storages:
        storages[key] = _Storage(dtype)
        storages[key].data = np.frombuffer(archive.read(f"{prefix}data/{key}"),
                                           np.dtype(dtype).newbyteorder(byteorder), numel)
      return storages[key]

    with archive.open(pickle_name) as f:
      return _tensors(_StateDictUnpickler(f, storage).load(), path)


def _read_legacy(f: BinaryIO) -> dict[str, _PendingTensor]:
  header = _StateDictUnpickler(f, _no_storage)
  if header.load() != _LEGACY_MAGIC:
    raise ValueError(f"{f.name} is neither a zip archive nor a legacy torch.save file")
  header.load()  # protocol version
  header.load()  # system info
  storages: dict[str, _Storage] = {}

  def storage(pid: tuple) -> _Storage:
    dtype, key, _location, _numel, view = pid
    if view is not None:
      # Only storages nested in others come as views; separately saved parameters never are.
      raise pickle.UnpicklingError(f"{f.name}: storage views are not supported")
    return storages.setdefault(key, _Storage(dtype))

  result = _StateDictUnpickler(f, storage).load()
  for key in _StateDictUnpickler(f, _no_storage).load():
    root = storages[key]
    numel = int(np.frombuffer(f.read(8), "<i8")[0])
    root.data = np.frombuffer(f.read(numel * root.dtype.itemsize), root.dtype, numel)
  return _tensors(result, Path(f.name))


def _no_storage(pid: tuple) -> _Storage:
  raise pickle.UnpicklingError(f"unexpected storage {pid!r} outside the state dict")


def _tensors(obj: Any, path: Path) -> dict[str, _PendingTensor]:
  if not isinstance(obj, dict) or not all(isinstance(v, _PendingTensor) for v in obj.values()):
    raise ValueError(f"{path} does not hold a state dict of tensors")
  return dict(obj)

