"""Throughput of the full train step (D and G updates), optionally against PyTorch eager.

  python -m experiments.bench [--batch_size 128] [--resolution 64] [--nf 64] [--steps 20]
                              [--compare_torch] [--dtype float32|bfloat16] [--impl fast]
                              [--population P [--vmap_members V]]

Prints one JSON line. The JAX step is the one training runs (the synthetic config with
the flags' overrides): jitted as the training loop jits it, data-parallel over every
device, state donated, uint8 batches already on the devices. With `--compare_torch`, a
PyTorch eager step of the same network, batch and optimiser runs in the same process;
with `--population P`, the population step of P seeds (`dcgan_jax.population`) against P
solo runs stepped in turn: `images_per_s` is then the solo runs' aggregate,
`population_images_per_s` the population's and `speedup` their ratio. Whatever is
compared is timed in alternating rounds, so that load from other processes falls on all
alike.
"""

import functools
import json
import os
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
from absl import flags

from dcgan_jax import parallel, population, steps
from dcgan_jax.data import pipeline
from dcgan_jax.train_state import init_state_on, setup_from_config
from experiments import cli
from experiments.configs import synthetic

_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_RESOLUTION = flags.DEFINE_integer("resolution", 64, "Image size.")
_NF = flags.DEFINE_integer("nf", 64, "Base channel count.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per framework, after warm-up.",
                              lower_bound=1)
