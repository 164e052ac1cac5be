"""A trained generator out of its run: `load_generator` as experiments.sample draws, the
`.safetensors` file that reloads it bit for bit, the `.onnx` graph, and their errors."""

import json
import logging
import sys

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime
import pytest
import safetensors
from PIL import Image

from dcgan_jax import export, generate, load_generator, steps, train
from experiments.configs import progan128
from tests.cli import run_module
from tests.runs import tiny_config

# Short runs that compile little: what is tested is the generator they leave.
SHORT = {"train.num_steps": 2, "train.sample_every": 2, "train.checkpoint_every": 2,
         "train.write_report": False}
# Not in the data's order (Eyeglasses comes first there), so the order is the run's.
ATTRIBUTES = ("Smiling", "Eyeglasses")
CONDITIONAL = {"model.condition": "attributes", "model.attributes": ",".join(ATTRIBUTES)}


def _train(tmp_path_factory, name: str, config):
  workdir = tmp_path_factory.mktemp(name)
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
  """An unconditional DCGAN that keeps an EMA of its generator."""
  return _train(tmp_path_factory, "ema", tiny_config({**SHORT, "train.g_ema_decay": 0.5}))


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
  """A conditional DCGAN (z and the attributes concatenated), no EMA."""
  return _train(tmp_path_factory, "conditional", tiny_config({**SHORT, **CONDITIONAL}))


def _progan_config():
  """ProGAN grown 4 -> 8 px: 4x4 for steps 0-1, 8x8 fading in over steps 2-3; it stops
  halfway into the last stage's fade-in (alpha 0.5), so both of its paths count."""
  config = progan128.get_config("tiny")
  config.update_from_flattened_dict({
      **SHORT, "train.num_steps": 4, "train.checkpoint_every": 4, "train.sample_every": 4,
      "data.resolution": 8, "growth.batch_sizes": "", "growth.fade_images": 16,
      "growth.stable_images": 16})
  return config


# The other fixed networks (and ProGAN), for the ONNX graph alone.
ONNX_CONFIGS = {
    "mlp": lambda: tiny_config({**SHORT, "model.arch": "mlp", "model.d_norm": "none"}),
    "resnet": lambda: tiny_config({**SHORT, "model.arch": "resnet", "model.d_norm": "none",
                                   "data.resolution": 32}),
    "cbn": lambda: tiny_config({**SHORT, **CONDITIONAL, "model.g_condition": "cbn"}),
    "progan": _progan_config,
}


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory):
  """Trained on first use, each once."""
  trained = {}

  def run(name: str):
    if name not in trained:
      trained[name] = _train(tmp_path_factory, name, ONNX_CONFIGS[name]())
    return trained[name]

  return run


def _latents(generator, num: int, seed: int = 1) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(num, generator.z_dim)).astype(np.float32)


def _attributes(generator, num: int, seed: int = 2) -> np.ndarray | None:
  if not generator.attributes:
    return None
  return np.random.default_rng(seed).choice([-1, 1], (num, len(generator.attributes)))


def test_sample_is_what_the_sample_command_writes(conditional_run, tmp_path):
  run_module("experiments.sample", "--workdir", conditional_run, "--num", 5, "--seed", 3,
             "--out_dir", tmp_path, "--attributes", "Eyeglasses=1")
  written = np.stack([np.asarray(Image.open(tmp_path / f"{i:06d}.png")) for i in range(5)])
  generator = load_generator(conditional_run)
  assert (generator.z_dim, generator.resolution, generator.attributes) == (16, 16, ATTRIBUTES)
  np.testing.assert_array_equal(generator.sample(5, seed=3, attributes={"Eyeglasses": 1}),
                                written)
  # The attribute reached the images, and another seed draws others.
  assert not np.array_equal(generator.sample(5, seed=3, attributes={"Eyeglasses": -1}), written)
  assert not np.array_equal(generator.sample(5, seed=4, attributes={"Eyeglasses": 1}), written)


def test_generate_draws_as_the_run_does_by_the_ema(ema_run):
  generator, run = load_generator(ema_run), generate.load_run(ema_run)
  z = _latents(generator, 6)
  images = generator.generate(z)
  np.testing.assert_array_equal(images, generate.generate(run.variant, run.state, z))
  raw = run.state.replace(g_ema_params=run.state.g_params)
  assert not np.array_equal(images, generate.generate(run.variant, raw, z))
  assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8


def test_loading_prints_and_logs_nothing(ema_run, conditional_run, tmp_path, capfd, caplog):
  export.write(load_generator(conditional_run), tmp_path / "g.safetensors")
  capfd.readouterr()
  with caplog.at_level(logging.WARNING, logger="absl"):
    for source in (ema_run, conditional_run, tmp_path / "g.safetensors"):
      load_generator(source)
  assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
  assert capfd.readouterr() == ("", "")


def _checkpoint_bytes(workdir) -> int:
  return sum(p.stat().st_size for p in (workdir / "checkpoints").rglob("*") if p.is_file())


