"""Populations: many seeds or settings of one GAN trained by one jitted step.

`population.seeds="0,1,2,3"` makes a member per seed; `population.sweep=
"train.d_lr=1e-4,2e-4;train.g_ema_decay=0,0.999"` a member per combination of the listed
values, each with every seed (seeds vary fastest). Member k is the solo run of
`member_config(config, members[k])`: its initialisation, noise and data order come from
its seed exactly as that run's do. The population's state is the members' train states
stacked: every leaf has a leading member axis.

Swept values reach the step as traced scalars, so one program trains every member; only
continuous values can be swept (`SWEEPABLE_KEYS`), and anything that changes the networks'
shapes or the code is refused. The networks must be fixed: a growing variant compiles a
program per stage.
"""

import dataclasses
import functools
import itertools
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh, NamedSharding

from dcgan_jax import config_checks, parallel, steps
from dcgan_jax.losses import Batch, Metrics
from dcgan_jax.train_state import GanSetup, TrainState, init_state, setup_from_config

# Continuous settings a population may sweep: they enter the step as numbers only.
SWEEPABLE_KEYS = (
    "train.g_lr", "train.d_lr", "train.g_beta1", "train.g_beta2", "train.d_beta1",
    "train.d_beta2", "train.g_ema_decay", "loss.penalty_weight", "loss.drift_weight",
    "loss.aux_classifier_weight",
)
# Swept keys whose 0 switches a part off: members with 0 keep the part, weighted by 0
# (the EMA of a member with decay 0 is its generator). The auxiliary classifier is not
# among them: it adds a head to D, so its weight may not be swept through 0.
_SWITCHED_BY_ZERO = ("train.g_ema_decay", "loss.drift_weight")


def settings_text(settings: Mapping[str, float]) -> str:
  """A member's swept values as its tables and messages name them: "key=value, ..."."""
  return ", ".join(f"{key}={value:g}" for key, value in settings.items())


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a population: its seed and its values of the swept keys."""

  seed: int
  settings: tuple[tuple[str, float], ...] = ()

  def describe(self) -> str:
    settings = settings_text(dict(self.settings))
    return f"seed={self.seed}, {settings}" if settings else f"seed={self.seed}"

  def entry(self) -> dict[str, Any]:
    """The member as its final.json entry names it."""
    return {"seed": self.seed, "settings": dict(self.settings)}


def _parse_seeds(text: str) -> list[int]:
  try:
    seeds = [int(part) for part in text.split(",") if part.strip()]
  except ValueError:
    raise ValueError(f"population.seeds {text!r}: expected comma-separated integers, "
                     f"e.g. 0,1,2,3") from None
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"population.seeds {text!r} repeats a seed; each member needs its own")
  rule = config_checks.RULES["seed"]
  for seed in seeds:
    if not rule.holds(seed):
      raise ValueError(f"population.seeds: seed {seed}: expected {rule.expected}")
  return seeds


def parse_sweep(text: str) -> dict[str, list[float]]:
  """'train.d_lr=1e-4,2e-4;train.g_ema_decay=0,0.999' -> {key: values}, checked."""
  sweep: dict[str, list[float]] = {}
  for part in filter(str.strip, text.split(";")):
    key, equals, values = part.partition("=")
    key = key.strip()
    if not equals:
      raise ValueError(f"population.sweep {part.strip()!r}: expected KEY=V1,V2,... "
                       f"e.g. train.d_lr=1e-4,2e-4")
    if key not in SWEEPABLE_KEYS:
      raise ValueError(f"population.sweep cannot vary {key}: it changes the networks' "
                       f"shapes or the code, or is not a config key; the keys a population "
                       f"sweeps are {', '.join(SWEEPABLE_KEYS)}")
    if key in sweep:
      raise ValueError(f"population.sweep names {key} twice")
    try:
      sweep[key] = [float(value) for value in values.split(",") if value.strip()]
    except ValueError:
      raise ValueError(f"population.sweep {key}={values!r}: expected comma-separated "
                       f"numbers") from None
    if not sweep[key]:
      raise ValueError(f"population.sweep {key} has no values")
    rule = config_checks.RULES[key]
    for value in sweep[key]:
      if not rule.holds(value):
        raise ValueError(f"population.sweep {key}={value:g}: expected {rule.expected}")
  weights = sweep.get("loss.aux_classifier_weight", [])
  if 0.0 in weights and any(weights):
    raise ValueError("population.sweep loss.aux_classifier_weight mixes 0 and non-zero "
                     "weights: 0 removes D's attribute head, which changes its shapes")
  return sweep


def is_population(config: ml_collections.ConfigDict) -> bool:
  return bool(config.population.seeds.strip() or config.population.sweep.strip())


def members(config: ml_collections.ConfigDict) -> list[Member]:
  """The members of the config's population (its one run when it has none)."""
  seeds = _parse_seeds(config.population.seeds) or [config.seed]
  sweep = parse_sweep(config.population.sweep)
  combinations = itertools.product(*([(key, value) for value in values]
                                     for key, values in sweep.items()))
  return [Member(seed, combination) for combination in combinations for seed in seeds]


