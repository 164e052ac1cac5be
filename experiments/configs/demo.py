"""The README's demo: the best faces the synthetic set gives in ten minutes on a 2-core CPU.

The DCGAN networks of Radford et al. 2015 at 32x32 (nf 32, batch 64, 3,000 steps, as
`synthetic.py`), with three changes that stop the discriminator from overpowering the
generator (under `synthetic.py` D(x) sits near 0.98 and D(G(z)) near 0.01 from step
1,000 on, and the faces keep a glitch band across the eyes):

- Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks":
  every discriminator layer spectrally normalised instead of batch normalised, the hinge
  loss, and their setting for the standard CNN with one D step per G step: Adam with
  learning rate 2e-4, beta1 0.5, beta2 0.999 (`synthetic.py`'s optimiser, unchanged).
- Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training": samples
  and evaluations from an exponential moving average of G's weights, decay 0.999.

  python -m experiments.celeba --workdir runs/demo --config demo
"""

import ml_collections

from experiments.configs import common, synthetic


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = synthetic.get_config()
  config.model.d_norm = "spectral"
  config.loss.name = "hinge"
  config.train.g_ema_decay = 0.999
  return common.apply_variant(config, variant)
