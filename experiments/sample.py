"""Writes generated faces from a trained run as PNG files.

  python -m experiments.sample --workdir DIR --num 64 --out_dir OUT [--seed 0] [--step K | --best]
  python -m experiments.sample --workdir DIR --out_dir OUT --interpolate
  python -m experiments.sample --workdir DIR --num 16 --out_dir OUT --attributes Male=1,Smiling=-1
  python -m experiments.sample --workdir DIR --out_dir OUT --attribute_grid Male,Smiling

Images go to OUT/000000.png, OUT/000001.png, ...; with --interpolate, one grid
OUT/interpolation.png of latent paths (one per row) instead. A conditional run
(model.condition=attributes) draws each image's attributes from a training face;
--attributes sets the named ones (1 present, -1 absent) and keeps the others;
--attribute_grid writes OUT/attribute_grid.png: --rows latents, each under every setting
of the named attributes to +1 and -1 (one column per setting, titled above it).
"""

from pathlib import Path

from absl import flags

from dcgan_jax import config_checks, files, generate
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.", required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write the PNG files.", required=True)
_NUM = flags.DEFINE_integer("num", 64, "Number of images.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the latent noise.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Draw from the best checkpoint (lowest FID, else SWD, "
                          "of the evaluations during training) instead.")
_MEMBER = cli.define_member_flag()
_INTERPOLATE = flags.DEFINE_bool("interpolate", False, "Write a slerp interpolation grid.")
_ROWS = flags.DEFINE_integer("rows", 8, "Interpolation paths (grid rows).")
_COLS = flags.DEFINE_integer("cols", 10, "Steps along each path (grid columns).")
_ATTRIBUTES = flags.DEFINE_list(
    "attributes", [], "A conditional run's attributes to set, e.g. Male=1,Eyeglasses=-1.")
MAX_GRID_ATTRIBUTES = 4
_ATTRIBUTE_GRID = flags.DEFINE_list(
    "attribute_grid", [], f"Up to {MAX_GRID_ATTRIBUTES} of a conditional run's attributes, "
    "e.g. Male,Smiling: a grid of every setting of them.")


def parse_attributes(settings: list[str]) -> dict[str, int]:
  """["Male=1", "Eyeglasses=-1"] -> {"Male": 1, "Eyeglasses": -1}."""
  parsed = {}
  for setting in settings:
    name, _, value = setting.partition("=")
    if value.strip() not in ("1", "-1", "+1"):
      raise ValueError(f"--attributes: expected NAME=1 or NAME=-1, got {setting!r}")
    parsed[name.strip()] = int(value)
  return parsed


def main(argv: list[str]) -> None:
  del argv
  try:
    for flag in (_NUM, _ROWS, _COLS):
      if flag.value <= 0:
        raise ValueError(f"--{flag.name} must be a positive integer, got {flag.value}")
    if _NUM.value > config_checks.MAX_IMAGES_AT_ONCE:  # generated and held whole
      raise ValueError(f"--num {_NUM.value:,} is more than the {config_checks.MAX_IMAGES_AT_ONCE:,} "
                       f"images one call generates; run several with other --seed values")
    if _BEST.value and _STEP.value is not None:
      raise ValueError("--best and --step each choose the checkpoint; give one")
    attributes = parse_attributes(_ATTRIBUTES.value)
    if attributes and _INTERPOLATE.value:
      raise ValueError("--attributes sets the attributes of samples; leave it out with "
                       "--interpolate")
    grid_names = [name.strip() for name in _ATTRIBUTE_GRID.value]
    if grid_names and (attributes or _INTERPOLATE.value):
      raise ValueError("--attribute_grid draws its own grid; leave out --attributes and "
                       "--interpolate")
    if len(grid_names) > MAX_GRID_ATTRIBUTES:
      raise ValueError(f"--attribute_grid: at most {MAX_GRID_ATTRIBUTES} attributes "
                       f"({2**MAX_GRID_ATTRIBUTES} columns), got {len(grid_names)}")
    run = generate.load_run(Path(_WORKDIR.value), _STEP.value, best=_BEST.value,
                            member=_MEMBER.value)
    for flag, settings in ((_ATTRIBUTES, attributes),
                           (_ATTRIBUTE_GRID, dict.fromkeys(grid_names, 1))):
      if settings:  # checked before anything is written
        generate.set_attributes(run.variant, run.inputs(_SEED.value, 1)[1], settings,
                                f"--{flag.name}")
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  out_dir = Path(_OUT_DIR.value)
  if _INTERPOLATE.value:
    grid = generate.interpolation_grid(run, _SEED.value, _ROWS.value, _COLS.value)
    files.write_png(out_dir / "interpolation.png", grid)
    print(f"wrote {out_dir / 'interpolation.png'} (step {run.step})")
    return
  if grid_names:
    # matplotlib is imported only where a figure is drawn.
    from dcgan_jax.report import figures  # pylint: disable=g-import-not-at-top
    grid, titles = generate.attribute_settings_grid(run, _SEED.value, _ROWS.value, grid_names)
    out_dir.mkdir(parents=True, exist_ok=True)
    files.write_atomic(out_dir / "attribute_grid.png",
                       figures.figure_png(figures.attribute_figure(grid, titles)))
    print(f"wrote {out_dir / 'attribute_grid.png'} (step {run.step})")
    return
  generate.write_samples(run, out_dir, _NUM.value, _SEED.value, attributes)
  print(f"wrote {_NUM.value} images to {out_dir} (step {run.step})")


if __name__ == "__main__":
  cli.run(main)
