"""Throughput of a growing run's train step at each stage, and the time of its schedule.

  python -m experiments.bench_growth [--config progan128] [--steps 10] [--warmup 2]
                                     [--config.model.nf=...] [--config.data.resolution=...]

Prints one JSON line per stage (resolution, batch, compile seconds, img/s), then one line
with the full schedule (`growth.*`, `train.num_steps`) timed from those rates. Each stage
runs the step training compiles for it, in the middle of its fade-in (both resolutions'
paths run), data-parallel over every device, on uint8 batches already on the devices.
"""

import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags

from dcgan_jax import parallel, steps
from dcgan_jax.train_state import init_state_on, setup_from_config
from experiments import cli

_CONFIG = config_flags.DEFINE_config_file("config", str(cli.CONFIG_DIR / "progan128.py"),
                                          "A growing run's config (a name or a path).")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per stage, after warm-up.",
                              lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.", lower_bound=0)


def stage_rate(setup, config, mesh, stage: int) -> dict:
  """One stage's compile time and img/s."""
  schedule = setup.variant.schedule
  batch_size = schedule.batch_sizes[stage]
  stage_step = schedule.start(stage) + schedule.fade_steps(stage) // 2
  state = init_state_on(setup, config.seed, parallel.replicated(mesh))
  state = state.replace(step=jax.device_put(jnp.int32(stage_step), parallel.replicated(mesh)))
  shape = (batch_size, config.data.resolution, config.data.resolution, 3)
  batch = parallel.global_batch({
      "image": np.random.default_rng(stage).integers(0, 256, shape, np.uint8),
      "label": np.zeros((batch_size, 0), np.int8),
  }, parallel.batch_sharded(mesh))
  train_step = parallel.jit_train_step(functools.partial(steps.train_step,
                                                         setup.at_stage(stage)), mesh)
  start = time.perf_counter()
  compiled = train_step.lower(state, batch).compile()
  compile_seconds = time.perf_counter() - start
  for _ in range(_WARMUP.value):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  return {"stage": stage, "resolution": schedule.resolution(stage), "batch_size": batch_size,
          "compile_s": round(compile_seconds, 2),
          "images_per_s": float(f"{_STEPS.value * batch_size / seconds:.3g}")}


def main(argv: list[str]) -> None:
  del argv
  config = _CONFIG.value
  try:
    setup = setup_from_config(config)
    if setup.variant.schedule is None:
      raise ValueError(f"--config: model.arch={config.model.arch} does not grow; use a "
                       f"growing config such as progan128")
    mesh = parallel.make_mesh()
    parallel.check_global_batch_size(config.train.batch_size, mesh)
  except ValueError as error:
    cli.fail(error)
  schedule = setup.variant.schedule
  device = jax.devices()[0]
  total_seconds = 0.0
  for stage in range(schedule.num_stages):
    rate = stage_rate(setup, config, mesh, stage)
    end = (schedule.start(stage + 1) if stage + 1 < schedule.num_stages
           else config.train.num_steps)
    stage_images = (schedule.images(min(end, config.train.num_steps))
                    - schedule.images(min(schedule.start(stage), config.train.num_steps)))
    total_seconds += stage_images / rate["images_per_s"]
    print(json.dumps(rate | {"schedule_images": stage_images,
                             "device_kind": device.device_kind,
                             "device_count": jax.device_count()}), flush=True)
  print(json.dumps({"num_steps": config.train.num_steps,
                    "images": schedule.images(config.train.num_steps),
                    "nf": config.model.nf, "resolution": config.data.resolution,
                    "schedule_hours": round(total_seconds / 3600, 2),
                    "peak_memory_bytes": (device.memory_stats() or {}).get("peak_bytes_in_use")}))


if __name__ == "__main__":
  cli.run(main)
