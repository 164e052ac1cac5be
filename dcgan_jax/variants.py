"""The one seam where a GAN variant is chosen: `variant_from_config(config)`.

A `Variant` carries the generator and discriminator modules, the loss, and how latents
are drawn; the train step, sampling, evaluation and the report work through it and never
name a concrete network or loss. Parts are found by config name in the registries below
(`model.arch`, `loss.name`); adding a variant is one entry there and its own module.
"""

import dataclasses
import difflib
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dcgan_jax import growth, losses
from dcgan_jax.losses import (Batch, PyTree, auxiliary_classifier, hinge, least_squares,
                              minimax, non_saturating, penalties, wasserstein)
from dcgan_jax.models import dcgan, layers, mlp, progan, resnet


@dataclasses.dataclass(frozen=True)
class Variant:
  """A GAN: its two networks, its objective and its latent distribution. Static: rebuilt
  from the config, never saved. Network state (BatchNorm statistics) travels beside the
  parameters, in and out of every train-mode call."""

  generator: nn.Module
  discriminator: nn.Module
  loss: losses.Loss
  z_dim: int
  resolution: int
  # A conditional variant's attributes and where each sits in the data's label rows.
  attributes: tuple[str, ...] = ()
  label_columns: tuple[int, ...] = ()
  # How the generator takes them (`G_CONDITIONS`): appended to z, or through every
  # BatchNorm's scale and bias.
  g_condition: str = "concat"
  # A growing variant's schedule (None: fixed networks at `resolution`), the stage its
  # networks are built for and how far that stage has faded in (a traced scalar inside
  # a step; see `at_step`).
  schedule: growth.Schedule | None = None
  stage: int = 0
  alpha: float | jax.Array = 1.0

  @property
  def image_resolution(self) -> int:
    """The resolution of the images the networks make and judge at this stage."""
    return self.schedule.resolution(self.stage) if self.schedule else self.resolution

  def stage_at(self, step: int) -> int:
    """The stage of step `step` (counted from 0); always 0 for fixed networks."""
    return self.schedule.stage_at(step) if self.schedule else 0

  def at_stage(self, stage: int) -> "Variant":
    """The variant with networks built for `stage` (compiled separately per stage)."""
    if not self.schedule:
      return self
    return dataclasses.replace(self, stage=stage, generator=self.generator.clone(stage=stage),
                               discriminator=self.discriminator.clone(stage=stage))

  def at_step(self, step: jax.Array | int) -> "Variant":
    """The variant as it is at step `step` of its stage: its fade-in alpha set."""
    if not self.schedule:
      return self
    alpha = self.schedule.alpha(self.stage, step)
    return dataclasses.replace(self, alpha=alpha, generator=self.generator.clone(alpha=alpha),
                               discriminator=self.discriminator.clone(alpha=alpha))

  def after_steps(self, num_steps: int) -> "Variant":
    """The variant at the stage of the last of `num_steps` steps: what a state at step
    `num_steps` draws samples with (`steps.generate_images` sets the alpha)."""
    return self.at_stage(self.stage_at(max(num_steps - 1, 0)))

  def real_images(self, x_BHWC: jax.Array) -> jax.Array:
    """Training images ([-1, 1], at `resolution`) as the discriminator is shown them at
    this stage: box-filtered to its resolution and, while it fades in, blended with the
    previous stage's resolution just as the generator's output is."""
    if not self.schedule:
      return x_BHWC
    return growth.fade_images(x_BHWC, self.image_resolution, self.stage, self.alpha)

  @property
  def conditional(self) -> bool:
    return bool(self.attributes)

  def sample_latents(self, key: jax.Array, num: int) -> jax.Array:
    """(num, z_dim) standard normal latents."""
    return jax.random.normal(key, (num, self.z_dim))

  def init_variables(self, g_key: jax.Array, d_key: jax.Array) -> tuple[PyTree, PyTree]:
    """Fresh variables {'params', 'batch_stats'} of the generator and the discriminator;
    'batch_stats' (the mutable state) is empty for a network without any."""
    z = jnp.zeros((1, self.z_dim), jnp.float32)
    x = jnp.zeros((1, self.image_resolution, self.image_resolution, 3), jnp.float32)
    y = (jnp.zeros((1, len(self.attributes)), jnp.float32),) if self.conditional else ()
    return ({"batch_stats": {}, **self.generator.init(g_key, *self._generator_inputs(z, *y),
                                                      train=False)},
            {"batch_stats": {}, **self.discriminator.init(d_key, x, *y, train=False)})

  def condition(self, labels: jax.Array) -> jax.Array:
    """float32 (B, len(attributes)): the +1/-1 attributes the variant is conditioned on,
    taken from the data's label rows (B, A)."""
    return labels[:, jnp.array(self.label_columns, jnp.int32)].astype(jnp.float32)

  def _generator_inputs(self, z: jax.Array, *attributes: jax.Array) -> tuple[jax.Array, ...]:
    """The generator's arguments from latents and a conditional variant's attributes."""
    if not attributes:
      return (z,)
    if self.g_condition == "cbn":
      return (z, *attributes)
    return (jnp.concatenate([z, *attributes], axis=-1),)

  def generate(self, g_params: PyTree, g_state: PyTree, z: jax.Array,
               labels: jax.Array | None, *, train: bool = True) -> tuple[jax.Array, PyTree]:
    """Images in [-1, 1] from latents and, for a conditional variant, the data's label
    rows, whose chosen attributes reach the generator as `g_condition` says."""
    attributes = (self.condition(labels),) if self.conditional else ()
    return _apply(self.generator, g_params, g_state, self._generator_inputs(z, *attributes),
                  train)

  def discriminate(self, d_params: PyTree, d_state: PyTree, batch: Batch, *,
                   train: bool = True) -> tuple[jax.Array, PyTree]:
    """The discriminator's outputs on batch["image"] (and, if conditional, on the chosen
    attributes of batch["label"], through its projection head). Train mode by default:
    then it is the `losses.Critic` the losses are given."""
    inputs = (batch["image"],)
    if self.conditional:
      inputs += (self.condition(batch["label"]),)
    return _apply(self.discriminator, d_params, d_state, inputs, train)

  def discriminator_features(self, d_params: PyTree, d_state: PyTree, images: jax.Array
                             ) -> list[tuple[str, jax.Array]]:
    """Every module output inside the discriminator (eval mode), as (path, array) in the
    order the modules ran, for looking at what it responds to."""
    paths = []  # filled while tracing: a returned dict would come back in sorted order

    def features(variables: PyTree, images: jax.Array) -> list[jax.Array]:
      _, captured = self.discriminator.apply(variables, images, train=False,
                                             capture_intermediates=True,
                                             mutable=["intermediates"])
      found = []

      def visit(tree: Mapping[str, Any], path: str) -> None:
        for name, value in tree.items():
          if name == "__call__":
            found.append((path, value[0]))
          elif isinstance(value, Mapping):
            visit(value, f"{path}/{name}" if path else name)

      visit(captured["intermediates"], "")
      # The entry without a path is the network's own output, not one of its features.
      paths.extend(path for path, _ in found if path)
      return [value for path, value in found if path]

    # One compiled program: op by op, a spectrally normalised D compiles a hundred.
    values = jax.jit(features)({"params": d_params, "batch_stats": d_state}, images)
    return list(zip(paths, values))


