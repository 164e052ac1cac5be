"""The InceptionV3 behind FID, KID and IS, as pytorch-fid runs it, in Flax Linen.

The network is the 2015-12-05 TensorFlow graph of the original FID code, in the form
pytorch-fid ported it: torchvision's InceptionV3 layout with the FID
graph's quirks (3x3 average pools that ignore their zero padding, a max pool in the last
block, 1008 classes). Images go in as pytorch-fid feeds them: scaled to [0, 1], resized
bilinearly to 299x299 (half-pixel centres, no antialiasing: `F.interpolate(...,
mode='bilinear', align_corners=False)`), then mapped to [-1, 1]. Convolutions and the
classifier run in float32 at full precision, never TF32, whatever the GPU's default.

Weights: pytorch-fid's release file `pt_inception-2015-12-05-6726825d.pth`, read here
without torch (see `eval.torch_pickle`). `find_inception_weights` looks for it in
`$DCGAN_JAX_CACHE`, `~/.cache/dcgan_jax/` and torch hub's cache, where pytorch-fid
downloads it; `download_inception_weights` fetches and checks it, and evaluation does so
on first use; without it, Inception metrics are unavailable and `weights_hint` tells
where to get it.
"""

import contextlib
import functools
import hashlib
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from dcgan_jax.data import shards
from dcgan_jax.eval.torch_pickle import read_torch_state_dict

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
INPUT_SIZE = 299
NUM_CLASSES = 1008
POOL3_DIM = 2048

_BN_EPSILON = 1e-3
_PRECISION = jax.lax.Precision.HIGHEST


# ---------------------------------------------------------------------------- network


class BasicConv2d(nn.Module):
  """Convolution without bias, inference-mode BatchNorm, ReLU."""

  features: int
  kernel_size: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, self.kernel_size, strides=self.strides,
                padding=[(p, p) for p in self.padding], use_bias=False, precision=_PRECISION,
                name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPSILON, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  # TensorFlow's average pool leaves the zero padding out of the count.
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


