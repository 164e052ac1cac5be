"""A restricted reader of `torch.save` files: a state dict of plain tensors, as numpy
arrays, without torch and without running any code the file could name.

Only the few names a state dict of tensors is made of resolve while unpickling (the
ordered dict, the tensor rebuild function, the storage types), each to an inert stand-in;
anything else is refused. Nothing the file declares is trusted: every length in its
pickles, and every tensor's size, stride and offset, is checked against the bytes the
file really holds before anything that large is allocated, so a small crafted file cannot
exhaust memory. A file that is not such a state dict raises one ValueError naming it.
"""

import collections
import contextlib
import io
import math
import os
import pickle
import pickletools
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np


class _StorageType(NamedTuple):
  """A storage class the pickle names, as its dtype.

  Not callable, unlike numpy's scalar types, so the file cannot make numpy build arrays of
  its choosing through it.
  """

  dtype: np.dtype


_STORAGE_TYPES = {
    name: _StorageType(np.dtype(dtype)) for name, dtype in [
        ("FloatStorage", np.float32), ("DoubleStorage", np.float64), ("HalfStorage", np.float16),
        ("LongStorage", np.int64), ("IntStorage", np.int32)]
}
# The legacy format starts with this number, pickled.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# Opcodes that make the unpickler grow its memo to the index they name.
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
# What parsing a foreign or damaged file raises: the pickle documentation bounds what a
# stream can make the unpickler raise only by example, and zipfile adds its own.
_FOREIGN_FILE_ERRORS = (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                        KeyError, OverflowError, RuntimeError, pickle.UnpicklingError,
                        zipfile.BadZipFile)


# The pickle can pass what it builds to other opcodes, BUILD among them, which would
# overwrite a mutable object's checked fields: both stand-ins are tuples.
class _Storage(NamedTuple):
  """A storage as the pickle declares it; its bytes are read once its tensors are checked."""

  dtype: np.dtype
  key: str
  numel: int


class _Tensor(NamedTuple):
  """A tensor as the pickle declares it: which elements of a storage it is made of."""

  storage: _Storage
  offset: int
  size: tuple[int, ...]
  stride: tuple[int, ...]


# The tensors a file declares, checked, and a reader of their storages' data.
_Parsed = tuple[dict[str, _Tensor], Callable[[_Storage], np.ndarray]]


def _is_index(value: Any) -> bool:
  # torch writes int64s; a bool is an int too, but never one of them.
  return type(value) is int and 0 <= value < 2**63


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_unused: Any) -> _Tensor:
  """Stands in for torch's rebuild function, which the pickle calls with whatever it likes."""
  if not (isinstance(storage, _Storage) and _is_index(offset) and isinstance(size, tuple)
          and isinstance(stride, tuple) and len(size) == len(stride)
          and all(_is_index(n) for n in size + stride)):
    raise ValueError("a tensor with a malformed layout")
  return _Tensor(storage, offset, size, stride)


def _declared_storage(storage_type: Any, key: Any, numel: Any) -> _Storage:
  if not (isinstance(storage_type, _StorageType) and isinstance(key, str) and _is_index(numel)):
    raise ValueError("a malformed storage reference")
  return _Storage(storage_type.dtype, key, numel)


class _StateDictUnpickler(pickle.Unpickler):
  """Unpickles a saved torch state dict and nothing else: no torch, no arbitrary code.

  Only the names a state dict of plain tensors is made of resolve: the ordered dict, the
  tensor rebuild function and the storage types, each to an inert stand-in.
  """

  def __init__(self, file: BinaryIO, storage: Callable[[tuple], _Storage]):
    super().__init__(file)
    self._storage = storage

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor_v2
    if module == "torch" and name in _STORAGE_TYPES:
      return _STORAGE_TYPES[name]
    raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

  def persistent_load(self, pid: Any) -> _Storage:
    if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
    return self._storage(pid[1:])


