"""Member k of a population trains as the solo run of its seed and settings, step by
step: on every fixed-network preset, over swept settings, vmapped or one by one."""

import jax
import numpy as np
import pytest

from dcgan_jax import population
from tests import population_runs
from tests.preset_runs import PRESETS, tiny_preset


@pytest.mark.parametrize("name", PRESETS)
def test_each_member_of_a_presets_population_is_the_solo_run_of_its_seed(name):
  config = tiny_preset(name)
  config.population.seeds = "3,0"
  names = population_runs.attribute_names(config)
  batches = population_runs.random_batches(config, names, 2)
  members, state, metrics = population_runs.train_population(config, names, batches)
  assert [member.seed for member in members.members] == [3, 0]
  # The second member: not the first one's seed, batches or place in the stack.
  population_runs.assert_member_is_solo_run(config, names, members, state, metrics, batches,
                                            indices=[1])


def test_each_member_of_a_sweep_is_the_solo_run_of_its_settings():
  """Swept learning rates, betas, EMA decay (0 among them) and loss weights reach each
  member as traced values: a member trained with another's would differ by an Adam step
  per parameter."""
  config = tiny_preset("wgan_gp")
  config.train.d_steps = 2
  config.population.seeds = "1"
  config.population.sweep = ("train.d_lr=1e-4,3e-4;train.g_ema_decay=0,0.9;train.g_beta1=0;"
                             "loss.penalty_weight=1")
  batches = population_runs.random_batches(config, (), 4)
  members, state, metrics = population_runs.train_population(config, (), batches)
  assert [dict(member.settings) for member in members.members][1] == {
      "train.d_lr": 1e-4, "train.g_ema_decay": 0.9, "train.g_beta1": 0.0,
      "loss.penalty_weight": 1.0}
  population_runs.assert_member_is_solo_run(config, (), members, state, metrics, batches)
  # A member with decay 0 samples with its generator itself.
  no_ema = population.of_member(state, 2)
  for ema, params in zip(jax.tree.leaves(no_ema.g_ema_params), jax.tree.leaves(no_ema.g_params)):
    np.testing.assert_array_equal(np.asarray(ema), np.asarray(params))


def test_vmapped_members_train_as_members_one_after_another():
  config = tiny_preset("dcgan")
  config.population.seeds = "0,1,2,3"
  batches = population_runs.random_batches(config, (), 4)
  members, state, metrics = population_runs.train_population(config, (), batches)
  config.population.vmap_members = 4
  _, vmapped_state, vmapped_metrics = population_runs.train_population(config, (), batches)
  for one, other in zip(jax.tree.leaves((state, metrics)),
                        jax.tree.leaves((vmapped_state, vmapped_metrics))):
    np.testing.assert_allclose(np.asarray(one), np.asarray(other), rtol=1e-4, atol=1e-5)