@pytest.mark.bit_exact
def test_safetensors_file_reloads_the_generator_alone_bit_for_bit(ema_run, tmp_path):
  generator, path = load_generator(ema_run), tmp_path / "ema.safetensors"
  export.write(generator, path)
  reloaded = load_generator(path)
  z = _latents(generator, 7)
  np.testing.assert_array_equal(reloaded.generate(z), generator.generate(z))
  np.testing.assert_array_equal(reloaded.sample(6, seed=2), generator.sample(6, seed=2))
  with safetensors.safe_open(path, framework="np") as opened:
    names, kernel = set(opened.keys()), opened.get_tensor("params/ConvTranspose_0/kernel")
  # The generator's variables, its weights the EMA's, and nothing of D or the optimisers.
  state = generate.load_run(ema_run).state
  assert names == (_flat_names("params", state.g_ema_params)
                   | _flat_names("batch_stats", state.g_batch_stats))
  np.testing.assert_array_equal(kernel, state.g_ema_params["ConvTranspose_0"]["kernel"])
  # Its one checkpoint holds D, both optimisers' moments and orbax's own files too.
  assert path.stat().st_size * 4 < _checkpoint_bytes(ema_run)


def _flat_names(collection: str, tree) -> set[str]:
  return {"/".join([collection, *(key.key for key in path)])
          for path, _ in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.bit_exact
def test_conditional_file_from_the_command_samples_as_its_run(conditional_run, tmp_path):
  path = tmp_path / "conditional.safetensors"
  result = run_module("experiments.export", "--workdir", conditional_run, "--out", path)
  assert result.stdout.startswith(f"wrote {path} (step 2, ")
  generator, reloaded = load_generator(conditional_run), load_generator(path)
  assert reloaded.attributes == ATTRIBUTES and reloaded.step == 2
  settings = {"Smiling": -1}
  np.testing.assert_array_equal(reloaded.sample(9, seed=5, attributes=settings),
                                generator.sample(9, seed=5, attributes=settings))
  z, attributes = _latents(generator, 4), _attributes(generator, 4)
  np.testing.assert_array_equal(reloaded.generate(z, attributes),
                                generator.generate(z, attributes))
  with safetensors.safe_open(path, framework="np") as opened:
    rows = opened.get_tensor("label_rows")
  assert rows.dtype == np.int8 and rows.shape == (256, 2)  # every training face's


def _onnx_images_match_generate(generator, path) -> None:
  """The exported graph's inputs and metadata, and ONNX Runtime's images within one grey
  level of `generate`'s, at two batch sizes."""
  export.write(generator, path)
  session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
  inputs = [(i.name, i.shape) for i in session.get_inputs()]
  assert inputs == [("z", ["N", generator.z_dim]),
                    ("attributes", ["N", len(generator.attributes)])][:1 + bool(
                        generator.attributes)]
  header = json.loads(session.get_modelmeta().custom_metadata_map["dcgan_jax"])
  assert (header["step"], header["attributes"]) == (generator.step, list(generator.attributes))
  for num in (5, 2):
    (images,) = session.run(None, _feed(generator, num))
    expected = generator.generate(*_feed(generator, num).values())
    assert images.dtype == np.uint8 and images.shape == expected.shape
    difference = np.abs(images.astype(int) - expected)
    assert difference.max() <= 1 and np.mean(difference) < 0.01, (difference.max(),
                                                                   np.mean(difference))


def _onnx_floats_match_jax(generator, path) -> None:
  """The same graph up to the floats the images are rounded from: within 1e-4 of JAX's."""
  path.write_bytes(export.onnx_bytes(generator, path, steps.generate_in_model_range))
  session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
  feed = _feed(generator, 3)
  (computed,) = session.run(None, feed)
  labels = feed.get("attributes")
  np.testing.assert_allclose(computed, steps.generate_in_model_range(
      generator.variant, generator.state, jnp.asarray(feed["z"]),
      None if labels is None else jnp.asarray(labels, jnp.int8)), atol=1e-4)


def _feed(generator, num: int) -> dict[str, np.ndarray]:
  """An ONNX feed of `num` latents (and attributes), in the graph's input order."""
  z, attributes = _latents(generator, num, seed=num), _attributes(generator, num, seed=num)
  return {"z": z} if attributes is None else {"z": z, "attributes": attributes.astype(np.float32)}


def test_onnx_graph_computes_generate(ema_run, conditional_run, tmp_path):
  for name, run in (("dcgan", ema_run), ("conditional", conditional_run)):
    _onnx_images_match_generate(load_generator(run), tmp_path / f"{name}.onnx")
    _onnx_floats_match_jax(load_generator(run), tmp_path / f"{name}_floats.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "resnet", "progan", "cbn"])
def test_onnx_graph_computes_generate_of_every_network(other_runs, tmp_path, name):
  """Up to the rounding to uint8, which the test above covers."""
  generator = load_generator(other_runs(name))
  if name == "progan":  # drawn at the last stage, halfway into its fade-in
    variant = generator.variant
    assert generator.resolution == 8 and variant.stage == variant.schedule.num_stages - 1
    assert float(variant.schedule.alpha(variant.stage, generator.step - 1)) == 0.5
  _onnx_floats_match_jax(generator, tmp_path / f"{name}.onnx")


def test_generate_names_what_it_expected(ema_run, conditional_run):
  unconditional, conditional = load_generator(ema_run), load_generator(conditional_run)
  z = _latents(conditional, 3)
  expected = r"expected \+1/-1 attributes of shape \(3, 2\), in the order Smiling, Eyeglasses"
  with pytest.raises(ValueError, match=rf"^attributes: this generator is conditional: {expected}$"):
    conditional.generate(z)
  with pytest.raises(ValueError, match=rf"^attributes: {expected}; got int64 \(3, 3\)$"):
    conditional.generate(z, np.ones((3, 3), np.int64))
  with pytest.raises(ValueError, match=rf"^attributes: {expected}; got int64 \(3, 2\) with "):
    conditional.generate(z, np.zeros((3, 2), np.int64))
  with pytest.raises(ValueError, match=r"^attributes: this generator is not conditional"):
    unconditional.generate(z, np.ones((3, 2)))
  with pytest.raises(ValueError, match=r"^z: expected float latents of shape \(N, 16\), "
                                       r"N >= 1; got float32 \(3, 8\)$"):
    unconditional.generate(z[:, :8])
  with pytest.raises(ValueError, match=r"^attributes: attribute 'Male' is unknown"):
    conditional.sample(2, attributes={"Male": 1})
  with pytest.raises(ValueError, match=r"^attributes: this run is not conditional"):
    unconditional.sample(2, attributes={"Smiling": 1})


def test_load_generator_refuses_bad_sources_in_one_line(ema_run, tmp_path, monkeypatch):
  with pytest.raises(ValueError, match=r"^step: expected None \(the latest\), a step number "
                                       r"or 'best', got 'latest'$"):
    load_generator(ema_run, step="latest")
  with pytest.raises(FileNotFoundError, match=r"^--best: .* has no best checkpoint"):
    load_generator(ema_run, step="best")
  path = tmp_path / "g.safetensors"
  export.write(load_generator(ema_run), path)
  with pytest.raises(ValueError, match=r"holds the generator of one step; leave step out$"):
    load_generator(path, step=2)
  with pytest.raises(ValueError, match=r"holds the generator of one run; leave member out$"):
    load_generator(path, member=0)
  foreign = tmp_path / "foreign.safetensors"
  foreign.write_bytes(safetensors.numpy.save({"w": np.zeros(3, np.float32)}))
  with pytest.raises(ValueError, match=r"is a safetensors file but not a generator file"):
    load_generator(foreign)
  with safetensors.safe_open(path, framework="np") as opened:
    tensors = {name: opened.get_tensor(name) for name in opened.keys()}
    metadata = opened.metadata()
  del tensors["params/ConvTranspose_0/kernel"]
  damaged = tmp_path / "damaged.safetensors"
  damaged.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
  with pytest.raises(ValueError, match=r"tensor params/ConvTranspose_0/kernel is absent in the "
                                       r"file and float32 \(4, 4, 16, 16\) in the generator"):
    load_generator(damaged)
  monkeypatch.setitem(sys.modules, "safetensors", None)
  with pytest.raises(ValueError, match=r'generator files need safetensors: pip install -e '
                                       r'"\.\[export\]"$'):
    load_generator(path)
  monkeypatch.setitem(sys.modules, "jax2onnx", None)
  with pytest.raises(ValueError, match=r'writing ONNX needs jax2onnx and onnx: pip install'):
    export.check_out(tmp_path / "g.onnx")


@pytest.mark.parametrize("args, message", [
    ("--workdir {run} --out {tmp}/g.pt",
     "--out {tmp}/g.pt: expected a file name ending in .safetensors or .onnx"),
    # Each starts the command: the quick check runs the first only.
    pytest.param("--workdir {run} --out {tmp}/g.onnx --step 2 --best",
                 "--best and --step each choose the checkpoint; give one", marks=pytest.mark.slow),
    pytest.param("--workdir {run} --out {tmp}/exists.onnx",
                 "--out {tmp}/exists.onnx exists; remove it or choose another name",
                 marks=pytest.mark.slow),
    pytest.param("--workdir {tmp}/none --out {tmp}/g.safetensors",
                 "--workdir {tmp}/none has no config.json: is it a training run directory?",
                 marks=pytest.mark.slow),
])
def test_export_command_errors_are_one_line_before_writing(ema_run, tmp_path, args, message):
  (tmp_path / "exists.onnx").write_text("a user's file")
  result = run_module("experiments.export", *args.format(run=ema_run, tmp=tmp_path).split(),
                      check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [f"error: {message.format(tmp=tmp_path)}"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.onnx"]
  assert (tmp_path / "exists.onnx").read_text() == "a user's file"