def read_torch_state_dict(path: str | os.PathLike,
                          expected_shapes: Mapping[str, tuple[int, ...]] | None = None
                          ) -> dict[str, np.ndarray]:
  """Reads a `torch.save`d dict of tensors into numpy arrays, without importing torch.

  Handles both of torch.save's formats: the zip archive (torch >= 1.6: `*/data.pkl`
  plus one `*/data/<key>` member per storage) and the older single stream (pickled magic
  number, protocol and system info, the object, the storage keys, then each storage as
  an int64 element count followed by its bytes). A tensor named in `expected_shapes`
  with another shape is refused before any tensor's data is read; others are read as
  they are. A tensor is refused if it reaches outside its storage or holds more elements
  than its storage does (overlapping elements, such as `expand` leaves, would make a copy
  larger than the file), and so is a file whose tensors together hold more elements than
  its storages (many tensors viewing one storage). A missing file raises FileNotFoundError; any other file that
  is not such a state dict raises one ValueError naming it.
  """
  path = Path(path)
  with _foreign_file_errors(path):
    f = open(path, "rb")
  with f:
    with _foreign_file_errors(path):
      tensors, read_storage = _parse(f)
    for name, shape in (expected_shapes or {}).items():
      if name in tensors and tensors[name].size != tuple(shape):
        raise ValueError(f"{path} does not hold the weights expected: {name!r} has shape "
                         f"{tensors[name].size} where {tuple(shape)} is expected")
    storages = {tensor.storage.key: tensor.storage for tensor in tensors.values()}
    stored = sum(s.numel * s.dtype.itemsize for s in storages.values())
    copied = sum(math.prod(t.size) * t.storage.dtype.itemsize for t in tensors.values())
    if copied > stored:  # tensors sharing elements: their copies would outgrow the file
      raise ValueError(f"{path} is not a weights file this reader takes: its tensors would "
                       f"take {copied:,} bytes, more than the {stored:,} their storages hold")
    with _foreign_file_errors(path):
      return {name: _materialise(tensor, read_storage(tensor.storage))
              for name, tensor in tensors.items()}


@contextlib.contextmanager
def _foreign_file_errors(path: Path) -> Iterator[None]:
  """Turns what a foreign or damaged file makes the parsers raise into one ValueError."""
  try:
    yield
  except FileNotFoundError:
    raise
  except _FOREIGN_FILE_ERRORS as error:
    detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    # Names in the message come from the file, and may break the one line.
    raise ValueError(f"{path} is not a PyTorch weights file (torch.save zip archive): "
                     f"{' '.join(detail.splitlines())}") from error


def _parse(f: BinaryIO) -> _Parsed:
  head = f.read(2)
  if not head:
    raise ValueError("the file is empty")
  if head == b"PK":
    if not zipfile.is_zipfile(f):
      raise ValueError("a truncated or damaged zip archive")
    return _parse_zip(f)
  if head[:1] != b"\x80":  # PROTO, with which every pickle torch.save writes starts
    raise ValueError("neither a zip archive nor a legacy torch.save stream")
  f.seek(0)
  return _parse_legacy(f)


def _parse_zip(f: BinaryIO) -> _Parsed:
  archive_size = f.seek(0, os.SEEK_END)
  archive = zipfile.ZipFile(f)
  names = archive.namelist()
  members = set(names)
  pickle_name = next((n for n in names if n.endswith("data.pkl")), None)
  if pickle_name is None:
    raise ValueError("a zip archive without the data.pkl torch.save writes")
  prefix = pickle_name[:-len("data.pkl")]

  def member(name: str) -> zipfile.ZipInfo:
    if name not in members:
      raise ValueError(f"the archive has no {name}")
    info = archive.getinfo(name)
    # Stored members cannot inflate: nothing read from the archive outgrows the file.
    if info.compress_type != zipfile.ZIP_STORED:
      raise ValueError(f"{name} is compressed, which torch.save never does")
    if info.file_size != info.compress_size or info.header_offset + info.file_size > archive_size:
      raise ValueError(f"{name} claims more bytes than the archive holds")
    return info

  byteorder = "<"
  if f"{prefix}byteorder" in members:
    byteorder = "<" if archive.read(member(f"{prefix}byteorder")) == b"little" else ">"
  storages: dict[str, _Storage] = {}

  def storage(pid: tuple) -> _Storage:
    storage_type, key, _location, numel = pid
    declared = _declared_storage(storage_type, key, numel)
    size = member(f"{prefix}data/{key}").file_size
    if size != numel * declared.dtype.itemsize:
      raise ValueError(f"storage {key} declares {numel} elements but holds {size} bytes")
    return _same_storage(storages, declared)

  result = _load(io.BytesIO(archive.read(member(pickle_name))), storage)

  def read_storage(storage: _Storage) -> np.ndarray:
    data = archive.read(member(f"{prefix}data/{storage.key}"))
    return np.frombuffer(data, storage.dtype.newbyteorder(byteorder))

  return _tensors(result), read_storage


