"""Throughput of the full train step (D and G updates), optionally against PyTorch eager.

  python -m experiments.bench [--batch_size 128] [--resolution 64] [--nf 64] [--steps 20]
                              [--compare_torch] [--dtype float32|bfloat16] [--impl fast]

Prints one JSON line. The JAX step is the one training runs: data-parallel over every
device, state donated, batches of uint8 images already on the devices.
"""

import functools
import json
import time

from absl import app, flags
import jax
import numpy as np

from dcgan_jax import parallel, steps
from dcgan_jax.train_state import init_state, setup_from_config
from experiments.configs import celeba64

_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_RESOLUTION = flags.DEFINE_integer("resolution", 64, "Image size.")
_NF = flags.DEFINE_integer("nf", 64, "Base channel count.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps, after warm-up.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_IMPL = flags.DEFINE_enum("impl", "fast", ["fast", "reference"], "Convolution implementation.")
_COMPARE_TORCH = flags.DEFINE_bool("compare_torch", False, "Also time PyTorch eager.")


def _time_steps(step_fn, num_steps: int, sync) -> float:
  start = time.perf_counter()
  for _ in range(num_steps):
    result = step_fn()
  sync(result)
  return time.perf_counter() - start


def bench_jax() -> dict:
  config = celeba64.get_config()
  config.data.resolution = _RESOLUTION.value
  config.model.nf, config.model.dtype, config.model.impl = _NF.value, _DTYPE.value, _IMPL.value
  config.train.batch_size = _BATCH_SIZE.value
  setup = setup_from_config(config)
  mesh = parallel.make_mesh()
  parallel.check_global_batch_size(config.train.batch_size, mesh)
  replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  state = jax.jit(functools.partial(init_state, setup, 0), out_shardings=replicated)()
  train_step = jax.jit(functools.partial(steps.train_step, setup),
                       in_shardings=(replicated, batch_sharding),
                       out_shardings=(replicated, replicated), donate_argnums=0)
  rng = np.random.default_rng(0)
  images = jax.device_put(
      rng.integers(0, 256, (_BATCH_SIZE.value, _RESOLUTION.value, _RESOLUTION.value, 3),
                   np.uint8), batch_sharding)

  start = time.perf_counter()
  compiled = train_step.lower(state, images).compile()
  compile_seconds = time.perf_counter() - start

  def step():
    nonlocal state
    state, metrics = compiled(state, images)
    return metrics

  def sync(metrics):
    jax.block_until_ready(metrics)

  _time_steps(step, _WARMUP.value, sync)
  seconds = _time_steps(step, _STEPS.value, sync)
  device = jax.devices()[0]
  memory = device.memory_stats() or {}
  return {
      "device_kind": device.device_kind, "device_count": jax.device_count(),
      "compile_s": round(compile_seconds, 2),
      "images_per_s": round(_STEPS.value * _BATCH_SIZE.value / seconds, 1),
      "peak_memory_bytes": memory.get("peak_bytes_in_use"),
  }


def bench_torch() -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  from dcgan_jax import torch_reference  # pylint: disable=g-import-not-at-top

  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  step_fn = torch_reference.TrainStep(_RESOLUTION.value, _NF.value, 100, device=device)
  images = torch.randint(0, 256, (_BATCH_SIZE.value, _RESOLUTION.value, _RESOLUTION.value, 3),
                         dtype=torch.uint8, device=device)

  def step():
    return step_fn(images)

  def sync(losses):
    float(losses[0])  # waits for the device

  autocast = (torch.autocast(device, dtype=torch.bfloat16) if _DTYPE.value == "bfloat16"
              else torch.autocast(device, enabled=False))
  with autocast:
    _time_steps(step, _WARMUP.value, sync)
    seconds = _time_steps(step, _STEPS.value, sync)
  return {"torch_version": torch.__version__, "torch_device": device,
          "torch_threads": torch.get_num_threads(),
          "torch_images_per_s": round(_STEPS.value * _BATCH_SIZE.value / seconds, 1)}


def main(argv: list[str]) -> None:
  del argv
  result = {"batch_size": _BATCH_SIZE.value, "resolution": _RESOLUTION.value, "nf": _NF.value,
            "dtype": _DTYPE.value, "impl": _IMPL.value, "steps": _STEPS.value, **bench_jax()}
  if _COMPARE_TORCH.value:
    result |= bench_torch()
    result["jax_over_torch"] = round(result["images_per_s"] / result["torch_images_per_s"], 2)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
