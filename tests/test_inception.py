"""The Flax FID Inception computes what pytorch-fid computes, from weights read without torch.

The released weights cannot be fetched here, so pytorch-fid's own network is built with
random weights and random BatchNorm statistics, saved with `torch.save`, and read back
through `load_inception_params`; both networks then see the same images.
"""

import collections
import importlib
import pickle
import sys
import types
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from dcgan_jax.eval import inception, torch_pickle


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
  with pytest.raises(pickle.UnpicklingError, match="refusing to load collections.Counter"):
    torch_pickle.read_torch_state_dict(path)


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
  assert "pt_inception-2015-12-05-6726825d.pth" in hint and inception.WEIGHTS_URL in hint
  assert "\n" not in hint
  with pytest.raises(FileNotFoundError, match="pt_inception"):
    inception.find_inception_weights(str(tmp_path / "nowhere.pth"))

  cache.mkdir()
  (cache / inception.WEIGHTS_FILE).write_bytes(b"")
  assert inception.find_inception_weights(None) == cache / inception.WEIGHTS_FILE
  explicit = tmp_path / "mine.pth"
  explicit.write_bytes(b"")
  assert inception.find_inception_weights(str(explicit)) == Path(explicit)
