"""Fetches pytorch-fid's Inception weights, for FID, KID and IS.

  python -m experiments.download_weights [--url URL] [--dest DIR]

The file goes into DIR (default: $DCGAN_JAX_CACHE or ~/.cache/dcgan_jax/), where every
command finds it. It is kept only if its sha256 starts with the prefix in its name and
it holds the expected network; otherwise nothing is written.
"""

from absl import flags

from dcgan_jax.eval import inception
from experiments import cli

_URL = flags.DEFINE_string("url", inception.WEIGHTS_URL, "Where to fetch the weights file.")
_DEST = flags.DEFINE_string("dest", None, "Directory to put it in (default: the cache).")
_SHA256 = flags.DEFINE_string("sha256_prefix", None,
                              "Expected start of its sha256 (default: the one in its name).")


def main(argv: list[str]) -> None:
  del argv
  try:
    path = inception.download_inception_weights(_URL.value, _DEST.value,
                                                sha256_prefix=_SHA256.value)
  except ValueError as error:
    cli.fail(error)
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
