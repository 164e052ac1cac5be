"""Scores a trained run: SWD, and FID, KID and IS with pytorch-fid's Inception weights.

  python -m experiments.evaluate --workdir DIR [--num_samples N] [--step K | --best]
                                 [--metrics swd,fid,kid,is] [--inception_weights PATH]
                                 [--attribute_classifier PATH]

By default it scores exactly as training's evaluations do (their latent noise and
eval.num_samples), so the two agree for the same step. A conditional run, given an
attribute classifier (python -m experiments.attribute_classifier) by
--attribute_classifier or its eval.attribute_classifier, is also scored by how well its
faces follow their attributes (`attr_accuracy`: the same latents with label rows of
training faces that have each attribute and of faces that do not; `attr_accuracy/<name>`
per attribute). Prints one JSON object and writes it to DIR/eval_stepXXXXXXX.json.
"""

import json
import sys
from pathlib import Path

from absl import flags

from dcgan_jax import files, generate, run_dir
from dcgan_jax.eval import attribute_classifier
from dcgan_jax.eval import evaluator as evaluation
from dcgan_jax.eval import metrics
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.", required=True)
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", None, "Generated and real images compared "
                                    "(default: the run's eval.num_samples).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Score the best checkpoint kept during training.")
_WEIGHTS = flags.DEFINE_string("inception_weights", None,
                               "pt_inception-2015-12-05-6726825d.pth (default: search the cache).")
_METRICS = flags.DEFINE_list("metrics", list(metrics.NAMES),
                             "Scores to compute, of swd, fid, kid, is (those needing Inception "
                             "weights are skipped without them).")
_CLASSIFIER = flags.DEFINE_string("attribute_classifier", None, "An attribute classifier's "
                                  ".msgpack, for a conditional run's attr_accuracy.")
_MEMBER = cli.define_member_flag()
_SEED = flags.DEFINE_integer("seed", None, "Seed of the generated images' latent noise "
                             "(default: the noise of training's evaluations).")


def main(argv: list[str]) -> None:
  del argv
  workdir = Path(_WORKDIR.value)
  try:
    if _NUM_SAMPLES.value is not None and _NUM_SAMPLES.value < 2:
      raise ValueError(f"--num_samples must be at least 2, got {_NUM_SAMPLES.value}")
    run = generate.load_run(workdir, _STEP.value, best=_BEST.value, member=_MEMBER.value)
    if _MEMBER.value is not None:  # a member's scores go where its training's do
      workdir = run_dir.member_dir(workdir, _MEMBER.value)
    evaluator = evaluation.Evaluator(run.config, evaluation.cache_dir(run.config, workdir),
                                     num_samples=_NUM_SAMPLES.value or run.config.eval.num_samples,
                                     inception_weights=_WEIGHTS.value,
                                     download_weights=run.config.eval.download_weights,
                                     wanted=tuple(_METRICS.value))
    if _CLASSIFIER.value and not run.variant.conditional:
      raise ValueError(f"--attribute_classifier: {workdir} is not a conditional run")
    classifier = attribute_classifier.for_run(
        _CLASSIFIER.value or run.config.eval.attribute_classifier, run.variant)
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  if evaluator.unavailable_reason:
    print(f"FID, KID and IS unavailable. {evaluator.unavailable_reason}", file=sys.stderr)
  if _SEED.value is None:  # training's evaluation noise
    inputs = run.inputs(run.config.seed, evaluator.num_samples, generate.EVAL_NOISE_STREAM)
  else:
    inputs = run.inputs(_SEED.value, evaluator.num_samples)
  print(f"scoring step {run.step} on {evaluator.num_samples:,} generated and real images",
        file=sys.stderr, flush=True)
  fakes = generate.generate(run.variant, run.state, *inputs)
  result = {"step": run.step, "num_samples": evaluator.num_samples, **evaluator(fakes)}
  if classifier is not None:
    result |= attribute_classifier.generator_accuracy(run.variant, run.state, *inputs,
                                                      classifier)
  # Printed first, so the scores survive a run directory that cannot be written.
  print(json.dumps(result), flush=True)
  files.write_json(workdir / f"eval_step{run.step:07d}.json", result)


if __name__ == "__main__":
  cli.run(main)
