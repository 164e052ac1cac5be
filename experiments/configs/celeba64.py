"""CelebA 64x64 with the DCGAN paper's hyperparameters: the default `--config`, the same
config as `dcgan.py` (see there).

  python -m experiments.prepare_celeba --src img_align_celeba.zip --out data/celeba64
  python -m experiments.celeba --workdir runs/celeba64 --config.data.dir=data/celeba64

Append `:tiny` to the config path for a seconds-long smoke run.
"""

from experiments.configs.dcgan import get_config

__all__ = ["get_config"]
