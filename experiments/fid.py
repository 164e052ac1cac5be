"""FID, KID, IS and SWD between any two sets of images.

  python -m experiments.fid PATH1 PATH2 [--num N] [--split train]
                            [--inception_weights P] [--save_stats OUT.npz]

Each PATH is a folder of images (searched recursively), a prepared shards directory
(its --split), or an .npz of Inception statistics in pytorch-fid's layout (mu, sigma).
Prints one JSON line: FID between the sets, KID, IS of PATH1, SWD; without Inception
weights, SWD alone and a hint on stderr. --save_stats writes PATH1's statistics for
later runs of this command or of pytorch-fid.
"""

import json
import sys
from pathlib import Path

from absl import app, flags, logging

from dcgan_jax.eval import image_sets, inception
from experiments import cli

_NUM = flags.DEFINE_integer("num", None, "Use at most this many images of each set "
                            "(chosen by --seed; default: all).")
_SPLIT = flags.DEFINE_string("split", "train", "Split of a prepared shards directory.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the image choice and of SWD and KID.")
_WEIGHTS = flags.DEFINE_string("inception_weights", None,
                               "pt_inception-2015-12-05-6726825d.pth (default: search the "
                               "cache, fetching it when missing).")
_SAVE_STATS = flags.DEFINE_string("save_stats", None, "Write PATH1's mu and sigma here (.npz).")


def main(argv: list[str]) -> None:
  if len(argv) != 3:
    raise app.UsageError(f"expected two paths, got {len(argv) - 1}: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)
  try:
    if _NUM.value is not None and _NUM.value <= 0:
      raise ValueError(f"--num must be a positive integer, got {_NUM.value}")
    sets = [image_sets.load_image_set(path, split=_SPLIT.value, num=_NUM.value, seed=_SEED.value)
            for path in argv[1:]]
    weights, unavailable = inception.find_or_download_inception_weights(_WEIGHTS.value)
    if _SAVE_STATS.value and (weights is None or sets[0].images is None):
      raise ValueError("--save_stats needs Inception weights and images in PATH1")
    if weights is None and any(s.images is None for s in sets):
      raise ValueError(f"statistics (.npz) compare only through Inception. {unavailable}")
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  if unavailable:
    print(f"SWD only. {unavailable}", file=sys.stderr, flush=True)
  variables = None if weights is None else inception.load_inception_params(weights)
  scores = image_sets.score(sets[0], sets[1], variables, seed=_SEED.value)
  if _SAVE_STATS.value:
    image_sets.save_statistics(Path(_SAVE_STATS.value),
                               *image_sets.statistics(sets[0], variables))
  print(json.dumps({"num": [None if s.images is None else len(s.images) for s in sets],
                    **scores}))


if __name__ == "__main__":
  cli.run(main)
