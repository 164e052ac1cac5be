"""Conditional DCGAN on CelebA's attributes: the DCGAN (Radford et al. 2015) told what
face to draw, after the conditional GAN of Mirza & Osindero 2014 ("Conditional
Generative Adversarial Nets"), with the auxiliary classifier of Odena et al. 2017
("Conditional Image Synthesis with Auxiliary Classifier GANs", AC-GAN) and the
discriminator's projection head of Miyato & Koyama 2018 ("cGANs with Projection
Discriminator").

From Mirza & Osindero: the generator's input is z concatenated with the condition y
(here the +1/-1 attribute vector; `model.g_condition=concat`). From Odena et al.: D also
predicts the attributes, learning them from real faces, and G is rewarded when its fakes
are classified as asked, with the class terms' weight 1 as in the paper
(`loss.aux_classifier_weight`; see dcgan_jax/losses/auxiliary_classifier.py for where
multi-label attributes depart from it). From Miyato & Koyama: D adds the inner product
of an embedding of y with its final features. Everything else is `dcgan.py` (the
paper's networks and Adam 2e-4, beta1 0.5, batch 128), so a comparison with it isolates
the conditioning.

It conditions on five attributes, Male, Smiling, Eyeglasses, Blond_Hair and Black_Hair
(`--config.model.attributes=` names others; empty means all the data has). The
settings were chosen by measurement on the shared CelebA sample at 32x32 (nf 32, batch
64, 2,000 steps, seed 0 unless said; attr_accuracy by the project's attribute classifier,
SWD on 1,000 images; README, "Conditioning"):
- all 40 attributes: G followed none (attr_accuracy 0.54 with conditional BatchNorm and
  the projection alone, 0.61 with AC-GAN added): a forced attribute contradicts the
  others drawn from a real face (Male=1 beside that face's Heavy_Makeup=1);
- these five, conditional BatchNorm (`model.g_condition=cbn`): the projection alone 0.67
  (SWD 23.1); with AC-GAN 0.80 and 0.78 over seeds 0 and 1 (SWD 18.9, 22.0);
- these five, z and y concatenated, with AC-GAN: 0.81 and 0.83 (SWD 17.2, 19.1): kept;
- against that, each one change: an AC weight of 3 (with cbn) 0.82 (SWD 23.0); a G EMA of
  0.999, 0.77 (SWD 31.6); spectral norm and the hinge loss in D, 0.78 (SWD 44.4); D's lr
  1e-4, 0.81 (SWD 25.4).
Over seeds 0-2 the preset reaches 0.818 ± 0.007 (Male 0.89, Smiling 0.93, Eyeglasses 0.92,
Blond_Hair 0.65, Black_Hair 0.70) with SWD 19.7 ± 3.6 against the DCGAN's 19.1 ± 3.4.
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
  config.loss.aux_classifier_weight = 1.0
  return common.apply_variant(config, variant)
