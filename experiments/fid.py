"""FID, KID, IS and SWD between any two sets of images.

  python -m experiments.fid PATH1 PATH2 [--num N] [--split train] [--metrics swd,fid,kid,is]
                            [--crop 178] [--resolution 64]
                            [--inception_weights P] [--save_stats OUT.npz]

Each PATH is a folder of images (searched recursively), a prepared shards directory (its
--split), or an .npz of Inception statistics in pytorch-fid's layout (mu, sigma). A
folder's images are prepared as `prepare_celeba` prepares training data: centre square
crop of --crop pixels, then a resize to --resolution (both default to a shards PATH's,
else to prepare_celeba's 178 and 64). Prints one JSON line: the scores (FID between the
sets, KID, IS of PATH1, SWD; without Inception weights, SWD alone and a hint on stderr),
how many images of each set were used and skipped, and the preparation. --save_stats
writes PATH1's statistics for later runs of this command or of pytorch-fid.
"""

import json
import sys
from pathlib import Path

from absl import flags

from dcgan_jax.eval import image_sets, inception, metrics, swd
from experiments import cli

_NUM = flags.DEFINE_integer("num", None, "Use at most this many images of each set "
                            "(chosen by --seed; default: all).")
_SPLIT = flags.DEFINE_string("split", "train", "Split of a prepared shards directory.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the image choice and of SWD and KID.")
_METRICS = flags.DEFINE_list("metrics", list(metrics.NAMES),
                             "Scores to compute, of swd, fid, kid, is.")
_CROP = flags.DEFINE_integer("crop", None, "Centre square crop of a folder's images, in "
                             "pixels, as prepare_celeba's --crop (default: a shards PATH's, "
                             "else 178).")
_RESOLUTION = flags.DEFINE_integer("resolution", None, "Size a folder's images are resized "
                                   "to (default: a shards PATH's, else 64).")
_WEIGHTS = flags.DEFINE_string("inception_weights", None,
                               "pt_inception-2015-12-05-6726825d.pth (default: search the "
                               "cache, fetching it when missing).")
_SAVE_STATS = flags.DEFINE_string("save_stats", None, "Write PATH1's mu and sigma here (.npz).")


def _preparation(paths: list[str]) -> image_sets.Preparation:
  """--crop and --resolution, defaulting to those of a shards directory among `paths`."""
  from_shards = [image_sets.shards_preparation(Path(p)) for p in paths
                 if image_sets.is_shards(Path(p))]
  default = from_shards[0] if from_shards else image_sets.Preparation(crop=178, resolution=64)
  preparation = image_sets.Preparation(crop=_CROP.value or default.crop,
                                       resolution=_RESOLUTION.value or default.resolution)
  if min(preparation.crop, preparation.resolution) < 1:
    raise ValueError(f"--crop and --resolution must be positive, got {preparation}")
  return preparation


def _check_metrics(wanted: list[str], preparation: image_sets.Preparation) -> None:
  metrics.check_names(wanted)
  if "swd" in wanted and preparation.resolution < swd.MIN_RESOLUTION:
    raise ValueError(f"--resolution {preparation.resolution}: SWD needs at least "
                     f"{swd.MIN_RESOLUTION} px; raise it or leave swd out of --metrics")
  if "swd" in wanted:
    swd.pyramid_resolutions(preparation.resolution)  # one that does not halve evenly raises


def _check_sizes(sets: list[image_sets.ImageSet], fid: bool) -> None:
  for image_set in sets:
    if image_set.size is not None and image_set.size < 2:
      raise ValueError(f"{image_set.path} has {image_set.size} usable image(s); a set needs "
                       f"at least 2")
    if fid and image_set.size is not None and image_set.size < inception.POOL3_DIM:
      print(f"warning: {image_set.path} has {image_set.size:,} images, fewer than the "
            f"{inception.POOL3_DIM} Inception features: its covariance is singular and FID "
            f"is biased; use at least {inception.POOL3_DIM:,}", file=sys.stderr)


def main(argv: list[str]) -> None:
  wanted = _METRICS.value
  try:
    if _NUM.value is not None and _NUM.value <= 0:
      raise ValueError(f"--num must be a positive integer, got {_NUM.value}")
    preparation = _preparation(argv[1:])
    _check_metrics(wanted, preparation)
    sets = [image_sets.load_image_set(path, preparation, split=_SPLIT.value, num=_NUM.value,
                                      seed=_SEED.value) for path in argv[1:]]
    for image_set in sets:
      image_sets.report_skipped(image_set)
    inception_wanted = [m for m in wanted if m in metrics.INCEPTION_NAMES]
    weights, unavailable = None, None
    if inception_wanted or _SAVE_STATS.value:
      weights, unavailable = inception.find_or_download_inception_weights(_WEIGHTS.value)
    if _SAVE_STATS.value and (weights is None or sets[0].images is None):
      raise ValueError("--save_stats needs Inception weights and images in PATH1")
    if weights is None and any(s.images is None for s in sets):
      raise ValueError(f"statistics (.npz) compare only through Inception. {unavailable}")
    if weights is None and "swd" not in wanted:
      raise ValueError(f"--metrics {','.join(wanted)} needs Inception weights. {unavailable}")
    _check_sizes(sets, fid=weights is not None and "fid" in wanted)
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  if unavailable:
    print(f"SWD only. {unavailable}", file=sys.stderr, flush=True)
  variables = None if weights is None else inception.load_inception_params(weights)
  scores = image_sets.score(sets[0], sets[1], variables, seed=_SEED.value, wanted=tuple(wanted))
  if _SAVE_STATS.value:
    metrics.save_statistics(Path(_SAVE_STATS.value), *image_sets.statistics(sets[0], variables))
  print(json.dumps({"num": [s.size for s in sets], "skipped": [len(s.skipped) for s in sets],
                    "crop": preparation.crop, "resolution": preparation.resolution,
                    **scores}))


if __name__ == "__main__":
  cli.run(main, arguments=("PATH1", "PATH2"))
