"""Evaluation in training and on demand: what is logged, kept and printed."""

import json

import pytest

from tests.cli import run_module
from tests.runs import train_tiny


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
