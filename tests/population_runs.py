"""A population and its members' solo runs trained step by step on the same random
batches, without the training loop: for comparing them (tests/test_population*.py), in the
test process or in one with several forced CPU devices."""

import functools

import jax
import ml_collections
import numpy as np

from dcgan_jax import parallel, population, steps
from dcgan_jax.data import sources
from dcgan_jax.train_state import init_state_on, setup_from_config
from tests.preset_runs import tiny_preset

NUM_STEPS = 2  # before Adam amplifies rounding in near-zero gradients (see preset_runs)


def random_batches(config: ml_collections.ConfigDict, attribute_names, num_members: int
                   ) -> list[list[dict[str, np.ndarray]]]:
  """NUM_STEPS random batches per member: every member sees other images."""
  rng = np.random.default_rng(7)
  size, resolution = config.train.batch_size, config.data.resolution
  return [[{"image": rng.integers(0, 256, (size, resolution, resolution, 3), np.uint8),
            "label": rng.choice(np.array([-1, 1], np.int8), (size, len(attribute_names)))}
           for _ in range(NUM_STEPS)] for _ in range(num_members)]


COLLECTIVES = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")


def train_population(config: ml_collections.ConfigDict, attribute_names, batches,
                      compiled_texts=None):
  """The population after NUM_STEPS steps on `batches`; the compiled step's HLO is appended
  to `compiled_texts` if given."""
  members = population.from_config(config, attribute_names)
  mesh = parallel.make_population_mesh(len(members))
  state = population.init_population(members, parallel.member_sharded(mesh))
  step = population.population_step(members, mesh, config.population.vmap_members)
  settings = jax.device_put(members.settings(), parallel.member_sharded(mesh))
  for t in range(NUM_STEPS):
    batch = jax.device_put({key: np.stack([member_batches[t][key] for member_batches in batches])
                            for key in batches[0][0]}, parallel.member_batch_sharded(mesh))
    if compiled_texts is not None and t == 0:
      compiled_texts.append(step.lower(state, batch, settings).compile().as_text())
    state, metrics = step(state, batch, settings)
  return members, state, metrics


def solo_start(setup, seed: int):
  """The initial state as training draws it: jitted (eager, XLA rounds otherwise)."""
  return init_state_on(setup, seed, jax.sharding.SingleDeviceSharding(jax.devices()[0]))


def train_solo(config: ml_collections.ConfigDict, attribute_names, batches):
  setup = setup_from_config(config, attribute_names)
  state = solo_start(setup, config.seed)
  step = jax.jit(functools.partial(steps.train_step, setup))
  for batch in batches:
    state, metrics = step(state, batch)
  return state, metrics


def assert_member_is_solo_run(config, attribute_names, members, state, metrics, batches,
                               indices=None):
  """Member k's whole state and metrics equal its solo run's to float tolerance, for each
  k in `indices` (all members by default)."""
  for index in range(len(members)) if indices is None else indices:
    member = members.members[index]
    solo_state, solo_metrics = train_solo(population.member_config(config, member),
                                           attribute_names, batches[index])
    member_state = population.of_member(state, index)
    if not hasattr(solo_state, "g_ema_params"):  # a member with decay 0 keeps its G as EMA
      member_state = type(solo_state)(**{field: getattr(member_state, field)
                                         for field in vars(solo_state)})
    for solo_leaf, member_leaf in zip(jax.tree.leaves(solo_state), jax.tree.leaves(member_state)):
      np.testing.assert_allclose(np.asarray(member_leaf), np.asarray(solo_leaf), rtol=1e-4,
                                 atol=1e-5, err_msg=f"member {index}")
    for name, value in solo_metrics.items():
      np.testing.assert_allclose(float(metrics[name][index]), float(value), rtol=1e-4,
                                 atol=1e-5, err_msg=f"member {index}: {name}")


def attribute_names(config: ml_collections.ConfigDict) -> list[str]:
  return sources.create_source(config.data, config.seed).attribute_names




def population_leaves(seeds: str) -> dict[str, np.ndarray]:
  """The state and metrics, by leaf index, of a tiny dcgan population of `seeds`, and
  ("collectives") how many cross-device operations its step compiled to."""
  config = tiny_preset("dcgan")
  config.population.seeds = seeds
  texts = []
  batches = random_batches(config, (), len(seeds.split(",")))
  _, state, metrics = train_population(config, (), batches, texts)
  leaves = {str(index): np.asarray(leaf)
            for index, leaf in enumerate(jax.tree.leaves((state, metrics)))}
  return leaves | {"collectives": np.array(sum(texts[0].count(op) for op in COLLECTIVES))}