def _max_pool_3x3_stride_2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = BasicConv2d(384, (3, 3), strides=2, name="branch3x3")(x)
    bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv2d(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_stride_2(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = self.channels_7x7
    b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv2d(c, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv2d(c, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv2d(c, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv2d(c, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv2d(c, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv2d(c, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv2d(320, (3, 3), strides=2, name="branch3x3_2")(b3)
    b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv2d(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_stride_2(x)], axis=-1)


class InceptionE(nn.Module):
  # The FID graph's last block pools with a max where every other InceptionV3 averages.
  pool: Callable[[jax.Array], jax.Array]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], -1)
    bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], -1)
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(self.pool(x))
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class Classifier(nn.Module):
  """The 1008-way layer; returns logits with and without its bias.

  torch-fidelity (like the original TensorFlow Inception Score) takes the softmax of the
  logits without the bias, so both are kept exact rather than one derived from the other.
  """

  @nn.compact
  def __call__(self, pool3: jax.Array) -> tuple[jax.Array, jax.Array]:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (pool3.shape[-1], NUM_CLASSES))
    bias = self.param("bias", nn.initializers.zeros, (NUM_CLASSES,))
    unbiased = jnp.dot(pool3, kernel, precision=_PRECISION)
    return unbiased + bias, unbiased


class FIDInceptionV3(nn.Module):
  """x (B, 299, 299, 3) in [-1, 1] -> {'pool3': (B, 2048), 'logits', 'logits_unbiased': (B, 1008)}.

  Submodules carry pytorch-fid's state-dict names, so weights map over name for name.
  """

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> dict[str, jax.Array]:
    x = BasicConv2d(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x_BHWC)
    x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_stride_2(x)
    x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_stride_2(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, channels_7x7 in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                               ("Mixed_6e", 192)]:
      x = InceptionC(channels_7x7, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(_avg_pool_3x3, name="Mixed_7b")(x)
    x = InceptionE(_max_pool_3x3, name="Mixed_7c")(x)
    pool3 = jnp.mean(x, axis=(1, 2))
    logits, logits_unbiased = Classifier(name="fc")(pool3)
    return {"pool3": pool3, "logits": logits, "logits_unbiased": logits_unbiased}


def preprocess(images_BHWC: jax.Array) -> jax.Array:
  """uint8 [0, 255] or float [-1, 1] images, any size -> float32 (B, 299, 299, 3) in [-1, 1].

  Same order as pytorch-fid: to [0, 1], resize, then to [-1, 1]. Float images are used
  as they are; quantise them to uint8 first to score exactly what a saved PNG would hold.
  """
  if images_BHWC.dtype == jnp.uint8:
    x = images_BHWC.astype(jnp.float32) / 255.0
  else:
    x = (images_BHWC.astype(jnp.float32) + 1.0) / 2.0
  b, _, _, c = x.shape
  # Without antialiasing jax's bilinear kernel is torch's align_corners=False one, edges
  # included (out-of-range taps are dropped and the rest renormalised, as torch clamps).
  x = jax.image.resize(x, (b, INPUT_SIZE, INPUT_SIZE, c), "bilinear", antialias=False)
  return 2.0 * x - 1.0


_OUTPUT_DIMS = {"pool3": POOL3_DIM, "logits": NUM_CLASSES, "logits_unbiased": NUM_CLASSES}


@jax.jit
def _features(variables: dict, images_BHWC: jax.Array) -> dict[str, jax.Array]:
  return FIDInceptionV3().apply(variables, preprocess(images_BHWC))


def inception_features(variables: dict, images_BHWC: np.ndarray,
                       batch_size: int = 100) -> dict[str, np.ndarray]:
  """Runs the network over `images_BHWC` (uint8 or float in [-1, 1]) in batches.

  Returns float32 numpy arrays 'pool3' (N, 2048) for FID/KID and 'logits' and
  'logits_unbiased' (N, 1008); the Inception Score uses 'logits_unbiased'. The last batch
  is padded to `batch_size`, so one compilation serves every call with that size.
  """
  outputs: dict[str, list[np.ndarray]] = {key: [] for key in _OUTPUT_DIMS}
  for start in range(0, len(images_BHWC), batch_size):
    batch = images_BHWC[start:start + batch_size]
    padding = batch_size - len(batch)
    if padding:
      batch = np.concatenate([batch, np.zeros((padding, *batch.shape[1:]), batch.dtype)])
    for key, value in _features(variables, batch).items():
      outputs[key].append(np.asarray(value)[:batch_size - padding])
  return {key: np.concatenate([np.zeros((0, dim), np.float32), *outputs[key]])
          for key, dim in _OUTPUT_DIMS.items()}


# ---------------------------------------------------------------------------- weights


def _cache_dirs() -> list[Path]:
  """The project's cache (where downloads go), then the default one when
  $DCGAN_JAX_CACHE points elsewhere, then torch hub's cache, where pytorch-fid itself
  downloads the file, so that an existing copy is found."""
  torch_home = os.environ.get("TORCH_HOME", str(Path.home() / ".cache" / "torch"))
  return list(dict.fromkeys([shards.cache_home(), shards.default_cache_home(),
                             Path(torch_home) / "hub" / "checkpoints"]))


def find_inception_weights(explicit_path: str | None = None) -> Path | None:
  """The weights file: `explicit_path` if given, else the first cached copy, else None.

  A given path that does not exist raises FileNotFoundError rather than silently
  disabling the metrics. A cached copy whose sha256 does not start with the prefix in its
  name is a one-line ValueError; a given path may have any name and is not checked.
  """
  if explicit_path is not None:
    path = Path(explicit_path).expanduser()
    if not path.is_file():
      raise FileNotFoundError(f"Inception weights not found at {path}. {weights_hint()}")
    return path
  for directory in _cache_dirs():
    if (directory / WEIGHTS_FILE).is_file():
      _check_cached_weights(directory / WEIGHTS_FILE)
      return directory / WEIGHTS_FILE
  return None


@functools.lru_cache
def _sha256_of(path: Path, size: int, mtime_ns: int) -> str:
  del size, mtime_ns  # part of the cache key: a rewritten file is hashed again
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      digest.update(chunk)
  return digest.hexdigest()


def weights_sha256(path: str | os.PathLike) -> str:
  """The sha256 of a weights file's content, read once per process while the file keeps
  its size and modification time."""
  path = Path(path).resolve()
  stat = path.stat()
  return _sha256_of(path, stat.st_size, stat.st_mtime_ns)


def _check_cached_weights(path: Path) -> None:
  """A cached copy is found by its name alone, so its content must be the one the sha256
  prefix in that name promises: not a truncated download, nor other weights saved under
  the released file's name."""
  prefix = sha256_prefix_in_name(path.name)
  digest = weights_sha256(path)
  if not digest.startswith(prefix):
    raise ValueError(f"{path}: its sha256 {digest[:16]}... does not start with {prefix} as its "
                     f"name says; delete it or run python -m experiments.download_weights")


def weights_hint() -> str:
  """One short line: what is missing and the command that gets it (the README says more)."""
  return f"FID, KID and IS need {WEIGHTS_FILE}: run python -m experiments.download_weights"


OFFLINE_ENV = "DCGAN_JAX_OFFLINE"  # set to 1: never download the weights on first use
FIRST_USE_TIMEOUT_S = 10
FIRST_USE_DEADLINE_S = 300  # 95.6 MB at 2.5 Mbit/s


def sha256_prefix_in_name(file_name: str) -> str:
  """The sha256 prefix torch hub puts at the end of a weights file's name
  (`pt_inception-2015-12-05-6726825d.pth` -> `6726825d`)."""
  match = re.search(r"-([0-9a-f]{6,64})\.[A-Za-z0-9]+$", file_name)
  if not match:
    raise ValueError(f"{file_name} carries no sha256 prefix in its name (NAME-<hex>.pth)")
  return match.group(1)


# pytorch-fid's weights file is 95.6 MB: a download is stopped well before a server
# sending without end fills the disk.
MAX_WEIGHTS_BYTES = 128 * 2**20


def download_inception_weights(url: str | None = None, dest_dir: Path | None = None, *,
                               sha256_prefix: str | None = None, timeout: float = 60,
                               deadline: float = 1800, progress: bool = True) -> Path:
  """Fetches the weights (default: pytorch-fid's release) into `dest_dir` (default:
  $DCGAN_JAX_CACHE or ~/.cache/dcgan_jax/) and returns the file. It is written under a
  temporary name and renamed only once its sha256 starts with the prefix in its name (as
  torch hub checks) and it reads as the expected network; any failure is one-line
  ValueError and leaves no file. `timeout` bounds each wait for the server, `deadline` the
  whole download (in seconds), and MAX_WEIGHTS_BYTES its size."""
  url = url or WEIGHTS_URL
  name = url.rsplit("/", 1)[-1]
  prefix = sha256_prefix or sha256_prefix_in_name(name)
  dest_dir = Path(dest_dir) if dest_dir else _cache_dirs()[0]
  dest, partial = dest_dir / name, dest_dir / f".{name}.download"
  try:
    dest_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    ends = time.monotonic() + deadline
    with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
      total = int(response.headers.get("Content-Length") or 0) or None
      if total is not None and total > MAX_WEIGHTS_BYTES:
        raise ValueError(f"{url} declares {total:,} bytes, more than the weights' "
                         f"{MAX_WEIGHTS_BYTES:,}; not saved")
      with tqdm.tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress,
                     file=sys.stderr) as bar:
        # read1 returns what one read brings, so a server trickling bytes meets the deadline.
        while chunk := response.read1(1 << 20):
          out.write(chunk)
          digest.update(chunk)
          bar.update(len(chunk))
          if out.tell() > MAX_WEIGHTS_BYTES:
            raise ValueError(f"{url} sent more than the weights' {MAX_WEIGHTS_BYTES:,} bytes; "
                             f"not saved")
          if time.monotonic() > ends:
            raise ValueError(f"cannot download {url}: not done within {deadline:g} s")
    if not digest.hexdigest().startswith(prefix):
      raise ValueError(f"{url}: its sha256 {digest.hexdigest()[:16]}... does not start with "
                       f"{prefix}; not saved")
    try:
      load_inception_params(partial)
    except ValueError as error:
      raise ValueError(f"{url} is not pytorch-fid's Inception weights "
                       f"({str(error).replace(str(partial), 'the file')}); not saved") from None
    os.replace(partial, dest)
    _failed_download_marker().unlink(missing_ok=True)
  except (urllib.error.URLError, OSError) as error:
    if isinstance(error, urllib.error.HTTPError):
      reason = f"HTTP {error.code} {error.reason}"
    else:
      reason = getattr(error, "reason", None) or error.strerror or error
    raise ValueError(f"cannot download {url}: {reason}") from None
  finally:
    partial.unlink(missing_ok=True)
  return dest


def find_or_download_inception_weights(explicit_path: str | None = None,
                                       download: bool = True) -> tuple[Path | None, str | None]:
  """(the weights file, None), or (None, why not) when there is none and downloading it
  now (with a short timeout; not with `download` off or $DCGAN_JAX_OFFLINE set) fails."""
  found = find_inception_weights(explicit_path)
  if found is not None or explicit_path is not None:
    return found, None
  if not download or os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
    return None, weights_hint()
  failed = _failed_download_marker()
  if failed.is_file() and time.time() - failed.stat().st_mtime < RETRY_FAILED_DOWNLOAD_S:
    # An offline machine does not wait for the network on every run.
    return None, f"{weights_hint()} (not fetched: the last try failed less than a day ago)"
  try:
    return download_inception_weights(timeout=FIRST_USE_TIMEOUT_S,
                                      deadline=FIRST_USE_DEADLINE_S), None
  except ValueError as error:
    with contextlib.suppress(OSError):  # a read-only cache only means trying again next time
      failed.parent.mkdir(parents=True, exist_ok=True)
      failed.write_text(f"{error}\n")
    return None, f"{weights_hint()} (fetching it failed: {error})"


RETRY_FAILED_DOWNLOAD_S = 24 * 3600


def _failed_download_marker() -> Path:
  """Where a failed first-use download is remembered, until a day has passed or
  `download_inception_weights` succeeds."""
  return _cache_dirs()[0] / f".{WEIGHTS_FILE}.download_failed"


# Flax (collection, variable) -> the name of the same array in a torch module.
_TORCH_LEAVES = {("params", "kernel"): "weight", ("params", "scale"): "weight",
                 ("params", "bias"): "bias", ("batch_stats", "mean"): "running_mean",
                 ("batch_stats", "var"): "running_var"}


@functools.cache
def _torch_layout() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """pytorch-fid's state-dict name -> (Flax variable path, torch shape), for every array."""
  expected = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0),
                            jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))
  layout = {}
  for keys, leaf in jax.tree_util.tree_leaves_with_path(expected):
    flax_path = tuple(key.key for key in keys)
    collection, *modules, name = flax_path
    shape = leaf.shape
    if len(shape) == 4:  # HWIO -> OIHW
      shape = (shape[3], shape[2], shape[0], shape[1])
    elif len(shape) == 2:  # (in, out) -> (out, in)
      shape = shape[::-1]
    layout[".".join([*modules, _TORCH_LEAVES[collection, name]])] = (flax_path, shape)
  return layout