def _apply(module: nn.Module, params: PyTree, state: PyTree, inputs: tuple[jax.Array, ...],
           train: bool) -> tuple[jax.Array, PyTree]:
  variables = {"params": params, "batch_stats": state}
  if not train:
    return module.apply(variables, *inputs, train=False), state
  out, updates = module.apply(variables, *inputs, train=True, mutable=["batch_stats"])
  return out, updates.get("batch_stats", state)


def _dcgan_networks(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  dtype = jnp.dtype(config.model.dtype)
  impl = check_name("model.impl", config.model.impl, layers.IMPLS)
  d_norm = _d_norm(config, dcgan.D_NORMS)
  return (dcgan.Generator(resolution=config.data.resolution, nf=config.model.nf, dtype=dtype,
                          impl=impl),
          dcgan.Discriminator(nf=config.model.nf, dtype=dtype, impl=impl, norm=d_norm,
                              heads=_d_heads(config)))


def _mlp_networks(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  """`model.nf` is the width of the first hidden layer, as it is DCGAN's first channels."""
  _d_norm(config, mlp.D_NORMS)
  return (mlp.Generator(resolution=config.data.resolution, hidden=config.model.nf),
          mlp.Discriminator(hidden=config.model.nf, heads=_d_heads(config)))


def _resnet_networks(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  resnet.num_blocks(config.data.resolution)  # a one-line error below 32 px
  return (resnet.Generator(resolution=config.data.resolution, nf=config.model.nf),
          resnet.Discriminator(nf=config.model.nf, norm=_d_norm(config, resnet.D_NORMS),
                               heads=_d_heads(config)))


def _progan_networks(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  """Built for stage 0; `Variant.at_stage` grows them."""
  _d_norm(config, progan.D_NORMS)
  progan.num_stages(config.data.resolution)  # a one-line error for a bad resolution
  return (progan.Generator(max_resolution=config.data.resolution, nf=config.model.nf,
                           stage=0, alpha=1.0),
          progan.Discriminator(max_resolution=config.data.resolution, nf=config.model.nf,
                               stage=0, alpha=1.0))


# config.model.arch -> builds (generator, discriminator) from the config.
ARCHITECTURES: dict[str, Callable[[ml_collections.ConfigDict], tuple[nn.Module, nn.Module]]] = {
    "dcgan": _dcgan_networks,
    "mlp": _mlp_networks,
    "resnet": _resnet_networks,
    "progan": _progan_networks,
}
# config.loss.name -> the objective.
LOSSES: dict[str, losses.Loss] = {
    "non_saturating": non_saturating.LOSS,
    "minimax": minimax.LOSS,
    "least_squares": least_squares.LOSS,
    "hinge": hinge.LOSS,
    "wasserstein": wasserstein.LOSS,
}


def check_name(key: str, name: str, known: Iterable[str]) -> str:
  """`name`, or a one-line error naming the config key, the known names and the closest."""
  known = list(known)
  if name not in known:
    close = difflib.get_close_matches(name, known, n=1)
    raise ValueError(f"{key} {name!r} is unknown; expected one of: {', '.join(known)}"
                     + (f"; did you mean {close[0]!r}?" if close else ""))
  return name


def _d_norm(config: ml_collections.ConfigDict, supported: tuple[str, ...]) -> str:
  """`model.d_norm`: a known name (`dcgan.D_NORMS` holds them all) that the discriminator
  of `model.arch` has."""
  d_norm = check_name("model.d_norm", config.model.d_norm, dcgan.D_NORMS)
  if d_norm not in supported:
    raise ValueError(f"model.arch={config.model.arch} has no model.d_norm={d_norm}; set "
                     f"model.d_norm to one of: {', '.join(supported)}")
  return d_norm


# loss.aux_classifier: D's head for it (`layers.CLASSIFIER_HEADS`).
_CLASSIFIER_HEADS = {"acgan": "classifier", "adcgan": "discriminative_classifier"}


def _d_heads(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """What a conditional discriminator does with the attributes: the heads of
  `layers.conditional_output`."""
  return ((("projection",) if config.model.d_projection else ())
          + ((choose("loss.aux_classifier", config.loss.aux_classifier, _CLASSIFIER_HEADS),)
             if config.loss.aux_classifier_weight else ()))


def choose(key: str, name: str, registry: Mapping[str, Any]) -> Any:
  """registry[name], or the one-line error of `check_name`."""
  return registry[check_name(key, name, registry)]


def _check_combination(config: ml_collections.ConfigDict) -> None:
  """Combinations that cannot work, as one line naming the keys."""
  if config.model.arch == "progan" and config.model.condition != "none":
    raise ValueError("model.arch=progan has no conditional networks; set model.condition=none")
  if check_name("model.g_condition", config.model.g_condition, G_CONDITIONS) == "cbn":
    if config.model.condition == "none":
      raise ValueError("model.g_condition=cbn conditions the generator's BatchNorms on "
                       "attributes: set model.condition=attributes, or model.g_condition=concat")
    if config.model.arch not in ("dcgan", "resnet"):
      raise ValueError(f"model.g_condition=cbn needs BatchNorm in the generator, which "
                       f"model.arch={config.model.arch} has not: use dcgan or resnet")
  if config.model.condition != "none" and not _d_heads(config):
    raise ValueError("model.d_projection=False with loss.aux_classifier_weight=0 leaves D "
                     "blind to the attributes, so nothing teaches G to follow them: keep "
                     "the projection or give the auxiliary classifier a weight")
  if config.train.forced_attribute_rate and config.model.condition == "none":
    raise ValueError("train.forced_attribute_rate forces attributes of the fakes: set "
                     "model.condition=attributes, or train.forced_attribute_rate=0")
  if config.loss.aux_classifier_weight and config.model.condition == "none":
    raise ValueError("loss.aux_classifier_weight trains D to predict the attributes: set "
                     "model.condition=attributes, or loss.aux_classifier_weight=0")
  if config.loss.penalty != "none" and config.model.d_norm == "batch":
    raise ValueError(f"loss.penalty={config.loss.penalty} needs per-sample input gradients, "
                     f"which model.d_norm=batch mixes across the batch; use model.d_norm="
                     f"layer, spectral or none")


CONDITIONS = ("none", "attributes")
G_CONDITIONS = ("concat", "cbn")


def _conditioning(config: ml_collections.ConfigDict, attribute_names: Sequence[str]
                  ) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """`model.condition` and `model.attributes` (comma-separated; empty: every attribute of
  the data), resolved against the data's attribute names: (names, columns)."""
  if check_name("model.condition", config.model.condition, CONDITIONS) == "none":
    return (), ()
  if not attribute_names:
    data = (f"data.dir {config.data.dir}" if config.data.source == "celeba"
            else f"data.source={config.data.source}")
    raise ValueError(f"model.condition=attributes needs images with attributes, but {data} "
                     f"has none; prepare CelebA with its list_attr_celeba.txt or set "
                     f"model.condition=none")
  chosen = [name.strip() for name in config.model.attributes.split(",") if name.strip()]
  for name in chosen:
    check_name("model.attributes: attribute", name, attribute_names)
  names = tuple(chosen) if chosen else tuple(attribute_names)
  return names, tuple(list(attribute_names).index(name) for name in names)


def setting(config: ml_collections.ConfigDict, settings: Mapping[str, Any], key: str) -> Any:
  """The value of the dotted `key`: from `settings` when it is there (a population
  member's, perhaps a traced scalar), else from the config."""
  if key in settings:
    return settings[key]
  section, name = key.split(".")
  return config[section][name]


def variant_from_config(config: ml_collections.ConfigDict,
                        attribute_names: Sequence[str] = (),
                        settings: Mapping[str, Any] = MappingProxyType({})) -> Variant:
  """The config's variant. `attribute_names`: the label names of the training data, which
  a conditional variant (`model.condition=attributes`) picks its attributes from.
  `settings`: loss weights that replace the config's (`setting`); the config still decides
  which terms the loss has."""
  build_networks = choose("model.arch", config.model.arch, ARCHITECTURES)
  loss = choose("loss.name", config.loss.name, LOSSES)
  penalty = choose("loss.penalty", config.loss.penalty, penalties.PENALTIES)
  generator, discriminator = build_networks(config)
  _check_combination(config)
  if penalty is not None:
    loss = penalties.with_penalty(loss, penalty, setting(config, settings, "loss.penalty_weight"))
  if config.loss.drift_weight:
    loss = penalties.with_penalty(loss, penalties.drift,
                                  setting(config, settings, "loss.drift_weight"),
                                  metric="d_drift")
  attributes, label_columns = _conditioning(config, attribute_names)
  if config.loss.aux_classifier_weight:
    loss = auxiliary_classifier.with_auxiliary_classifier(
        loss, setting(config, settings, "loss.aux_classifier_weight"), label_columns,
        config.loss.aux_classifier)
  schedule = None
  if config.model.arch == "progan":
    schedule = growth.Schedule(
        batch_sizes=growth.parse_batch_sizes(config.growth.batch_sizes, config.data.resolution,
                                             config.train.batch_size),
        fade_images=config.growth.fade_images, stable_images=config.growth.stable_images)
  return Variant(generator=generator, discriminator=discriminator, loss=loss,
                 z_dim=config.model.z_dim, resolution=config.data.resolution,
                 attributes=attributes, label_columns=label_columns,
                 g_condition=config.model.g_condition, schedule=schedule)
