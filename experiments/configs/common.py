"""Defaults shared by every experiment config."""

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
  """The DCGAN paper's hyperparameters; experiment configs override data and length."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.source = "synthetic"  # 'synthetic' or 'celeba'
  config.data.dir = ""  # prepared shards, for data.source='celeba'
  config.data.split = "train"
  config.data.resolution = 64
  config.data.num_images = 50_000  # synthetic faces only
  config.data.random_flip = True
  config.data.augment = ""  # DiffAugment policy for D's inputs, e.g. "color,translation,cutout"
  config.data.num_workers = 0  # grain worker processes; 0 reads in the training process
  config.data.num_threads = 1  # grain read threads: more only contend for the GIL here
  config.data.prefetch = 8

  config.model = ml_collections.ConfigDict()
  config.model.arch = "dcgan"  # generator and discriminator networks (dcgan_jax.variants)
  config.model.d_norm = "batch"  # discriminator normalisation: batch, spectral, layer, none
  # none, or attributes: G and D are given each image's attributes (CelebA's 40, or the
  # comma-separated subset in model.attributes; empty means all the data has).
  config.model.condition = "none"
  config.model.attributes = ""
  # How a conditional G takes the attributes: "concat" (appended to z) or "cbn" (every
  # BatchNorm's scale and bias a function of them; dcgan and resnet).
  config.model.g_condition = "concat"
  # Whether a conditional D adds the projection head's attribute term (Miyato & Koyama).
  config.model.d_projection = True
  config.model.nf = 64
  config.model.z_dim = 100
  config.model.dtype = "float32"  # compute dtype; params and optimiser stay float32
  config.model.impl = "fast"  # how convolutions are computed: 'fast' or 'reference' (same math)

  config.loss = ml_collections.ConfigDict()
  config.loss.name = "non_saturating"  # the GAN objective (dcgan_jax.variants)
  config.loss.penalty = "none"  # gradient penalty on D: none, gp (WGAN-GP) or r1
  config.loss.penalty_weight = 10.0
  config.loss.drift_weight = 0.0  # > 0: ProGAN's drift term, weight * mean D(real)^2
  # > 0 (conditional runs): AC-GAN's auxiliary classifier in D, its class terms' weight.
  config.loss.aux_classifier_weight = 0.0
  config.loss.aux_classifier = "acgan"  # its kind: acgan (Odena et al.) or adcgan (Hou et al.)

  # Progressive growing (model.arch=progan only): 4x4 up to data.resolution.
  config.growth = ml_collections.ConfigDict()
  config.growth.fade_images = 800_000  # images over which each new resolution fades in
  config.growth.stable_images = 800_000  # images each resolution then trains stabilised
  # Batch per resolution, e.g. "4:64,8:32": multiples of train.batch_size, which is what
  # the data loader serves; resolutions not named (all, if empty) use train.batch_size.
  config.growth.batch_sizes = ""

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128  # global batch, split over all devices
  config.train.num_steps = 10_000
  config.train.num_epochs = config_dict.placeholder(float)  # overrides num_steps when set
  config.train.d_steps = 1
  config.train.g_lr = 2e-4
  config.train.d_lr = 2e-4
  config.train.g_beta1 = 0.5
  config.train.g_beta2 = 0.999
  config.train.d_beta1 = 0.5
  config.train.d_beta2 = 0.999
  config.train.g_ema_decay = 0.0  # > 0: sample and evaluate with an EMA of G's parameters
  # Conditional runs: the fraction of fakes asked for one attribute forced to +1 or -1.
  config.train.forced_attribute_rate = 0.0
  config.train.log_every = 100
  config.train.sample_every = 1000
  config.train.checkpoint_every = 2000
  config.train.keep_checkpoints = 3
  config.train.num_samples = 64  # images in the fixed-noise grid
  config.train.write_report = True  # DIR/report/ (curves, grids, neighbours) at the end

  # A population (dcgan_jax.population): a member per seed and per combination of swept
  # values, trained by one jitted step; empty: one run with `seed`.
  config.population = ml_collections.ConfigDict()
  config.population.seeds = ""  # e.g. "0,1,2,3"
  config.population.sweep = ""  # e.g. "train.d_lr=1e-4,2e-4;train.g_ema_decay=0,0.999"
  config.population.vmap_members = 0  # members vmapped at a time; 0: 1 on CPU, all elsewhere

  config.eval = ml_collections.ConfigDict()
  config.eval.every_steps = 0  # 0: no evaluation during training
  config.eval.num_samples = 10_000  # generated (and real) images per evaluation
  # Fetch pytorch-fid's Inception weights on first use when they are not in the cache
  # ($DCGAN_JAX_OFFLINE=1 turns this off everywhere).
  config.eval.download_weights = True
  config.eval.inception_weights = ""  # path to pt_inception-2015-12-05-6726825d.pth; "" searches the cache
  config.eval.reference_num_images = 0  # real images behind the FID statistics; 0: the whole split
  # An attribute classifier's .msgpack (python -m experiments.attribute_classifier): with
  # it, a conditional run's evaluations also report attr_accuracy.
  config.eval.attribute_classifier = ""
  return config


def set_adam(config: ml_collections.ConfigDict, lr: float, beta1: float, beta2: float) -> None:
  """The same Adam settings for both networks."""
  for network in ("g", "d"):
    config.train[f"{network}_lr"] = lr
    config.train[f"{network}_beta1"] = beta1
    config.train[f"{network}_beta2"] = beta2


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """`FILE:tiny` turns any config into a seconds-long run, for tests and smoke runs."""
  if variant == "tiny":
    _make_tiny(config)
  elif variant:
    raise ValueError(f"unknown config variant {variant!r}; expected 'tiny' or none")
  return config


def _make_tiny(config: ml_collections.ConfigDict) -> None:
  config.data.resolution = 16
  config.data.num_images = 256
  config.data.num_threads = 1
  config.data.prefetch = 2
  config.model.nf = 8
  config.model.z_dim = 16
  config.train.batch_size = 16
  config.train.num_steps = 8
  config.train.num_epochs = None
  config.train.log_every = 2
  config.train.sample_every = 4
  config.train.checkpoint_every = 4
  config.train.num_samples = 16
  config.train.write_report = False
  config.eval.every_steps = 0
  config.eval.num_samples = 64
