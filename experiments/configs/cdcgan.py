"""Conditional DCGAN on CelebA's attributes: the DCGAN (Radford et al. 2015) told what
face to draw, after the conditional GAN of Mirza & Osindero 2014 ("Conditional
Generative Adversarial Nets"), with the auxiliary classifier of Odena et al. 2017
("Conditional Image Synthesis with Auxiliary Classifier GANs", AC-GAN) and an average of
G's weights for sampling (Yazici et al. 2019, "The Unusual Effectiveness of Averaging in
GAN Training").

From Mirza & Osindero: the generator's input is z concatenated with the condition y
(here the +1/-1 attribute vector; `model.g_condition=concat`). From Odena et al.: D also
predicts the attributes, learning them from real faces, and G is rewarded when its fakes
are classified as asked (`loss.aux_classifier_weight`, here 2.5 where the paper's class
terms weigh 1; see dcgan_jax/losses/auxiliary_classifier.py for where multi-label
attributes depart from it); D's adversarial output is the DCGAN's, without the
projection head of Miyato & Koyama 2018 (`model.d_projection=False`). From Yazici et
al.: samples and evaluations from an exponential moving average of G, decay 0.99.
Everything else is `dcgan.py` (the paper's networks and Adam 2e-4, beta1 0.5, batch 128),
so a comparison with it isolates the conditioning.

It conditions on five attributes, Male, Smiling, Eyeglasses, Blond_Hair and Black_Hair
(`--config.model.attributes=` names others; empty means all the data has). The
settings were chosen by measurement on the shared CelebA sample at 32x32 (nf 32, batch
64, 2,000 steps; attr_accuracy by the project's attribute classifier, SWD on 1,000
images; README, "Conditioning"). Over seeds 0-2, with samples drawn as they are now (a
conditional generator's BatchNorm by its running averages):
- these settings: attr_accuracy 0.977 ± 0.003, each attribute 0.96 or more (SWD 18.5 ±
  1.0; the README's table, by `experiments.compare`);
- each in a population scored with training's evaluation noise against seed 0 of these
  settings there, 0.978 (SWD 18.7): conditional BatchNorm (`model.g_condition=cbn`),
  0.960 ± 0.007, Black_Hair 0.93 (SWD 20.9 ± 1.6); the projection head beside AC-GAN
  (`model.d_projection=True`), 0.957 ± 0.001, Black_Hair 0.91 (SWD 18.3 ± 0.9); seed 0
  alone, an AC weight of 5, 0.982 (SWD 21.3), of 10, 0.982 (SWD 43.5).
Earlier comparisons drew each request's faces with their batch's BatchNorm statistics,
which subtracted what a whole batch was asked (hair colour most: runs of these settings
read 0.78 on Blond_Hair and 0.84 on Black_Hair that way, where the README's read 0.98
and 0.96), and asked for an attribute by forcing it into any training face's row. By
attr_accuracy then (and SWD):
- all 40 attributes: G followed none (0.54 with conditional BatchNorm and the projection
  alone, 0.61 with AC-GAN added): a forced attribute contradicts the others drawn from a
  real face (Male=1 beside that face's Heavy_Makeup=1);
- the five, z and y concatenated, AC-GAN beside the projection: 0.818 ± 0.007 over seeds
  0-2 (SWD 19.7 ± 3.6). Against it, each one change: an AC weight of 3 (with cbn) 0.82
  (SWD 23.0); a G EMA of 0.999, 0.77 (SWD 31.6), of 0.99, 0.83 (SWD 15.9); spectral norm
  and the hinge loss in D, 0.78 (SWD 44.4); D's lr 1e-4, 0.81 (SWD 25.4); DiffAugment
  translation and cutout, 0.79 (SWD 21.0); ADC-GAN's classifier
  (`loss.aux_classifier=adcgan`) 0.75 (SWD 18.3); without the projection, 0.85 (SWD 17.0);
- without the projection, with an EMA of 0.99, over seeds 0-2: half the fakes asked for
  one forced attribute (`train.forced_attribute_rate=0.5`), AC weight 1, 0.850 ± 0.010;
  2.5, 0.867 ± 0.008; none forced, AC weight 2.5, 0.874 ± 0.002 (SWD 16.9 ± 0.9): kept.
  Seed 0 alone against it: conditional BatchNorm 0.80 (SWD 21.0); an EMA of 0.995, 0.88
  (SWD 17.2).
The `:tiny` variant conditions on all the attributes of its data.

  python -m experiments.celeba --workdir runs/cdcgan --config experiments/configs/cdcgan.py \
      --config.data.dir=data/celeba64
  python -m experiments.sample --workdir runs/cdcgan --out_dir faces \
      --attribute_grid Male,Smiling
"""

import ml_collections

from experiments.configs import common, dcgan

ATTRIBUTES = "Male,Smiling,Eyeglasses,Blond_Hair,Black_Hair"


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = dcgan.dcgan_config()
  config.model.condition = "attributes"
  # Any data's attributes: the synthetic faces the tiny runs use have no Male.
  config.model.attributes = "" if variant == "tiny" else ATTRIBUTES
  config.model.d_projection = False
  config.loss.aux_classifier_weight = 2.5
  config.train.g_ema_decay = 0.99
  return common.apply_variant(config, variant)
