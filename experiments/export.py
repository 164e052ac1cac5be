"""Writes a trained run's generator as one file, of the kind --out's suffix names.

  python -m experiments.export --workdir DIR --out generator.safetensors [--step K | --best]
  python -m experiments.export --workdir DIR --out generator.onnx [--step K | --best]

.safetensors: the generator's variables (its weights the EMA's, when the run keeps one)
and, for a conditional run, the attributes of every training face, with the config, step
and attribute names in its metadata; `dcgan_jax.load_generator(FILE)` draws from it exactly
as from the run. .onnx: a graph from float latents z (N, z_dim) (and, for a conditional
run, float +1/-1 attributes (N, A)) to uint8 images (N, R, R, 3), for any N, computing
`Generator.generate` on that batch. Both need the [export] extra; an existing --out is
never replaced.
"""

from pathlib import Path

from absl import flags

from dcgan_jax import export, generator
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.", required=True)
_OUT = flags.DEFINE_string("out", None, "The file to write: NAME.safetensors or NAME.onnx.",
                           required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BEST = flags.DEFINE_bool("best", False, "Export the best checkpoint (lowest FID, else SWD, "
                          "of the evaluations during training) instead.")
_MEMBER = cli.define_member_flag()


def main(argv: list[str]) -> None:
  del argv
  out = Path(_OUT.value)
  try:
    if _BEST.value and _STEP.value is not None:
      raise ValueError("--best and --step each choose the checkpoint; give one")
    export.check_out(out)
    trained = generator.load_generator(Path(_WORKDIR.value),
                                       "best" if _BEST.value else _STEP.value, _MEMBER.value)
    size = export.write(trained, out)
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  print(f"wrote {out} (step {trained.step}, {size / 1e6:.2f} MB)")


if __name__ == "__main__":
  cli.run(main)