def check_population(config: ml_collections.ConfigDict) -> list[Member]:
  """The members, or one line saying why the config cannot train as a population."""
  population = members(config)
  if config.model.arch == "progan" and is_population(config):
    raise ValueError("a population trains fixed networks in one program; model.arch=progan "
                     "grows them (a program per stage): train its seeds one by one")
  return population


def member_config(config: ml_collections.ConfigDict, member: Member) -> ml_collections.ConfigDict:
  """The solo run's config that `member` of the population equals."""
  solo = ml_collections.ConfigDict(config.to_dict())
  solo.seed = member.seed
  for key, value in member.settings:
    section, name = key.split(".")
    solo[section][name] = value
  solo.population.seeds, solo.population.sweep = "", ""
  return solo


def structure_config(config: ml_collections.ConfigDict,
                     population: Sequence[Member]) -> ml_collections.ConfigDict:
  """A config whose parts are those every member needs: each swept key at its largest
  value, so a part that some member switches on is built for all (`_SWITCHED_BY_ZERO`)."""
  structure = member_config(config, population[0])
  for key in _SWITCHED_BY_ZERO:
    values = [dict(member.settings)[key] for member in population
              if key in dict(member.settings)]
    if values:
      section, name = key.split(".")
      structure[section][name] = max(values)
  return structure


@dataclasses.dataclass(frozen=True)
class Population:
  """A population's members, the config whose networks and loss terms they share
  (`structure_config`) and the training data's attribute names. Static, like `GanSetup`."""

  members: tuple[Member, ...]
  structure: ml_collections.ConfigDict
  attribute_names: tuple[str, ...] = ()

  def __len__(self) -> int:
    return len(self.members)

  @property
  def setup(self) -> GanSetup:
    """The setup every member's is but for its settings: what samples and scores them."""
    return setup_from_config(self.structure, self.attribute_names)

  def settings(self) -> dict[str, jax.Array]:
    """{swept key: float32 (P,)}: the members' values, the step's traced settings."""
    keys = [key for key, _ in self.members[0].settings]
    return {key: jnp.array([dict(member.settings)[key] for member in self.members], jnp.float32)
            for key in keys}


def from_config(config: ml_collections.ConfigDict,
                attribute_names: Sequence[str] = ()) -> Population:
  """The config's population (`check_population`'s members)."""
  population = check_population(config)
  return Population(tuple(population), structure_config(config, population),
                    tuple(attribute_names))


