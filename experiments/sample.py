"""Writes generated faces from a trained run as PNG files.

  python -m experiments.sample --workdir DIR --num 64 --out_dir OUT [--seed 0] [--step K]
  python -m experiments.sample --workdir DIR --out_dir OUT --interpolate

Images go to OUT/000000.png, OUT/000001.png, ...; with --interpolate, one grid
OUT/interpolation.png of latent paths (one per row) instead.
"""

import sys
from pathlib import Path

from absl import app, flags, logging

from dcgan_jax import files, generate

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.", required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write the PNG files.", required=True)
_NUM = flags.DEFINE_integer("num", 64, "Number of images.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the latent noise.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_INTERPOLATE = flags.DEFINE_bool("interpolate", False, "Write a slerp interpolation grid.")
_ROWS = flags.DEFINE_integer("rows", 8, "Interpolation paths (grid rows).")
_COLS = flags.DEFINE_integer("cols", 10, "Steps along each path (grid columns).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)
  try:
    run = generate.load_run(Path(_WORKDIR.value), _STEP.value)
  except (ValueError, FileNotFoundError) as error:
    sys.exit(f"error: {error}")
  out_dir = Path(_OUT_DIR.value)
  if _INTERPOLATE.value:
    grid = generate.interpolation_grid(run, _SEED.value, _ROWS.value, _COLS.value)
    files.write_png(out_dir / "interpolation.png", grid)
    print(f"wrote {out_dir / 'interpolation.png'} (step {run.step})")
    return
  generate.write_samples(run, out_dir, _NUM.value, _SEED.value)
  print(f"wrote {_NUM.value} images to {out_dir} (step {run.step})")


if __name__ == "__main__":
  app.run(main)