def _parse_legacy(f: BinaryIO) -> _Parsed:
  data = f.read()
  stream = io.BytesIO(data)
  if _load(stream, _no_storage) != _LEGACY_MAGIC:
    raise ValueError("a pickle, but not a torch.save file")
  _load(stream, _no_storage)  # protocol version
  _load(stream, _no_storage)  # system info
  storages: dict[str, _Storage] = {}

  def storage(pid: tuple) -> _Storage:
    storage_type, key, _location, numel, view = pid
    if view is not None:
      # Only storages nested in others come as views; separately saved parameters never are.
      raise ValueError("storage views are not supported")
    return _same_storage(storages, _declared_storage(storage_type, key, numel))

  result = _tensors(_load(stream, storage))
  keys = _load(stream, _no_storage)
  if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys)):
    raise ValueError("a malformed list of storages")
  offsets: dict[str, int] = {}
  for key in keys:
    if key not in storages:
      raise ValueError(f"data for storage {key}, which no tensor uses")
    count = stream.read(8)
    if len(count) != 8:
      raise ValueError(f"the stream ends before storage {key}")
    numel = int.from_bytes(count, "little", signed=True)
    if numel != storages[key].numel:
      raise ValueError(f"storage {key} declares {storages[key].numel} elements but the stream "
                       f"holds {numel}")
    offsets[key] = stream.tell()
    if stream.seek(numel * storages[key].dtype.itemsize, os.SEEK_CUR) > len(data):
      raise ValueError(f"the stream ends inside storage {key}")
  missing = sorted(storages.keys() - offsets.keys())
  if missing:
    raise ValueError(f"the file holds no data for storages {missing[:5]}")

  def read_storage(storage: _Storage) -> np.ndarray:
    return np.frombuffer(data, storage.dtype, storage.numel, offsets[storage.key])

  return result, read_storage


def _load(stream: io.BytesIO, storage: Callable[[tuple], _Storage]) -> Any:
  """Unpickles the next object in `stream`, once its opcodes are known to be well formed.

  The C unpickler trusts what a stream declares: it allocates a counted string before
  reading it, grows its memo to the index a PUT names, and misreads an opcode that runs
  past the end of its frame. pickletools checks each count against the bytes present;
  memo indices and frames are checked here.
  """
  start = stream.tell()
  frame_end = start
  for opcode, arg, position in pickletools.genops(stream):
    if position < frame_end < stream.tell() or (opcode.name == "FRAME" and position < frame_end):
      raise ValueError(f"an opcode at byte {position - start} runs past the end of its frame")
    if opcode.name == "FRAME":
      frame_end = stream.tell() + arg
    if opcode.name in _MEMO_PUTS and arg > position - start:
      raise ValueError(f"a memo index ({arg}) no pickle of that size could need")
  stream.seek(start)
  return _StateDictUnpickler(stream, storage).load()


def _no_storage(pid: tuple) -> _Storage:
  raise pickle.UnpicklingError(f"unexpected storage {pid!r} outside the state dict")


def _same_storage(storages: dict[str, _Storage], declared: _Storage) -> _Storage:
  # Checks against one declaration must hold for the data read for every other.
  if storages.setdefault(declared.key, declared) != declared:
    raise ValueError(f"storage {declared.key} is declared twice, differently")
  return declared


def _tensors(obj: Any) -> dict[str, _Tensor]:
  """The state dict's tensors, each checked against the storage it declares."""
  if not (isinstance(obj, dict)
          and all(isinstance(k, str) and isinstance(v, _Tensor) for k, v in obj.items())):
    raise ValueError("the file does not hold a state dict of tensors")
  for name, tensor in obj.items():
    numel = math.prod(tensor.size)
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    # Materialising copies the elements: overlapping ones (zero strides) would multiply them.
    if numel and (last >= tensor.storage.numel or numel > tensor.storage.numel - tensor.offset):
      raise ValueError(f"tensor {name!r} (size {tensor.size}, stride {tensor.stride}, offset "
                       f"{tensor.offset}) does not fit in the {tensor.storage.numel} elements "
                       f"of its storage")
  return dict(obj)


def _materialise(tensor: _Tensor, flat: np.ndarray) -> np.ndarray:
  # as_strided does not check bounds: the data must be exactly what the layout was checked against.
  if len(flat) != tensor.storage.numel:
    raise ValueError(f"storage {tensor.storage.key} holds other data than it declares")
  if 0 in tensor.size:
    return np.zeros(tensor.size, flat.dtype)
  view = np.lib.stride_tricks.as_strided(flat[tensor.offset:], tensor.size,
                                         [s * flat.itemsize for s in tensor.stride],
                                         writeable=False)
  return np.array(view)
