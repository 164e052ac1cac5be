"""Trains presets over several seeds on the same data and compares them side by side.

  python -m experiments.compare --workdir DIR --configs dcgan,lsgan,wgan_gp \
      [--seeds 0,1,2] [--steps N] [--num_samples 1000] [--population] [--config.data.dir=...]

A preset may carry its variant, as everywhere: `--configs dcgan:tiny,lsgan:tiny` compares
the seconds-long forms.

Every preset x seed trains into DIR/<preset>/seed<k>/ (what is already trained is
kept), then each is scored with the same real images and latent noise: DIR/compare.json,
DIR/compare.md (the table) and DIR/compare.png (one sample grid per preset). Keys given
as --config.KEY=VALUE apply to every preset (e.g. the data, or a smaller resolution).
With --population, each preset's seeds train as one population in DIR/<preset>/population/
(one jitted step for all of them; the same models as apart), and each member's wall time
is its population's divided among the seeds.
"""

import importlib
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from dcgan_jax import compare, run_dir, train
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the compared runs.", required=True)
_CONFIGS = flags.DEFINE_list("configs", None, "Presets in experiments/configs/, e.g. dcgan,lsgan.",
                             required=True)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds each preset trains with.")
_STEPS = flags.DEFINE_integer("steps", None, "Training steps of every run (default: each "
                              "preset's own length).")
_POPULATION = flags.DEFINE_bool("population", False, "Train each preset's seeds as one "
                                 "population (dcgan_jax.population) instead of one by one.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1000, "Generated (and real) images scored.")
_WEIGHTS = flags.DEFINE_string("inception_weights", None,
                               "pt_inception-2015-12-05-6726825d.pth (default: search the cache).")
# The keys every preset has; only those given (--config.KEY=VALUE) are applied to each.
# The file is given when flags are parsed (see cli.with_default_config).
_KEYS_CONFIG = "celeba64"
config_flags.DEFINE_config_file("config", None, "Keys set here (--config.KEY=VALUE) apply to "
                                "every preset.", lock_config=True)


def preset_config(name: str):
  preset, _, variant = name.partition(":")
  try:
    module = importlib.import_module(f"experiments.configs.{preset}")
  except ModuleNotFoundError:
    raise ValueError(f"--configs: no preset {preset!r} in experiments/configs/") from None
  config = module.get_config(variant)
  overrides = run_dir.flatten(run_dir.config_as_dict(flags.FLAGS.config))
  given = {dotted: value for dotted, value in overrides.items() if cli.given(f"config.{dotted}")}
  config.update_from_flattened_dict(given)
  if _STEPS.value is not None:
    config.train.num_steps, config.train.num_epochs = _STEPS.value, None
  return config


def main(argv: list[str]) -> None:
  del argv
  try:
    seeds = [int(s) for s in _SEEDS.value]
    configs = {name: preset_config(name) for name in _CONFIGS.value}
    report = compare.compare(Path(_WORKDIR.value), configs, seeds, _NUM_SAMPLES.value,
                             _WEIGHTS.value, _POPULATION.value)
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  except train.TrainingStopped as stopped:
    cli.exit_stopped(stopped)
  del report
  print((Path(_WORKDIR.value) / "compare.md").read_text(), end="")


def parse_flags(argv: list[str]) -> list[str]:
  return cli.parse_flags(cli.with_default_config(argv, _KEYS_CONFIG))


if __name__ == "__main__":
  cli.run(main, parse_flags)
