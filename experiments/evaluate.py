"""Scores a trained run: SWD, and FID, KID and IS with pytorch-fid's Inception weights.

  python -m experiments.evaluate --workdir DIR [--num_samples 10000] [--step K]
                                 [--inception_weights PATH]

Prints one JSON object and writes it to DIR/eval_stepXXXXXXX.json.
"""

import json
import sys
from pathlib import Path

from absl import app, flags, logging

from dcgan_jax import files, generate
from dcgan_jax.eval import evaluator as evaluation
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.", required=True)
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 10_000, "Generated and real images compared.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_WEIGHTS = flags.DEFINE_string("inception_weights", None,
                               "pt_inception-2015-12-05-6726825d.pth (default: search the cache).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generated images' latent noise.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)
  workdir = Path(_WORKDIR.value)
  try:
    run = generate.load_run(workdir, _STEP.value)
    evaluator = evaluation.Evaluator(run.config, evaluation.cache_dir(run.config, workdir),
                                     num_samples=_NUM_SAMPLES.value,
                                     inception_weights=_WEIGHTS.value,
                                     download_weights=run.config.eval.download_weights)
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  if evaluator.unavailable_reason:
    print(f"FID, KID and IS unavailable. {evaluator.unavailable_reason}", file=sys.stderr)
  fakes = generate.generate(run.variant, run.state,
                            *run.inputs(_SEED.value, evaluator.num_samples))
  result = {"step": run.step, "num_samples": evaluator.num_samples, **evaluator(fakes)}
  files.write_json(workdir / f"eval_step{run.step:07d}.json", result)
  print(json.dumps(result))


if __name__ == "__main__":
  cli.run(main)
