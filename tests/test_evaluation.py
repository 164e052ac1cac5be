"""Evaluation in training and on demand: what is logged, kept and printed."""

import json
import re

import numpy as np
import pytest

from dcgan_jax import files
from dcgan_jax.data import sources
from dcgan_jax.eval import evaluator, inception
from tests.cli import run_module
from tests.runs import tiny_config, train_tiny


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("evaluated")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("DCGAN_JAX_CACHE", str(workdir / "no_cache"))
    train_tiny(workdir, {"eval.every_steps": 4, "train.write_report": True})
  return workdir


@pytest.mark.slow
def test_training_logs_evaluations_and_keeps_the_best_checkpoint(evaluated_run):
  rows = [json.loads(l) for l in (evaluated_run / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in rows if "eval_swd" in r]
  assert [r["step"] for r in evals] == [4, 8]
  assert all(r["eval_swd"] > 0 and "eval_fid" not in r for r in evals)
  best_step = min(evals, key=lambda r: r["eval_swd"])["step"]
  assert [p.name for p in (evaluated_run / "checkpoints_best").iterdir() if p.name.isdigit()] == [str(best_step)]
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(evaluated_run))
  events.Reload()
  assert [e.step for e in events.Scalars("eval_swd")] == [4, 8]


@pytest.mark.slow
def test_training_ends_with_a_report(evaluated_run):
  page = (evaluated_run / "report" / "index.html").read_text()
  assert "nearest_neighbours.png" in page and (evaluated_run / "report" / "nearest_neighbours.png").exists()


@pytest.mark.slow
def test_evaluate_cli_prints_and_writes_the_scores(evaluated_run):
  result = run_module("experiments.evaluate", "--workdir", evaluated_run, "--num_samples", 32,
                      env={"DCGAN_JAX_CACHE": str(evaluated_run / "no_cache")})
  printed = json.loads(result.stdout.strip().splitlines()[-1])
  assert printed["step"] == 8 and printed["num_samples"] == 32 and printed["swd"] > 0
  assert "fid" not in printed and "pt_inception-2015-12-05-6726825d.pth" in result.stderr
  assert json.loads((evaluated_run / "eval_step0000008.json").read_text()) == printed


@pytest.mark.slow
def test_evaluate_cli_metrics_picks_the_scores(evaluated_run):
  result = run_module("experiments.evaluate", "--workdir", evaluated_run, "--num_samples", 16,
                      "--metrics", "fid", env={"DCGAN_JAX_CACHE": str(evaluated_run / "no_cache")})
  printed = json.loads(result.stdout.strip().splitlines()[-1])
  assert not any(key.startswith("swd") for key in printed), printed
  bad = run_module("experiments.evaluate", "--workdir", evaluated_run, "--metrics", "swd,lpips",
                   check=False)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
      "error: --metrics swd,lpips: expected some of swd,fid,kid,is"]


@pytest.mark.slow
def test_evaluate_cli_with_a_missing_weights_path_says_so(evaluated_run):
  result = run_module("experiments.evaluate", "--workdir", evaluated_run, "--num_samples", 8,
                      "--inception_weights", evaluated_run / "nope.pth", check=False)
  assert result.returncode != 0
  assert "nope.pth" in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr


@pytest.mark.slow
def test_evaluate_cli_by_default_scores_as_training_did(evaluated_run):
  """Same step, same noise, same number of images: the scores training logged."""
  result = run_module("experiments.evaluate", "--workdir", evaluated_run, "--step", 4,
                      env={"DCGAN_JAX_CACHE": str(evaluated_run / "no_cache")})
  printed = json.loads(result.stdout.strip().splitlines()[-1])
  logged = next(json.loads(l) for l in (evaluated_run / "metrics.jsonl").read_text().splitlines()
                if '"eval_swd"' in l and json.loads(l)["step"] == 4)
  assert printed["step"] == 4
  assert {k: v for k, v in printed.items() if k.startswith("swd")} == {
      k[len("eval_"):]: v for k, v in logged.items() if k.startswith("eval_")}
  assert "scoring step 4 on " in result.stderr


def test_reference_statistics_are_keyed_by_the_weights_content_not_their_name(tmp_path):
  data = tiny_config().data
  weights = {}
  for folder, content in (("a", b"some weights"), ("b", b"other weights"), ("c", b"some weights")):
    weights[folder] = tmp_path / folder / inception.WEIGHTS_FILE
    weights[folder].parent.mkdir()
    weights[folder].write_bytes(content)
  keys = {folder: evaluator.reference_cache_key(data, 0, 0, path) for folder, path in weights.items()}
  assert keys["a"] != keys["b"] and keys["a"] == keys["c"]
  weights["c"].write_bytes(b"weights replaced in place")
  assert evaluator.reference_cache_key(data, 0, 0, weights["c"]) != keys["c"]


def _pixel_features(variables, images_BHWC):
  """Stands in for Inception: 2048 of a 32 px image's values, around a large offset."""
  del variables
  return {"pool3": 1e3 + images_BHWC.reshape(len(images_BHWC), -1)[:, :inception.POOL3_DIM]
          .astype(np.float32)}


def test_reference_statistics_stream_their_chunks_and_refuse_a_damaged_cache(tmp_path,
                                                                          monkeypatch):
  monkeypatch.setattr(inception, "inception_features", _pixel_features)
  monkeypatch.setattr(evaluator, "_READ_CHUNK", 7)  # 30 images: chunks of 7, 7, 7, 7 and 2
  source = sources.create_source(tiny_config({"data.resolution": 32}).data, 0)
  cache = tmp_path / "stats.npz"
  mu, sigma = evaluator.reference_statistics(source, {}, cache, 30, seed=3)
  features = _pixel_features(None, sources.read_images(
      source, sources.sample_indices(len(source), 30, np.random.default_rng(3))))["pool3"]
  features = features.astype(np.float64)
  np.testing.assert_allclose(mu, features.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(features, rowvar=False), rtol=1e-9, atol=1e-9)
  cached_mu, cached_sigma = evaluator.reference_statistics(source, {}, cache, 30, seed=3)
  assert np.array_equal(cached_mu, mu) and np.array_equal(cached_sigma, sigma)

  cache.write_bytes(b"half a file")
  with pytest.raises(ValueError, match=rf"^{re.escape(str(cache))}: not readable as saved statistics \(.*\); "
                                       r"delete it to compute them again$"):
    evaluator.reference_statistics(source, {}, cache, 30, seed=3)
  files.write_npz(cache, mu=np.zeros(1), sigma=np.eye(1))
  with pytest.raises(ValueError, match=rf"^{re.escape(str(cache))}: statistics of 1-d features, expected 2048-d$"):
    evaluator.reference_statistics(source, {}, cache, 30, seed=3)
