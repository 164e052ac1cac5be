"""Sampling a trained run: the sample CLI, slerp, and restoring the exact trained state."""

import json

import numpy as np
import pytest
from PIL import Image

from dcgan_jax import generate
from dcgan_jax.train_state import state_fingerprint
from tests.cli import run_module
from tests.runs import train_tiny


def test_samples_are_numbered_pngs_that_depend_on_the_checkpoint_and_seed(tiny_run, tmp_path):
  latest, step4 = generate.load_run(tiny_run), generate.load_run(tiny_run, step=4)
  assert (latest.step, step4.step) == (8, 4)
  generate.write_samples(latest, tmp_path / "a", 5, seed=0)
  generate.write_samples(step4, tmp_path / "b", 5, seed=0)
  generate.write_samples(latest, tmp_path / "c", 5, seed=0)
  names = sorted(p.name for p in (tmp_path / "a").iterdir())
  assert names == [f"{i:06d}.png" for i in range(5)]
  a, b, c = ([np.asarray(Image.open(tmp_path / d / n)) for n in names] for d in "abc")
  assert a[0].shape == (16, 16, 3)
  assert all(np.array_equal(x, y) for x, y in zip(a, c))  # same run, step and seed
  assert any(not np.array_equal(x, y) for x, y in zip(a, b))  # step 8 differs from step 4
  assert not np.array_equal(a[0], a[1])


@pytest.mark.slow
def test_sample_cli_interpolation_grid(tiny_run, tmp_path):
  run_module("experiments.sample", "--workdir", tiny_run, "--out_dir", tmp_path, "--interpolate",
             "--rows", 3, "--cols", 5)
  grid = np.asarray(Image.open(tmp_path / "interpolation.png"))
  assert grid.shape == (3 * 18 + 2, 5 * 18 + 2, 3)


def test_sample_cli_on_a_directory_without_a_run(tmp_path):
  result = run_module("experiments.sample", "--workdir", tmp_path, "--out_dir", tmp_path / "o",
                      check=False)
  assert result.returncode != 0 and "config.json" in result.stderr.splitlines()[-1]


@pytest.mark.bit_exact
def test_restored_run_has_the_trained_fingerprint(tiny_run):
  from dcgan_jax.train_state import state_fingerprint
  run = generate.load_run(tiny_run)
  final = json.loads((tiny_run / "final.json").read_text())
  assert run.step == 8 and state_fingerprint(run.state) == final["state_fingerprint"]


def test_slerp_ends_at_its_endpoints_and_keeps_the_norm_between():
  rng = np.random.default_rng(0)
  z0, z1 = rng.normal(size=100), rng.normal(size=100)
  path = generate.slerp(z0, z1, np.linspace(0, 1, 7))
  np.testing.assert_allclose(path[0], z0, atol=1e-12)
  np.testing.assert_allclose(path[-1], z1, atol=1e-12)
  norms = np.linalg.norm(path, axis=1)
  # Between two vectors of similar norm, slerp stays near that norm; lerp would shrink it.
  lerp_mid = np.linalg.norm((z0 + z1) / 2)
  assert norms[3] > lerp_mid * 1.2
  assert np.all(np.abs(norms - np.linalg.norm(z0)) < 0.2 * np.linalg.norm(z0))


def test_an_unconditional_generator_ignores_labels_in_any_batching(tiny_run):
  run = generate.load_run(tiny_run)
  z = generate.fixed_latents(run.variant, 7, 10)
  labels = np.random.default_rng(0).choice(np.int8([-1, 1]), (10, 10))
  for batch_size in (4, 256):
    without = generate.generate(run.variant, run.state, z, batch_size=batch_size)
    assert without.shape == (10, 16, 16, 3) and without.dtype == np.uint8
    np.testing.assert_array_equal(
        without, generate.generate(run.variant, run.state, z, labels, batch_size=batch_size))


@pytest.mark.slow
def test_best_draws_from_the_checkpoint_of_the_best_evaluation(tmp_path):
  final = train_tiny(tmp_path, {"eval.every_steps": 4, "eval.num_samples": 32})
  best_step = final["eval"]["best"]["step"]
  best = generate.load_run(tmp_path, best=True)
  assert best.step == best_step
  assert (state_fingerprint(best.state)
          == state_fingerprint(generate.load_run(tmp_path, step=best_step).state))


@pytest.mark.slow
def test_an_output_path_that_cannot_be_written_is_one_line(tiny_run, tmp_path):
  in_the_way = tmp_path / "a_file"
  in_the_way.write_text("not a folder")
  result = run_module("experiments.sample", "--workdir", tiny_run, "--num", "2", "--out_dir",
                      in_the_way / "out", check=False)
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [
      f"error: {in_the_way / 'out'}: Not a directory; check the path and its permissions"]
  assert in_the_way.read_text() == "not a folder"


@pytest.mark.parametrize("args, message", [
    (["--step", "5"], "error: no checkpoint at step 5 in {run}/checkpoints; steps available: 4, 8"),
    # Each starts the command: the quick check runs the first only.
    pytest.param(["--num", "0"], "error: --num must be a positive integer, got 0",
                 marks=pytest.mark.slow),
    pytest.param(["--num", "3000000"], "error: --num 3,000,000 is more than the 200,000 images "
                 "one call generates; run several with other --seed values",
                 marks=pytest.mark.slow),
    pytest.param(["--interpolate", "--rows", "-1"],
                 "error: --rows must be a positive integer, got -1", marks=pytest.mark.slow),
    pytest.param(["--best"], "error: --best: {run} has no best checkpoint; it is kept when the "
                 "run evaluates during training (eval.every_steps > 0)", marks=pytest.mark.slow),
])
def test_sample_cli_bad_choices_are_one_line(tiny_run, tmp_path, args, message):
  result = run_module("experiments.sample", "--workdir", tiny_run, "--out_dir", tmp_path / "out",
                      *args, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [message.format(run=tiny_run)]
  assert not (tmp_path / "out").exists()
