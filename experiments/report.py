"""Writes a report of a trained run: curves, faces and an index.html in DIR/report/.

  python -m experiments.report --workdir DIR [--num_neighbours 8] [--seed 0] [--inception_weights PATH]

Open DIR/report/index.html in a browser.
"""

from pathlib import Path

from absl import flags

from dcgan_jax.report import assemble, neighbours
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.", required=True)
_NUM_NEIGHBOURS = flags.DEFINE_integer("num_neighbours", 8,
                                       "Training images shown beside each generated face.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the latent noise and of the images chosen.")
_WEIGHTS = flags.DEFINE_string(
    "inception_weights", None, "pt_inception-2015-12-05-6726825d.pth for nearest neighbours in "
    "Inception space (default: search the cache; pixel space without it).")


_MEMBER = cli.define_member_flag()


def main(argv: list[str]) -> None:
  del argv
  try:
    report_dir = assemble.write_report(Path(_WORKDIR.value), num_neighbours=_NUM_NEIGHBOURS.value,
                                     seed=_SEED.value,
                                     neighbour_space=neighbours.neighbour_space(_WEIGHTS.value),
                                     member=_MEMBER.value)
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  print(f"wrote {report_dir / 'index.html'}")


if __name__ == "__main__":
  cli.run(main)
