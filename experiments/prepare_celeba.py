"""Prepares CelebA (or a folder of face images) into ArrayRecord shards, once.

  python -m experiments.prepare_celeba --src img_align_celeba.zip --out data/celeba64

--src may be the official img_align_celeba.zip, the extracted img_align_celeba/
folder, the folder holding either plus list_attr_celeba.txt and list_eval_partition.txt
(or Kaggle's .csv versions), any folder of PNG/JPEG faces, or Hugging Face's parquet
files of CelebA (a .parquet file or a folder of them; needs the [parquet] extra).
Re-running after an interruption (Ctrl-C, SIGTERM or SIGKILL) finishes the work; the
record format is documented in dcgan_jax/data/shards.py.

Training takes the same --src as --config.data.dir too, and prepares it once into the
cache ($DCGAN_JAX_CACHE/prepared/, else ~/.cache/dcgan_jax/prepared/); this command is for
big datasets and clusters, where shards are prepared once, where they are wanted, and
shared by every run and host.
"""

from pathlib import Path

from absl import flags

from dcgan_jax.data import celeba_prepare, shards
from experiments import cli

_SRC = flags.DEFINE_string("src", None, "img_align_celeba.zip, an image folder or its parent, "
                                        "or parquet files (a .parquet file or their folder).")
_OUT = flags.DEFINE_string("out", None, "Output directory for the shards.")
_RESOLUTION = flags.DEFINE_integer("resolution", 64, "Output size in pixels (square).")
_CROP = flags.DEFINE_integer("crop", 178, "Centre square crop before resizing, in pixels.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 8, "Shards per split.")
_SPLIT = flags.DEFINE_enum("split", "all", ["all", *shards.SPLITS], "Which split(s) to write.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", None,
                                    "Decoding processes (default: all cores this process can use).")


def main(argv: list[str]) -> None:
  del argv
  missing = [f"--{flag.name}" for flag in (_SRC, _OUT) if not flag.value]
  if missing:
    cli.fail(f"{' and '.join(missing)} required, e.g. {shards.prepare_command('data/celeba64')}")
  if _NUM_WORKERS.value is not None and _NUM_WORKERS.value < 1:
    cli.fail(f"--num_workers {_NUM_WORKERS.value}: expected at least 1 (or leave it out for "
             f"all cores)")
  config = celeba_prepare.PrepareConfig(resolution=_RESOLUTION.value, crop=_CROP.value,
                                num_shards=_NUM_SHARDS.value, split=_SPLIT.value)
  # SIGTERM, like Ctrl-C, raises (cli.run): prepare then stops its workers before this
  # process ends.
  try:
    celeba_prepare.prepare(Path(_SRC.value), Path(_OUT.value), config, _NUM_WORKERS.value)
  except ValueError as error:  # a PrepareError, or --out in use by another prepare
    cli.fail(error)


if __name__ == "__main__":
  cli.run(main)