def load_inception_params(path: str | os.PathLike) -> dict[str, Any]:
  """pytorch-fid's Inception state dict -> Flax variables {'params', 'batch_stats'}.

  Conv weights OIHW become HWIO kernels, the classifier's (out, in) weight an (in, out)
  kernel, BatchNorm weight/bias/running stats scale/bias/mean/var. Every expected array
  must be present with its shape, checked before any array's data is read; anything else
  in the file but BatchNorm's step counters is an error too.
  """
  layout = _torch_layout()
  state_dict = read_torch_state_dict(path, {name: shape for name, (_, shape) in layout.items()})
  found = {name for name in state_dict if not name.endswith(".num_batches_tracked")}
  if found != layout.keys():
    missing = sorted(layout.keys() - found)
    unexpected = sorted(found - layout.keys())
    raise ValueError(f"{path} is not pytorch-fid's Inception: missing {missing[:5]}, "
                     f"unexpected {unexpected[:5]}")
  variables: dict[str, Any] = {}
  for name, (flax_path, _) in layout.items():
    value = state_dict[name]
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    elif value.ndim == 2:
      value = value.T
    tree = variables
    for key in flax_path[:-1]:
      tree = tree.setdefault(key, {})
    tree[flax_path[-1]] = jnp.asarray(value, jnp.float32)
  return variables