def members_of_run(config: ml_collections.ConfigDict, member: int | None,
                   workdir: Path) -> Population | None:
  """The population a run directory holds, with `member` checked against it (None for a
  solo run); one line naming `--member` where it does not fit the run."""
  if not is_population(config):
    if member is not None:
      raise ValueError(f"--member {member}: {workdir} is one run, not a population")
    return None
  population = from_config(config)
  if member is None or not 0 <= member < len(population):
    raise ValueError(f"--member: {workdir} holds a population of {len(population)} members; "
                     f"choose one with --member K, K from 0 to {len(population) - 1}"
                     + ("" if member is None else f" (got {member})"))
  return population


def _init_members(setup: GanSetup, seeds: jax.Array) -> TrainState:
  # One member after another: vmapped, the initialisers round differently from a solo
  # run's in the last bit, which Adam's first steps can amplify.
  return jax.lax.map(functools.partial(init_state, setup), seeds)


def _seeds(population: Population) -> jax.Array:
  return jnp.array([member.seed for member in population.members], jnp.uint32)


def init_population(population: Population, sharding: NamedSharding) -> TrainState:
  """Every member's fresh state, drawn from its seed as its solo run's is, stacked."""
  return jax.jit(functools.partial(_init_members, population.setup),
                 out_shardings=sharding)(_seeds(population))


def abstract_population(population: Population, sharding: NamedSharding) -> TrainState:
  """Shapes, dtypes and `sharding` of the stacked state, for restoring a checkpoint into."""
  shapes = jax.eval_shape(functools.partial(_init_members, population.setup), _seeds(population))
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), shapes)


def default_vmap_members(num_members: int) -> int:
  """How many members run as one vmapped program at a time (`population.vmap_members` 0):
  one on a CPU, where vmapped weights turn each matrix product into a batched one that
  XLA runs slower than the plain products one after another; all elsewhere."""
  return 1 if jax.default_backend() == "cpu" else num_members


def population_step(population: Population, mesh: Mesh, vmap_members: int = 0
                    ) -> Callable[[TrainState, Batch, dict[str, jax.Array]],
                                  tuple[TrainState, Metrics]]:
  """`step(state, batch, settings) -> (state, metrics)` over the stacked members, jitted,
  the state donated: the batch (P, B, ...), `population.settings()`, metrics (P,) per
  entry. Within each member group (a device's members when they are spread),
  `vmap_members` (0: `default_vmap_members`) run vmapped at a time and the rest one after
  another (`jax.lax.map`); the groups are vmapped across the mesh."""
  groups = mesh.shape[parallel.MEMBERS_AXIS]
  vmap_members = vmap_members or default_vmap_members(len(population))

  def member_step(arguments: tuple[TrainState, Batch, dict[str, jax.Array]]):
    state, batch, settings = arguments
    setup = setup_from_config(population.structure, population.attribute_names, settings)
    return steps.train_step(setup, state, batch)

  # lax.map vmaps even a batch of one, so one at a time is a plain map.
  batch_size = vmap_members if vmap_members > 1 else None

  def group_step(state, batch, settings):
    return jax.lax.map(member_step, (state, batch, settings), batch_size=batch_size)

  def step(state: TrainState, batch: Batch, settings: dict[str, jax.Array]):
    if groups == 1:
      return group_step(state, batch, settings)
    # Explicit sizes: a batch without attributes has a zero-sized axis.
    grouped = jax.tree.map(lambda x: x.reshape(groups, x.shape[0] // groups, *x.shape[1:]),
                           (state, batch, settings))
    return jax.tree.map(lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]),
                        jax.vmap(group_step)(*grouped))

  members_only = parallel.member_sharded(mesh)
  return jax.jit(step, in_shardings=(members_only, parallel.member_batch_sharded(mesh),
                                     members_only),
                 out_shardings=(members_only, members_only), donate_argnums=0)


def of_member(tree: Any, index: int) -> Any:
  """Member `index`'s part of stacked per-member arrays: its train state as its solo run
  holds it, its metrics."""
  return jax.tree.map(lambda leaf: leaf[index], tree)
