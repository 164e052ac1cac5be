"""The train state (one pytree) and the static pieces that act on it."""

import dataclasses
import functools
import hashlib
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dcgan_jax import augment
from dcgan_jax.variants import Variant, setting, variant_from_config

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; saved whole in every checkpoint.

  `*_batch_stats` hold each network's mutable state (its BatchNorm statistics); the
  field names are those of the first checkpoints, which still resume.
  """

  step: jax.Array
  g_params: PyTree
  d_params: PyTree
  g_batch_stats: PyTree
  d_batch_stats: PyTree
  g_opt_state: optax.OptState
  d_opt_state: optax.OptState
  key: jax.Array  # Base key; the step folds in `step` so a resumed run draws the same.

  @property
  def sampling_params(self) -> PyTree:
    """The generator parameters to draw samples with."""
    return self.g_params


@flax.struct.dataclass
class EmaTrainState(TrainState):
  """The state of a run with `train.g_ema_decay` > 0: also an exponential moving average
  of g_params, which samples, evaluations and reports use. A subclass rather than an
  optional field, so states and checkpoints of runs without an EMA keep their layout."""

  g_ema_params: PyTree

  @property
  def sampling_params(self) -> PyTree:
    return self.g_ema_params


@dataclasses.dataclass(frozen=True)
class GanSetup:
  """The variant and how it is trained: static, rebuilt from the config, never saved."""

  variant: Variant
  g_optimizer: optax.GradientTransformation
  d_optimizer: optax.GradientTransformation
  d_steps: int
  # 0: no EMA of the generator; a traced scalar in a population step, whose state
  # then says whether it keeps an EMA.
  g_ema_decay: float | jax.Array = 0.0
  augment: tuple[str, ...] = ()  # DiffAugment policy applied to everything D sees
  # The fraction of fakes asked for one attribute forced to a value (`steps.fake_labels`).
  forced_attribute_rate: float = 0.0

  def at_stage(self, stage: int) -> "GanSetup":
    """The setup whose variant is built for `stage` (`Variant.at_stage`)."""
    return dataclasses.replace(self, variant=self.variant.at_stage(stage))


def setup_from_config(config: ml_collections.ConfigDict,
                      attribute_names: Sequence[str] = (),
                      settings: Mapping[str, Any] = MappingProxyType({})) -> GanSetup:
  """The setup of `config`; `attribute_names` are the training data's label names, which
  a conditional variant picks its attributes from. `settings` replace the config's
  continuous values (learning rates, betas, EMA decay, loss weights) with a population
  member's, which may be traced scalars (`variants.setting`)."""
  def value(key: str) -> Any:
    return setting(config, settings, key)

  return GanSetup(
      variant=variant_from_config(config, attribute_names, settings),
      g_optimizer=optax.adam(value("train.g_lr"), b1=value("train.g_beta1"),
                             b2=value("train.g_beta2")),
      d_optimizer=optax.adam(value("train.d_lr"), b1=value("train.d_beta1"),
                             b2=value("train.d_beta2")),
      d_steps=config.train.d_steps,
      g_ema_decay=value("train.g_ema_decay"),
      augment=augment.parse_policy(config.data.augment),
      forced_attribute_rate=config.train.forced_attribute_rate,
  )


def init_state(setup: GanSetup, seed: int) -> TrainState:
  """Fresh parameters and optimiser states, all drawn from `seed`."""
  g_key, d_key, train_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  g_vars, d_vars = setup.variant.init_variables(g_key, d_key)
  state = TrainState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_vars["params"],
      d_params=d_vars["params"],
      g_batch_stats=g_vars["batch_stats"],
      d_batch_stats=d_vars["batch_stats"],
      g_opt_state=setup.g_optimizer.init(g_vars["params"]),
      d_opt_state=setup.d_optimizer.init(d_vars["params"]),
      key=train_key,
  )
  if setup.g_ema_decay:
    return EmaTrainState(**vars(state), g_ema_params=g_vars["params"])
  return state


def init_state_on(setup: GanSetup, seed: int, sharding: jax.sharding.Sharding) -> TrainState:
  """`init_state` compiled once and laid out with `sharding` (e.g. replicated on a mesh)."""
  return jax.jit(functools.partial(init_state, setup, seed), out_shardings=sharding)()


def abstract_state(setup: GanSetup, sharding: jax.sharding.Sharding) -> TrainState:
  """Shapes, dtypes and `sharding` of the state, for restoring a checkpoint into."""
  shapes = jax.eval_shape(functools.partial(init_state, setup, 0))
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), shapes)


def step_of(state: TrainState) -> int:
  """The step a state is at; a population's stacked states are all at one step."""
  return int(np.ravel(jax.device_get(state.step))[0])


def state_fingerprint(state: TrainState) -> str:
  """sha256 over every array of the state, in pytree order, with its path.

  Replicated arrays are read from this process's first shard, so every process of a
  multi-host run computes the same value without gathering.
  """
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaf = leaf.addressable_data(0)
    array = np.ascontiguousarray(jax.device_get(leaf))
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(str(array.dtype).encode())
    digest.update(array.tobytes())
  return digest.hexdigest()