_ROUNDS = flags.DEFINE_integer("rounds", 4, "Alternating rounds the timed steps are split into.",
                               lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.", lower_bound=0)
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_IMPL = flags.DEFINE_enum("impl", "fast", ["fast", "reference"], "Convolution implementation.")
_COMPARE_TORCH = flags.DEFINE_bool("compare_torch", False, "Also time PyTorch eager.")
_POPULATION = flags.DEFINE_integer(
    "population", 0, "Members (seeds 0..P-1) of a population step to time against as many "
    "solo runs; 0: one solo run.", lower_bound=0)
_VMAP_MEMBERS = flags.DEFINE_integer(
    "vmap_members", 0, "population.vmap_members: members vmapped at a time (0: the default "
    "of the backend).", lower_bound=0)

# Runs `n` steps and returns once their results are ready.
StepRunner = Callable[[int], None]


def bench_config() -> ml_collections.ConfigDict:
  """The synthetic config with the flags' overrides, shared by both frameworks."""
  config = synthetic.get_config()
  config.data.resolution = _RESOLUTION.value
  config.model.nf, config.model.dtype, config.model.impl = _NF.value, _DTYPE.value, _IMPL.value
  config.train.batch_size = _BATCH_SIZE.value
  return config


def random_batch(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  shape = (config.train.batch_size, config.data.resolution, config.data.resolution, 3)
  return {"image": np.random.default_rng(0).integers(0, 256, shape, np.uint8),
          "label": np.zeros((config.train.batch_size, 0), np.int8)}


def jax_runner(config: ml_collections.ConfigDict, num_runs: int = 1
               ) -> tuple[StepRunner, dict]:
  """`num_runs` solo runs (seeds config.seed, +1, ...), one step of each in turn."""
  setup = setup_from_config(config)
  mesh = parallel.make_mesh()
  parallel.check_global_batch_size(config.train.batch_size, mesh)
  batch = parallel.global_batch(random_batch(config), parallel.batch_sharded(mesh))
  states = [init_state_on(setup, config.seed + run, parallel.replicated(mesh))
            for run in range(num_runs)]
  train_step = parallel.jit_train_step(functools.partial(steps.train_step, setup), mesh)

  start = time.perf_counter()
  compiled = train_step.lower(states[0], batch).compile()
  compile_seconds = time.perf_counter() - start

  def run(num_steps: int) -> None:
    for _ in range(num_steps):
      for index, state in enumerate(states):
        states[index], metrics = compiled(state, batch)
    jax.block_until_ready(metrics)

  device = jax.devices()[0]
  info = {"device_kind": device.device_kind, "device_count": jax.device_count(),
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          # glibc's malloc settings change CPU step times (see the README's Performance).
          "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
          "compile_s": round(compile_seconds, 2)}
  return run, info


def population_runner(config: ml_collections.ConfigDict, num_members: int
                      ) -> tuple[StepRunner, dict]:
  """The population step of `num_members` seeds, each member given the same batch."""
  config.population.seeds = ",".join(str(seed) for seed in range(num_members))
  members = population.from_config(config)
  mesh = parallel.make_population_mesh(num_members)
  state = population.init_population(members, parallel.member_sharded(mesh))
  settings = jax.device_put(members.settings(), parallel.member_sharded(mesh))
  batch = jax.device_put(pipeline.stack_batches([random_batch(config)] * num_members),
                         parallel.member_batch_sharded(mesh))
  train_step = population.population_step(members, mesh, _VMAP_MEMBERS.value)

  start = time.perf_counter()
  compiled = train_step.lower(state, batch, settings).compile()
  compile_seconds = time.perf_counter() - start

  def run(num_steps: int) -> None:
    nonlocal state
    for _ in range(num_steps):
      state, metrics = compiled(state, batch, settings)
    jax.block_until_ready(metrics)

  return run, {"population": num_members, "mesh": dict(mesh.shape),
               "vmap_members": _VMAP_MEMBERS.value
               or population.default_vmap_members(num_members),
               "population_compile_s": round(compile_seconds, 2)}


def peak_jax_memory() -> dict:
  stats = jax.devices()[0].memory_stats() or {}
  return {"peak_memory_bytes": stats.get("peak_bytes_in_use")}


def torch_runner(config: ml_collections.ConfigDict) -> tuple[StepRunner, dict]:
  import torch  # pylint: disable=g-import-not-at-top
  # The PyTorch DCGAN is a test oracle; it lives with the tests of a source checkout.
  from tests import torch_reference  # pylint: disable=g-import-not-at-top

  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(config.seed)
  resolution = config.data.resolution
  train_step = torch_reference.TrainStep(resolution, config.model.nf, config.model.z_dim,
                                         lr=config.train.d_lr, device=device)
  images = torch.randint(0, 256, (config.train.batch_size, resolution, resolution, 3),
                         dtype=torch.uint8, device=device)
  autocast_dtype = torch.bfloat16 if config.model.dtype == "bfloat16" else None

  def run(num_steps: int) -> None:
    with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
      for _ in range(num_steps):
        d_loss, _ = train_step(images)
    d_loss.item()  # waits for the device

  return run, {"torch_version": torch.__version__, "torch_device": device,
               "torch_threads": torch.get_num_threads()}


def images_per_s(seconds: float, num_runs: int = 1) -> float:
  return round(_STEPS.value * _BATCH_SIZE.value * num_runs / seconds, 1)


def main(argv: list[str]) -> None:
  del argv
  result = {"batch_size": _BATCH_SIZE.value, "resolution": _RESOLUTION.value, "nf": _NF.value,
            "dtype": _DTYPE.value, "impl": _IMPL.value, "steps": _STEPS.value}
  config = bench_config()
  num_runs = max(_POPULATION.value, 1)
  runners = {"jax": jax_runner(config, num_runs)}
  if _POPULATION.value:
    runners["population"] = population_runner(config, _POPULATION.value)
  if _COMPARE_TORCH.value:
    runners["torch"] = torch_runner(config)
  seconds = dict.fromkeys(runners, 0.0)
  for run, info in runners.values():
    result |= info
    if _WARMUP.value:
      run(_WARMUP.value)
  rounds = min(_ROUNDS.value, _STEPS.value)
  for round_index in range(rounds):
    # Spread the timed steps over the rounds as evenly as whole steps allow.
    num_steps = (_STEPS.value * (round_index + 1)) // rounds - (_STEPS.value * round_index) // rounds
    for name, (run, _) in runners.items():
      start = time.perf_counter()
      run(num_steps)
      seconds[name] += time.perf_counter() - start
  result["images_per_s"] = images_per_s(seconds["jax"], num_runs)
  result |= peak_jax_memory()
  if _POPULATION.value:
    result["population_images_per_s"] = images_per_s(seconds["population"], num_runs)
    result["speedup"] = round(seconds["jax"] / seconds["population"], 2)
  if _COMPARE_TORCH.value:
    result["torch_images_per_s"] = images_per_s(seconds["torch"])
    result["jax_over_torch"] = round(seconds["torch"] / seconds["jax"], 2)
  print(json.dumps(result))


if __name__ == "__main__":
  cli.run(main)
