"""The Flax FID Inception computes what pytorch-fid computes, from weights read without torch.

The released weights cannot be fetched here, so pytorch-fid's own network is built with
random weights and random BatchNorm statistics, saved with `torch.save`, and read back
through `load_inception_params`; both networks then see the same images.
"""

import collections
import functools
import hashlib
import http.server
import importlib
import importlib.util
import io
import json
import os
import pickle
import re
import shutil
import socket
import sys
import threading
import time
import tracemalloc
import types
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dcgan_jax.eval import image_sets, inception, metrics, torch_pickle
from tests.cli import run_module


def import_torch_reference(module: str) -> ModuleType:
  """Imports a pytorch-fid or torch-fidelity module; skips the test without torch.

  The test extra pairs torch's CPU build with PyPI's torchvision, whose compiled ops link
  against CUDA libraries that build lacks, and `import torchvision` then fails while
  registering fake kernels for those ops. The Inception modules are plain Python and use
  none of the ops, so that registration step is left out.
  """
  pytest.importorskip("torch")
  sys.modules.setdefault("torchvision._meta_registrations",
                         types.ModuleType("torchvision._meta_registrations"))
  return pytest.importorskip(module)


def _randomise(state_dict: dict, seed: int) -> None:
  """He-scaled weights and BatchNorm statistics far from the identity, in place."""
  import torch

  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, tensor in state_dict.items():
      if not tensor.is_floating_point():
        continue
      noise = torch.randn(tensor.shape, generator=generator)
      uniform = torch.rand(tensor.shape, generator=generator)
      if name.endswith(("running_var", "bn.weight")):
        tensor.copy_(0.5 + 1.5 * uniform)
      elif name.endswith(("running_mean", "bn.bias")):
        tensor.copy_(0.2 * noise)
      else:
        tensor.copy_(noise * (2.0 / tensor[0].numel()) ** 0.5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> types.SimpleNamespace:
  """pytorch-fid's FID Inception with random weights, saved in both torch.save formats."""
  import torch

  pytorch_fid = import_torch_reference("pytorch_fid.inception")
  inception3 = importlib.import_module("torchvision.models.inception").Inception3
  folder = tmp_path_factory.mktemp("inception")
  with pytest.MonkeyPatch.context() as patch:
    # fid_inception_v3 would download the released weights; keep its random init instead.
    patch.setattr(pytorch_fid, "load_state_dict_from_url", lambda *args, **kwargs: None)
    patch.setattr(inception3, "load_state_dict", lambda self, state_dict: None)
    state_dict = pytorch_fid.fid_inception_v3().state_dict()
  _randomise(state_dict, seed=0)
  zip_path, legacy_path = folder / "random.pth", folder / "random_legacy.pth"
  torch.save(state_dict, zip_path)
  torch.save(state_dict, legacy_path, _use_new_zipfile_serialization=False)
  with pytest.MonkeyPatch.context() as patch:
    # pytorch-fid loads the saved file itself, through its usual path.
    patch.setattr(pytorch_fid, "load_state_dict_from_url",
                  lambda *args, **kwargs: torch.load(zip_path))
    network = pytorch_fid.InceptionV3([pytorch_fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
  return types.SimpleNamespace(network=network, state_dict=state_dict, zip_path=zip_path,
                               legacy_path=legacy_path)


def test_features_and_logits_match_pytorch_fid(reference):
  import torch

  images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
  variables = inception.load_inception_params(reference.zip_path)
  # Two images per batch: the second batch is padded, so batching is checked too.
  ours = inception.inception_features(variables, images, batch_size=2)

  with torch.no_grad():
    pool3 = reference.network(torch.from_numpy(images).permute(0, 3, 1, 2) / 255.0)[0].flatten(1)
    logits_unbiased = pool3 @ reference.state_dict["fc.weight"].T
  want = {"pool3": pool3, "logits_unbiased": logits_unbiased,
          "logits": logits_unbiased + reference.state_dict["fc.bias"]}
  for key, value in want.items():
    value = value.numpy()
    assert ours[key].shape == value.shape
    np.testing.assert_allclose(ours[key], value, rtol=1e-4, atol=1e-4 * np.abs(value).max(),
                               err_msg=key)
  assert np.abs(want["pool3"].numpy()).max() > 0.1  # the comparison is not of near-zeros


@pytest.mark.parametrize("height, width", [(64, 64), (37, 50), (512, 400)])
def test_preprocess_matches_pytorch_fid_resize_for_uint8_and_float_input(height, width):
  torch = pytest.importorskip("torch")
  images = np.random.default_rng(height).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
  unit = torch.from_numpy(images).permute(0, 3, 1, 2) / 255.0
  resized = torch.nn.functional.interpolate(unit, size=(299, 299), mode="bilinear",
                                            align_corners=False)
  want = (2 * resized - 1).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(inception.preprocess(images), want, atol=1e-5)
  as_float = images.astype(np.float32) / 127.5 - 1.0
  np.testing.assert_allclose(inception.preprocess(as_float), want, atol=1e-5)


def test_both_torch_save_formats_read_back_exactly(reference):
  for path in (reference.zip_path, reference.legacy_path):
    read = torch_pickle.read_torch_state_dict(path)
    assert list(read) == list(reference.state_dict)
    for name, tensor in reference.state_dict.items():
      assert read[name].dtype == tensor.numpy().dtype, name
      np.testing.assert_array_equal(read[name], tensor.numpy(), err_msg=name)


def test_reader_refuses_anything_but_tensors(tmp_path):
  torch = pytest.importorskip("torch")
  path = tmp_path / "not_weights.pth"
  torch.save({"weight": torch.zeros(2), "extra": collections.Counter("ab")}, path)
  with pytest.raises(ValueError,
                     match=f"^{re.escape(str(path))} .*refusing to load collections.Counter"):
    torch_pickle.read_torch_state_dict(path)


def _pickled(value) -> bytes:
  """`value`'s opcodes alone, without the protocol header and STOP, to splice into a pickle."""
  return pickle.dumps(value, protocol=2)[2:-1]


def write_torch_zip(path: Path, layouts: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
                    storage_numel: int) -> Path:
  """A zip laid out as torch.save writes it, built without torch: for each name a (size,
  stride) float32 tensor over its own storage of `storage_numel` elements 0, 1, 2, ...

  Unlike torch.save, it writes whatever layout it is given.
  """
  body = b""
  for key, (name, (size, stride)) in enumerate(layouts.items()):
    storage = (b"(" + _pickled("storage") + b"ctorch\nFloatStorage\n" + _pickled(str(key))
               + _pickled("cpu") + _pickled(storage_numel) + b"tQ")
    rebuild_args = (b"(" + storage + _pickled(0) + _pickled(size) + _pickled(stride)
                    + b"\x89ccollections\nOrderedDict\n)Rt")
    body += _pickled(name) + b"ctorch._utils\n_rebuild_tensor_v2\n" + rebuild_args + b"R"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", b"\x80\x02}(" + body + b"u.")
    archive.writestr("archive/byteorder", "little")
    archive.writestr("archive/version", "3\n")
    for key in range(len(layouts)):
      archive.writestr(f"archive/data/{key}", np.arange(storage_numel, dtype="<f4").tobytes())
  return path


def test_hand_made_torch_zip_reads_as_torch_reads_it(tmp_path):
  # So that the refusals below are of the layouts alone, not of a malformed file.
  path = write_torch_zip(tmp_path / "fine.pth", {"w": ((2, 3), (1, 2)), "s": ((), ())}, 6)
  read = torch_pickle.read_torch_state_dict(path)
  np.testing.assert_array_equal(read["w"], [[0, 2, 4], [1, 3, 5]])
  np.testing.assert_array_equal(read["s"], 0)
  if importlib.util.find_spec("torch"):
    import torch
    for name, tensor in torch.load(path, weights_only=True).items():
      np.testing.assert_array_equal(read[name], tensor.numpy(), err_msg=name)


@pytest.mark.parametrize("size, stride, storage_numel", [
    ((2**27,), (0,), 1),  # one element repeated: a zero stride, as `expand` leaves
    ((2**13, 2**14), (0, 1), 2**14),  # every element inside the storage, each used 2**13 times
    ((2**27,), (1,), 4),  # more elements than the storage holds
])
def test_tensors_larger_than_their_storage_are_refused_before_allocating(
    tmp_path, size, stride, storage_numel):
  path = write_torch_zip(tmp_path / "crafted.pth", {"w": (size, stride)}, storage_numel)
  assert path.stat().st_size < 70_000  # the file is small; the tensor it declares is 512 MiB
  assert _peak_bytes_refusing(path, rf"^{re.escape(str(path))} .*'w'.*does not fit in the "
                                    rf"{storage_numel} elements") < 50e6


def _peak_bytes_refusing(path: Path, message: str) -> int:
  """The peak memory of reading `path`, which is refused with `message` (a regex)."""
  tracemalloc.start()
  try:
    with pytest.raises(ValueError, match=message):
      torch_pickle.read_torch_state_dict(path)
    return tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()


def test_many_tensors_viewing_one_storage_are_refused_before_allocating(tmp_path):
  torch = pytest.importorskip("torch")
  shared = torch.zeros(2**20)
  path = tmp_path / "views.pth"
  torch.save({f"t{i}": shared for i in range(500)}, path)  # one storage, 500 tensors
  assert path.stat().st_size < 5e6  # one 4 MiB storage; its 500 copies would be 2 GB
  assert _peak_bytes_refusing(path, rf"^{re.escape(str(path))} is not a weights file this "
                                    r"reader takes: its tensors would take 2,097,152,000 bytes, "
                                    r"more than the 4,194,304 their storages hold$") < 50e6


def test_inception_loader_refuses_a_parameter_of_another_shape_by_name(tmp_path):
  path = write_torch_zip(tmp_path / "other.pth", {"fc.weight": ((1008, 4), (4, 1))}, 1008 * 4)
  with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} .*'fc\.weight' has shape "
                                       rf"\(1008, 4\) where \(1008, 2048\) is expected"):
    inception.load_inception_params(path)


def _truncated_zip(path: Path) -> None:
  write_torch_zip(path, {"w": ((2,), (1,))}, 2)
  path.write_bytes(path.read_bytes()[:200])


def _zip_without_pickle(path: Path) -> None:
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data/0", bytes(8))


@pytest.mark.parametrize("make, detail", [
    (lambda path: path.write_bytes(bytes(range(7, 256))), "neither a zip archive nor"),
    (lambda path: path.write_bytes(b""), "empty"),
    (_truncated_zip, "truncated or damaged zip archive"),
    (_zip_without_pickle, "without the data.pkl"),
    (lambda path: path.write_bytes(pickle.dumps({"w": [0.0, 1.0]})), "not a torch.save file"),
    (lambda path: path.write_bytes(pickle.dumps(collections.Counter("ab"))),
     "refusing to load collections.Counter"),
    (lambda path: path.mkdir(), "directory"),
], ids=["arbitrary_bytes", "empty", "truncated_zip", "zip_without_pickle", "plain_pickle",
        "pickled_object", "directory"])
def test_a_foreign_file_is_one_line_naming_it(tmp_path, make, detail):
  path = tmp_path / "weights.pth"
  make(path)
  with pytest.raises(ValueError) as raised:
    inception.load_inception_params(path)
  message = str(raised.value)
  assert message.startswith(f"{path} is not a PyTorch weights file (torch.save zip archive): ")
  assert detail in message and "\n" not in message


def test_loader_rejects_a_different_network(reference, tmp_path):
  torch = pytest.importorskip("torch")
  path = tmp_path / "partial.pth"
  partial = {k: v for k, v in reference.state_dict.items() if not k.startswith("Mixed_7c.")}
  torch.save(partial, path)
  with pytest.raises(ValueError, match="missing.*Mixed_7c"):
    inception.load_inception_params(path)


def test_weights_found_in_cache_or_reported_missing_with_hint(tmp_path, monkeypatch):
  cache = tmp_path / "cache"
  monkeypatch.setenv("DCGAN_JAX_CACHE", str(cache))
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
  assert inception.find_inception_weights(None) is None
  hint = inception.weights_hint()
  # One short line, printed on every run without the weights: the file and the command.
  assert "pt_inception-2015-12-05-6726825d.pth" in hint and "experiments.download_weights" in hint
  assert "\n" not in hint and len(hint) <= 120
  with pytest.raises(FileNotFoundError, match="pt_inception"):
    inception.find_inception_weights(str(tmp_path / "nowhere.pth"))

  cache.mkdir()
  cached = cache / inception.WEIGHTS_FILE
  cached.write_bytes(b"")
  # Only the released file's sha256 starts with the name's prefix: let the empty file's do.
  monkeypatch.setattr(inception, "sha256_prefix_in_name", lambda name: _sha256(cached)[:8])
  assert inception.find_inception_weights(None) == cached
  explicit = tmp_path / "mine.pth"
  explicit.write_bytes(b"")
  assert inception.find_inception_weights(str(explicit)) == Path(explicit)


def test_cached_weights_whose_hash_is_not_their_names_are_refused_in_one_line(tmp_path,
                                                                              monkeypatch):
  monkeypatch.setenv("DCGAN_JAX_CACHE", str(tmp_path / "cache"))
  cached = tmp_path / "cache" / inception.WEIGHTS_FILE
  cached.parent.mkdir()
  cached.write_bytes(b"other weights under the released file's name")
  with pytest.raises(ValueError) as refused:
    inception.find_inception_weights(None)
  assert str(refused.value) == (
      f"{cached}: its sha256 {_sha256(cached)[:16]}... does not start with 6726825d as its name "
      f"says; delete it or run python -m experiments.download_weights")
  with pytest.raises(ValueError, match="6726825d"):
    inception.find_or_download_inception_weights()
  # A path the user gives may have any name and any content.
  assert inception.find_inception_weights(str(cached)) == cached


@pytest.fixture
def weights_server(tmp_path):
  """A local HTTP server of the files in its folder: (folder, base URL)."""
  folder = tmp_path / "served"
  folder.mkdir()
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield folder, f"http://127.0.0.1:{server.server_address[1]}"
  server.shutdown()
  server.server_close()


def _sha256(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_keeps_a_file_only_when_its_hash_and_network_check_out(reference, weights_server,
                                                                       tmp_path):
  folder, base = weights_server
  served = folder / inception.WEIGHTS_FILE
  shutil.copy(reference.zip_path, served)
  url, dest = f"{base}/{inception.WEIGHTS_FILE}", tmp_path / "cache"
  # The name's prefix (6726825d) is the released file's: random weights fail the check.
  with pytest.raises(ValueError, match=rf"^{re.escape(url)}: its sha256 [0-9a-f]{{16}}\.\.\. "
                                       r"does not start with 6726825d; not saved$"):
    inception.download_inception_weights(url, dest, progress=False)
  assert not dest.exists() or not any(dest.iterdir())

  path = inception.download_inception_weights(url, dest, sha256_prefix=_sha256(served)[:8],
                                              progress=False)
  assert path == dest / inception.WEIGHTS_FILE and path.read_bytes() == served.read_bytes()
  assert sorted(p.name for p in dest.iterdir()) == [inception.WEIGHTS_FILE]

  foreign = folder / "other-00000000.pth"
  foreign.write_bytes(np.random.default_rng(0).bytes(5000))
  with pytest.raises(ValueError, match=r"is not pytorch-fid's Inception weights .*; not saved$"):
    inception.download_inception_weights(f"{base}/{foreign.name}", dest,
                                         sha256_prefix=_sha256(foreign)[:8], progress=False)
  with pytest.raises(ValueError, match=r"^cannot download .*/missing-12345678\.pth: HTTP 404 File not found$"):
    inception.download_inception_weights(f"{base}/missing-12345678.pth", dest, progress=False)
  assert sorted(p.name for p in dest.iterdir()) == [inception.WEIGHTS_FILE]


class _EndlessHandler(http.server.BaseHTTPRequestHandler):
  """Sends bytes without end: /trickle one every 50 ms, /flood 64 KB at a time; /huge
  declares a length of 10 GB."""

  def do_GET(self):  # pylint: disable=invalid-name
    self.send_response(200)
    if self.path.startswith("/huge"):
      self.send_header("Content-Length", str(10 * 2**30))
    self.end_headers()
    try:
      while True:
        self.wfile.write(b"x" if self.path.startswith("/trickle") else bytes(1 << 16))
        self.wfile.flush()
        if self.path.startswith("/trickle"):
          time.sleep(0.05)
    except OSError:  # the client gave up
      pass

  def log_message(self, *args):
    del args


@pytest.mark.parametrize("path, message", [
    ("trickle", r"cannot download .*/trickle-12345678\.pth: not done within 1 s"),
    ("flood", r".*/flood-12345678\.pth sent more than the weights' 1,048,576 bytes; not saved"),
    ("huge", r".*/huge-12345678\.pth declares 10,737,418,240 bytes, more than the weights' "
             r"1,048,576; not saved"),
])
def test_a_download_is_bounded_in_time_and_size(tmp_path, monkeypatch, path, message):
  monkeypatch.setattr(inception, "MAX_WEIGHTS_BYTES", 2**20)
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EndlessHandler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  url = f"http://127.0.0.1:{server.server_address[1]}/{path}-12345678.pth"
  try:
    started = time.monotonic()
    with pytest.raises(ValueError, match=f"^{message}$"):
      inception.download_inception_weights(url, tmp_path / "cache", deadline=1, progress=False)
    assert time.monotonic() - started < 10
  finally:
    server.shutdown()
    server.server_close()
  assert not any((tmp_path / "cache").iterdir())


def test_download_cli_unreachable_url_is_one_line_and_writes_nothing(tmp_path):
  with socket.socket() as probe:  # a port nothing listens on
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
  url = f"http://127.0.0.1:{port}/{inception.WEIGHTS_FILE}"
  result = run_module("experiments.download_weights", "--url", url, "--dest", tmp_path / "cache",
                      check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f"error: cannot download {url}: [Errno 111] Connection refused"]
  assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_evaluation_downloads_the_weights_on_first_use_unless_offline(reference, weights_server,
                                                                    tmp_path, monkeypatch):
  folder, base = weights_server
  shutil.copy(reference.zip_path, folder / inception.WEIGHTS_FILE)
  monkeypatch.setenv("DCGAN_JAX_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
  monkeypatch.setattr(inception, "WEIGHTS_URL", f"{base}/{inception.WEIGHTS_FILE}")
  served_prefix = _sha256(folder / inception.WEIGHTS_FILE)[:8]
  monkeypatch.setattr(inception, "sha256_prefix_in_name", lambda name: served_prefix)
  assert inception.find_or_download_inception_weights(download=False) == (
      None, inception.weights_hint())
  monkeypatch.setenv(inception.OFFLINE_ENV, "1")
  assert inception.find_or_download_inception_weights() == (None, inception.weights_hint())
  monkeypatch.delenv(inception.OFFLINE_ENV)
  path, reason = inception.find_or_download_inception_weights()
  assert reason is None and path == tmp_path / "cache" / inception.WEIGHTS_FILE
  (folder / inception.WEIGHTS_FILE).unlink()
  assert inception.find_or_download_inception_weights() == (path, None)  # found, not fetched


def test_a_failed_first_use_download_is_not_retried_for_a_day(reference, weights_server,
                                                              tmp_path, monkeypatch):
  folder, base = weights_server
  monkeypatch.setenv("DCGAN_JAX_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
  monkeypatch.delenv(inception.OFFLINE_ENV, raising=False)
  monkeypatch.setattr(inception, "WEIGHTS_URL", f"{base}/{inception.WEIGHTS_FILE}")
  path, reason = inception.find_or_download_inception_weights()  # nothing served yet: 404
  assert path is None and reason.startswith(inception.weights_hint() + " (fetching it failed")
  shutil.copy(reference.zip_path, folder / inception.WEIGHTS_FILE)
  monkeypatch.setattr(inception, "sha256_prefix_in_name",
                      lambda name: _sha256(folder / inception.WEIGHTS_FILE)[:8])
  # Served now, but not tried again within the day.
  assert inception.find_or_download_inception_weights() == (
      None, f"{inception.weights_hint()} (not fetched: the last try failed less than a day ago)")
  marker = next((tmp_path / "cache").glob("*.download_failed"))
  a_day_ago = time.time() - inception.RETRY_FAILED_DOWNLOAD_S - 60
  os.utime(marker, (a_day_ago, a_day_ago))
  path, reason = inception.find_or_download_inception_weights()
  assert reason is None and path == tmp_path / "cache" / inception.WEIGHTS_FILE
  assert not marker.exists()


SAMPLE_ZIP = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba_sample"
              / "img_align_celeba.zip")
# Images scored per folder, in one Inception batch: the tests below and the commands they
# start run one program, compiled once into the suite's cache.
FOLDER_NUM = 8


@pytest.fixture(scope="module")
def face_folders(tmp_path_factory) -> tuple[Path, Path, Path]:
  """Two folders of different real faces, and the second's faces blurred."""
  if not SAMPLE_ZIP.exists():
    pytest.skip(f"no CelebA sample at {SAMPLE_ZIP}")
  root = tmp_path_factory.mktemp("faces")
  folders = [root / name for name in ("a", "b", "b_blurred")]
  for folder in folders:
    folder.mkdir()
  with zipfile.ZipFile(SAMPLE_ZIP) as archive:
    names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:60]
    for i, name in enumerate(names):
      data = archive.read(name)
      target = folders[0] if i < 30 else folders[1]
      (target / Path(name).name).write_bytes(data)
      if target == folders[1]:
        blurred = Image.open(io.BytesIO(data)).filter(ImageFilter.GaussianBlur(3))
        blurred.save(folders[2] / Path(name).with_suffix(".png").name)
  return tuple(folders)


@pytest.mark.slow
def test_folder_scores_rank_blurred_faces_worse_and_statistics_stand_in_for_images(
    reference, face_folders, tmp_path):
  variables = inception.load_inception_params(reference.zip_path)
  preparation = image_sets.Preparation(crop=178, resolution=64)
  a, b, blurred = (image_sets.load_image_set(folder, preparation, num=FOLDER_NUM)
                   for folder in face_folders)
  real = image_sets.score(a, b, variables)
  worse = image_sets.score(a, blurred, variables)
  assert worse["fid"] > real["fid"] and worse["swd"] > real["swd"]
  assert {"kid", "is", "swd_64px", "swd_16px"} <= real.keys()
  # FID from statistics saved in pytorch-fid's layout is FID from the images.
  metrics.save_statistics(tmp_path / "b.npz", *image_sets.statistics(b, variables))
  from_stats = image_sets.score(a, image_sets.load_image_set(tmp_path / "b.npz", preparation),
                                variables)
  assert from_stats["fid"] == pytest.approx(real["fid"], rel=1e-6)
  assert "swd" not in from_stats and "kid" not in from_stats


@pytest.mark.slow
def test_fid_cli_on_folders_and_saved_statistics(reference, face_folders, tmp_path):
  a, b, _ = face_folders
  stats = tmp_path / "a.npz"
  first = run_module("experiments.fid", a, b, "--num", FOLDER_NUM, "--inception_weights",
                     reference.zip_path, "--save_stats", stats)
  scores = json.loads(first.stdout.strip().splitlines()[-1])
  assert scores["num"] == [FOLDER_NUM] * 2 and scores["fid"] > 0 and scores["swd"] > 0
  with np.load(stats) as saved:
    assert saved["mu"].shape == (2048,) and saved["sigma"].shape == (2048, 2048)
  # FID is symmetric: B against A's saved statistics gives the same number.
  second = run_module("experiments.fid", b, stats, "--num", FOLDER_NUM, "--inception_weights",
                      reference.zip_path)
  assert json.loads(second.stdout.strip().splitlines()[-1])["fid"] == pytest.approx(
      scores["fid"], rel=1e-6)
  bad = run_module("experiments.fid", a, tmp_path / "nothing", check=False)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
      f"error: {tmp_path / 'nothing'} is neither a folder of images, a prepared shards "
      f"directory nor an .npz of statistics"]
