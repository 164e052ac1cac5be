"""The training loop: `train_and_evaluate(config, workdir)`.

Resumes from the latest checkpoint in `workdir` (train state and data iterator), so
running the same command again continues where the last run stopped.
"""

import functools
import math
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections

from dcgan_jax import checkpointing, files, generate, parallel, run_dir, steps, summaries
from dcgan_jax.data import pipeline, sources
from dcgan_jax.eval import evaluator as evaluation
from dcgan_jax.train_state import (GanSetup, TrainState, abstract_state, init_state_on,
                                   setup_from_config, state_fingerprint)


def total_steps(train_config: ml_collections.ConfigDict, num_images: int) -> int:
  """`train.num_epochs` (when set) wins over `train.num_steps`."""
  if train_config.num_epochs:
    return pipeline.steps_for_epochs(train_config.num_epochs, num_images,
                                     train_config.batch_size)
  return train_config.num_steps


def create_or_restore_state(setup: GanSetup, seed: int, mesh: jax.sharding.Mesh,
                            manager, data_iterator) -> TrainState:
  """Initialises replicated on the mesh, or restores the latest checkpoint into it."""
  if manager.latest_step() is None:
    return init_state_on(setup, seed, parallel.replicated(mesh))
  return checkpointing.restore(manager, abstract_state(setup, parallel.replicated(mesh)),
                               data_iterator)


def _host_scalars(metrics: dict[str, jax.Array]) -> dict[str, float]:
  scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
  if not all(math.isfinite(v) for v in scalars.values()):
    raise FloatingPointError(f"non-finite metrics: {scalars}")
  return scalars


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
  """Trains to `train.num_steps` (or `train.num_epochs`), returns the final.json contents."""
  start_time = time.time()
  workdir = Path(workdir)
  source = sources.create_source(config.data, config.seed)
  # Checks the variant's names and combinations before anything is written.
  setup = setup_from_config(config, source.attribute_names)
  is_main_process = jax.process_index() == 0
  if is_main_process:
    workdir.mkdir(parents=True, exist_ok=True)
  mesh = parallel.make_mesh()
  parallel.check_global_batch_size(config.train.batch_size, mesh)

  num_steps = total_steps(config.train, len(source))
  manager = checkpointing.create_manager(workdir / "checkpoints", config.train.keep_checkpoints)
  has_checkpoints = manager.latest_step() is not None
  if is_main_process:
    run_dir.check_and_write_config(workdir, config, has_checkpoints)
  data_iterator = pipeline.create_train_iterator(
      config, source, jax.process_index(), jax.process_count())
  state = create_or_restore_state(setup, config.seed, mesh, manager, data_iterator)

  batch_sharding = parallel.batch_sharded(mesh)
  train_step = parallel.jit_train_step(functools.partial(steps.train_step, setup), mesh)
  variant = setup.variant
  sample_noise, sample_labels = generate.fixed_inputs(
      variant, source, config.seed, config.train.num_samples, generate.SAMPLE_NOISE_STREAM)
  writer = summaries.MetricWriter(workdir, enabled=is_main_process)

  def write_samples(step: int) -> None:
    images = generate.generate(variant, state, sample_noise, sample_labels)
    writer.write_sample_grid(step, summaries.image_grid(images))

  evaluator = best_manager = None
  if config.eval.every_steps:
    evaluator = evaluation.Evaluator(config, evaluation.cache_dir(config, workdir),
                                     num_samples=config.eval.num_samples,
                                     inception_weights=config.eval.inception_weights)
    if evaluator.unavailable_reason and is_main_process:
      print(f"evaluating SWD only. {evaluator.unavailable_reason}", flush=True)
    eval_noise, eval_labels = generate.fixed_inputs(
        variant, source, config.seed, evaluator.num_samples, generate.EVAL_NOISE_STREAM)
    best_manager = checkpointing.create_best_manager(workdir / "checkpoints_best")

  def evaluate(step: int) -> None:
    scores = evaluator(generate.generate(variant, state, eval_noise, eval_labels))
    writer.write_scalars(step, {f"eval_{name}": value for name, value in scores.items()})
    checkpointing.save_best(best_manager, state, scores[evaluation.selection_metric(scores)])

  first_step = int(jax.device_get(state.step))
  last_scalars: dict[str, float] = {}
  pending = None  # (step, metrics) of the last log step, read one step late.
  last_log_time, last_log_step = time.time(), first_step

  def log(step: int, metrics: dict[str, jax.Array]) -> None:
    nonlocal last_scalars, last_log_time, last_log_step
    scalars = _host_scalars(metrics)
    now = time.time()
    seconds_per_step = (now - last_log_time) / max(step - last_log_step, 1)
    images_per_second = config.train.batch_size / seconds_per_step
    last_log_time, last_log_step = now, step
    last_scalars = scalars | {"img_per_s": images_per_second, "elapsed_s": now - start_time}
    writer.write_scalars(step, last_scalars)
    if is_main_process:
      summaries.print_progress(step, num_steps, scalars, images_per_second,
                               eta_seconds=(num_steps - step) * seconds_per_step)

  for step in range(first_step + 1, num_steps + 1):
    batch = parallel.global_batch(next(data_iterator), batch_sharding)
    state, metrics = train_step(state, batch)
    if pending is not None:
      log(*pending)
      pending = None
    if step % config.train.log_every == 0 or step == num_steps:
      pending = (step, metrics)
    if step % config.train.sample_every == 0 or step == num_steps:
      write_samples(step)
    if evaluator and (step % config.eval.every_steps == 0 or step == num_steps):
      evaluate(step)
    if step % config.train.checkpoint_every == 0 or step == num_steps:
      checkpointing.save(manager, state, data_iterator)
  if pending is not None:
    log(*pending)

  manager.wait_until_finished()
  if best_manager is not None:
    best_manager.wait_until_finished()
  writer.close()
  final = {
      "step": int(jax.device_get(state.step)),
      "num_devices": mesh.size,
      "num_processes": jax.process_count(),
      "seconds": time.time() - start_time,
      "metrics": last_scalars,
      "state_fingerprint": state_fingerprint(state),
  }
  if is_main_process:
    files.write_json(workdir / "final.json", final)
    if config.train.write_report:
      # matplotlib is imported only here.
      from dcgan_jax.report import assemble, neighbours  # pylint: disable=g-import-not-at-top
      assemble.write_report(workdir, neighbour_space=neighbours.neighbour_space(
          config.eval.inception_weights or None))
  return final
