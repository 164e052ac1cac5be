"""The training loop: `train_and_evaluate(config, workdir)`.

Resumes from the latest checkpoint in `workdir` (train state and data iterator), so
running the same command again continues where the last run stopped.
"""

import contextlib
import functools
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dcgan_jax import (checkpointing, config_checks, files, generate, parallel, run_dir, steps,
                       summaries)
from dcgan_jax.data import pipeline, sources
from dcgan_jax.eval import attribute_classifier
from dcgan_jax.eval import evaluator as evaluation
from dcgan_jax.report import page
from dcgan_jax.train_state import (GanSetup, TrainState, abstract_state, init_state_on,
                                   setup_from_config, state_fingerprint)

if TYPE_CHECKING:  # imported where a report is written: it brings matplotlib
  from dcgan_jax.report import neighbours


def total_steps(train_config: ml_collections.ConfigDict, num_images: int) -> int:
  """`train.num_epochs` (when set) wins over `train.num_steps`."""
  if train_config.num_epochs:
    return pipeline.steps_for_epochs(train_config.num_epochs, num_images,
                                     train_config.batch_size)
  return train_config.num_steps


def stage_batch_size(setup: GanSetup, loader_batch_size: int, stage: int) -> int:
  """The global batch of a stage: a growing variant's own, else the loader's."""
  schedule = setup.variant.schedule
  return schedule.batch_sizes[stage] if schedule else loader_batch_size


def images_in_steps(setup: GanSetup, loader_batch_size: int, num_steps: int) -> int:
  schedule = setup.variant.schedule
  return schedule.images(num_steps) if schedule else num_steps * loader_batch_size


def _next_batch(data_iterator, count: int) -> dict[str, np.ndarray]:
  """`count` loader batches as one (a growing variant's stage may train on a multiple of
  the loader's batch)."""
  parts = [next(data_iterator) for _ in range(count)]
  if count == 1:
    return parts[0]
  return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


# DIR/sessions.json: one entry per training session, {"first_step", "step", "seconds"}.
SESSIONS = "sessions.json"


def earlier_sessions(workdir: Path) -> list[dict[str, float]]:
  """The sessions DIR/sessions.json records. A run written before they were recorded has
  at most its last final.json's, without a first step."""
  if (workdir / SESSIONS).exists():
    return run_dir.read_json(workdir / SESSIONS, list)
  final = _final_at(workdir / "final.json", None)
  return [{"step": final["step"], "seconds": final["seconds"]}] if final else []


def session_recorder(workdir: Path, earlier: list[dict[str, float]], first_step: int,
                     enabled: bool) -> Callable[[int, float], float]:
  """`record(step, seconds)`: this session, begun at `first_step`, reached `step` after
  `seconds`. Rewrites DIR/sessions.json with the earlier sessions and this one, atomically,
  so a session interrupted at any point keeps its time up to its last record; returns the
  seconds of all of them."""
  def record(step: int, seconds: float) -> float:
    sessions = [*earlier, {"first_step": first_step, "step": step, "seconds": seconds}]
    if enabled:
      files.write_json(workdir / SESSIONS, sessions)
    return sum(session["seconds"] for session in sessions)
  return record


class TrainingStopped(RuntimeError):
  """Training ended before its last step, its work saved: by a signal, or because the
  state went non-finite. The message, one line, says where and how to go on."""


def create_or_restore_state(setup: GanSetup, seed: int, mesh: jax.sharding.Mesh,
                            manager, data_iterator) -> TrainState:
  """Initialises replicated on the mesh, or restores the latest usable checkpoint into it
  (damaged ones are reported and set aside)."""
  if manager.latest_step() is None:
    return init_state_on(setup, seed, parallel.replicated(mesh))
  return checkpointing.restore_latest_usable(
      manager, abstract_state(setup, parallel.replicated(mesh)), data_iterator,
      report=lambda line: print(line, file=sys.stderr, flush=True))


def _host_scalars(metrics: dict[str, jax.Array]) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


@jax.jit
def _non_finite(state: TrainState, metrics: dict[str, jax.Array]) -> jax.Array:
  """Whether any float in the state or the metrics is NaN or infinite: one device
  reduction, run before anything is written from the state."""
  leaves = [x for x in jax.tree.leaves((state, metrics)) if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.logical_not(jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])))


@contextlib.contextmanager
def _stop_requests() -> Iterator[Callable[[], str | None]]:
  """While training: SIGTERM and SIGINT ask the loop to stop after the current step
  (instead of killing it), and the yielded function names the signal once one came.
  A second signal changes nothing, so it cannot interrupt the final save."""
  received: list[str] = []
  if threading.current_thread() is not threading.main_thread():
    yield lambda: None  # signal handlers can only be set from the main thread
    return

  def handle(signum, frame):
    del frame
    received.append(signal.Signals(signum).name)

  previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield lambda: received[0] if received else None
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, *,
                       allow_changes: Collection[str] = ()) -> dict[str, Any]:
  """Trains to `train.num_steps` (or `train.num_epochs`), returns the final.json contents.

  Everything is checked before anything is written: the config, the data, the variant,
  the workdir. A run already complete is left as it is. `allow_changes`: keys of
  `run_dir.RETRY_KEYS` that may differ from the checkpoints' config (e.g. to retry a run
  that diverged with other learning rates); the change is recorded in config.json.
  Raises TrainingStopped after a signal or divergence, with the work saved.
  """
  start_time = time.time()
  workdir = Path(workdir)
  config_checks.check_config(config)
  run_dir.check_allowed_changes(allow_changes)
  source = sources.create_source(config.data, config.seed)
  setup = setup_from_config(config, source.attribute_names)
  mesh = parallel.make_mesh()
  parallel.check_global_batch_size(config.train.batch_size, mesh)
  num_steps = total_steps(config.train, len(source))
  classifier = (attribute_classifier.for_run(config.eval.attribute_classifier, setup.variant)
                if config.eval.every_steps else None)
  is_main_process = jax.process_index() == 0
  if is_main_process:
    run_dir.make_workdir(workdir)
  # Only process 0 writes; the processes of a multi-host run share the workdir.
  with (files.locked(workdir, "--workdir") if is_main_process else contextlib.nullcontext()):
    return _train(config, workdir, setup, source, mesh, num_steps, allow_changes, start_time,
                  classifier)


def _train(config: ml_collections.ConfigDict, workdir: Path, setup: GanSetup,
           source: sources.Source, mesh: jax.sharding.Mesh, num_steps: int,
           allow_changes: Collection[str], start_time: float,
           classifier: attribute_classifier.TrainedClassifier | None) -> dict[str, Any]:
  is_main_process = jax.process_index() == 0
  checkpointing.check_checkpoint_directory(workdir / "checkpoints")
  manager = checkpointing.create_manager(workdir / "checkpoints", config.train.keep_checkpoints)
  resume_step = manager.latest_step()
  if resume_step is not None and resume_step > num_steps:
    manager.close()
    raise ValueError(f"{workdir} is at step {resume_step:,}, past train.num_steps "
                     f"{num_steps:,}; it is left as it is: raise the length to continue it, "
                     f"or use a new --workdir")
  config_json = run_dir.config_to_write(workdir, config, resume_step, allow_changes)
  data_identity = sources.data_identity(config.data, config.seed)
  run_dir.check_same_data(workdir, data_identity)
  final = _final_at(workdir / "final.json", num_steps) if resume_step == num_steps else None
  if final is not None:
    manager.close()
    if is_main_process:
      if config.train.write_report and page.report_step(workdir / "report") != num_steps:
        print(f"report {_write_report(config, workdir) / 'index.html'}", flush=True)
      print(f"run complete at step {num_steps}; raise train.num_steps to continue", flush=True)
    return final
  if is_main_process:
    files.write_json(workdir / "config.json", config_json)
    files.write_json(workdir / run_dir.DATA_RECORD, data_identity)
    epochs = images_in_steps(setup, config.train.batch_size, num_steps) / len(source)
    print(f"training {num_steps:,} steps ({epochs:,.2f} epochs of {len(source):,} images)"
          + (f", resuming from step {resume_step:,}" if resume_step else ""), flush=True)
  data_iterator = pipeline.create_train_iterator(
      config, source, jax.process_index(), jax.process_count())
  writer = summaries.MetricWriter(workdir, enabled=is_main_process)
  best_manager = None
  try:
    state = create_or_restore_state(setup, config.seed, mesh, manager, data_iterator)
    record_session = session_recorder(workdir, earlier_sessions(workdir),
                                      int(jax.device_get(state.step)), is_main_process)
    if config.eval.every_steps:
      best_manager = checkpointing.create_best_manager(workdir / "checkpoints_best")
    report_space = (_report_space(config) if config.train.write_report and is_main_process
                    else None)
    with _stop_requests() as stop_requested:
      state, last_scalars = _loop(config, workdir, setup, source, mesh, num_steps, state,
                                  manager, best_manager, data_iterator, writer, stop_requested,
                                  start_time, record_session, report_space, classifier)
  finally:
    checkpointing.finish(manager)
    manager.close()
    if best_manager is not None:
      checkpointing.finish(best_manager)
      best_manager.close()
    writer.close()
    if hasattr(data_iterator, "close"):  # stops grain's worker processes
      data_iterator.close()

  step = int(jax.device_get(state.step))
  seconds = time.time() - start_time
  final = {
      "step": step,
      "num_devices": mesh.size,
      "num_processes": jax.process_count(),
      "seconds": seconds,
      "total_seconds": record_session(step, seconds),
      "metrics": last_scalars,
      "eval": summaries.evaluation_scores(summaries.read_metrics(workdir / "metrics.jsonl")),
      "state_fingerprint": state_fingerprint(state),
  }
  if is_main_process:
    files.write_json(workdir / "final.json", final)
    written = [f"final.json {workdir / 'final.json'}"]
    grids = sorted((workdir / "samples").glob("step_*.png"))
    if grids:
      written.append(f"samples {grids[-1]}")
    if config.train.write_report:
      written.append(f"report {_write_report(config, workdir, report_space) / 'index.html'}")
    print("\n".join(written), flush=True)
  return final


def _final_at(path: Path, step: int | None) -> dict[str, Any] | None:
  """final.json if it describes `step` (any, for None); None if it is missing, older or
  damaged (then the run writes it again from its last checkpoint)."""
  try:
    final = run_dir.read_json(path)
  except (ValueError, FileNotFoundError):
    return None
  complete = (isinstance(final.get("step"), int)
              and isinstance(final.get("seconds"), (int, float)))
  return final if complete and step in (None, final["step"]) else None


def _report_space(config: ml_collections.ConfigDict) -> "neighbours.FeatureSpace":
  """Where the report measures nearness (Inception space when the weights are found):
  loaded once for the ETA's estimate of the report and the report itself."""
  # matplotlib is imported only where a report is written.
  from dcgan_jax.report import neighbours  # pylint: disable=g-import-not-at-top
  return neighbours.neighbour_space(config.eval.inception_weights or None)


def _write_report(config: ml_collections.ConfigDict, workdir: Path,
                  space: "neighbours.FeatureSpace | None" = None) -> Path:
  print("writing the report...", flush=True)
  from dcgan_jax.report import assemble  # pylint: disable=g-import-not-at-top
  return assemble.write_report(workdir, neighbour_space=space or _report_space(config))


def _report_seconds(source: sources.Source, space: "neighbours.FeatureSpace",
                    first_grid_seconds: float) -> float:
  """The ETA's estimate of the report: its neighbour search and figures, timed in part
  now, and running the networks, which compiles about as much as three first sample grids."""
  from dcgan_jax.report import assemble  # pylint: disable=g-import-not-at-top
  return 3 * first_grid_seconds + assemble.expected_seconds(source, space)


def _best_score_before(rows: summaries.MetricRows, step: int, resolution: int) -> float:
  """The best evaluation's score up to `step` (where a resumed run goes on from) at the
  final resolution; inf without one."""
  best = summaries.evaluation_scores([row for row in rows if row["step"] <= step]).get("best")
  if best is None or best.get("resolution", resolution) != resolution:
    return math.inf
  return best[evaluation.selection_metric(best)]


def _loop(config: ml_collections.ConfigDict, workdir: Path, setup: GanSetup,
          source: sources.Source, mesh: jax.sharding.Mesh, num_steps: int, state: TrainState,
          manager, best_manager, data_iterator, writer: summaries.MetricWriter,
          stop_requested: Callable[[], str | None], start_time: float,
          record_session: Callable[[int, float], float],
          report_space: "neighbours.FeatureSpace | None",
          classifier: attribute_classifier.TrainedClassifier | None
          ) -> tuple[TrainState, dict[str, float]]:
  """Steps from the state's step to `num_steps`; returns the state and the last logged
  scalars. The session's time is recorded at every log step and when it stops early. The
  ETA counts a report in `report_space` when one is given (process 0 writes it)."""
  is_main_process = jax.process_index() == 0
  batch_sharding = parallel.batch_sharded(mesh)
  compiled_steps: dict[int, Callable] = {}

  def train_step_of(stage: int) -> Callable:
    """The jitted step of a stage, compiled when the stage starts: one for fixed
    networks, one per resolution for growing ones."""
    if stage not in compiled_steps:
      compiled_steps.clear()
      compiled_steps[stage] = parallel.jit_train_step(
          functools.partial(steps.train_step, setup.at_stage(stage)), mesh)
    return compiled_steps[stage]

  variant = setup.variant
  sample_noise, sample_labels = generate.fixed_inputs(
      variant, source, config.seed, config.train.num_samples, generate.SAMPLE_NOISE_STREAM)

  first_step = int(jax.device_get(state.step))
  # Drawing the grid now compiles what the sample grids reuse, and times one for the ETA.
  started = time.perf_counter()
  generate.generate(variant.after_steps(first_step), state, sample_noise, sample_labels)
  expected_pauses = {"sample grid": time.perf_counter() - started}
  evaluator = None
  if config.eval.every_steps:
    evaluator = evaluation.Evaluator(config, evaluation.cache_dir(config, workdir),
                                     num_samples=config.eval.num_samples,
                                     inception_weights=config.eval.inception_weights,
                                     download_weights=config.eval.download_weights)
    if evaluator.unavailable_reason and is_main_process:
      print(f"evaluating SWD only. {evaluator.unavailable_reason}", flush=True)
    eval_noise, eval_labels = generate.fixed_inputs(
        variant, source, config.seed, evaluator.num_samples, generate.EVAL_NOISE_STREAM)
    # The ETA's estimate of an evaluation until one is measured: scoring the generated
    # images costs what sketching the real ones does, and generating them compiles about
    # what a first sample grid does.
    started = time.perf_counter()
    evaluator.prepare(variant.after_steps(first_step).image_resolution)
    expected_pauses["evaluation"] = (time.perf_counter() - started
                                     + expected_pauses["sample grid"])

  progress = summaries.Progress(first_step, num_steps, enabled=is_main_process, intervals={
      "sample grid": config.train.sample_every,
      "evaluation": config.eval.every_steps if evaluator else 0,
      "checkpoint": config.train.checkpoint_every}, expected_pauses=expected_pauses,
      after_last_step=(_report_seconds(source, report_space, expected_pauses["sample grid"])
                       if report_space is not None else 0.0))
  logged = summaries.read_metrics(workdir / "metrics.jsonl")
  # A run stopped after its last step was logged resumes with nothing left to train.
  last_scalars = summaries.training_scalars_at(logged, first_step)
  pending = None  # (step, metrics) of the last log step, read one step late.
  best_score = _best_score_before(logged, first_step, variant.resolution)

  def log(step: int, metrics: dict[str, jax.Array]) -> None:
    nonlocal last_scalars
    scalars = _host_scalars(metrics)
    images_per_second = progress.update(step, scalars, stage_batch_size(
        setup, config.train.batch_size, variant.stage_at(step - 1)))
    elapsed = time.time() - start_time
    last_scalars = scalars | {"img_per_s": images_per_second, "elapsed_s": elapsed}
    writer.write_scalars(step, last_scalars)
    record_session(step, elapsed)

  def evaluate(step: int) -> None:
    nonlocal best_score
    grown = variant.after_steps(step)
    scores = evaluator(generate.generate(grown, state, eval_noise, eval_labels))
    if classifier is not None:
      scores |= attribute_classifier.generator_accuracy(grown, state, eval_noise, eval_labels,
                                                        classifier)
    if grown.schedule:
      scores |= {"resolution": float(grown.image_resolution)}
    writer.write_scalars(step, {f"eval_{name}": value for name, value in scores.items()})
    # Per-attribute scores (attr_accuracy/<name>) go to the logs, their mean to the line.
    line = f"eval step {step}: " + ", ".join(f"{name} {value:.4g}" for name, value in scores.items()
                                             if "/" not in name)
    if grown.image_resolution != variant.resolution:
      # Scores at a growing run's smaller resolutions do not compare with the final one's.
      progress.write(line)
      return
    metric = evaluation.selection_metric(scores)
    checkpointing.save_best(best_manager, state, scores[metric])
    is_best = scores[metric] < best_score
    best_score = min(best_score, scores[metric])
    progress.write(line + (" (best)" if is_best else ""))

  def stop_diverged(step: int) -> None:
    checkpointing.finish(manager)
    record_session(step, time.time() - start_time)
    good = manager.latest_step()
    where = (f"the last good checkpoint, step {good} in {workdir / 'checkpoints'}, is kept; "
             f"to retry from it with other learning rates, rerun with e.g. "
             f"--config.train.g_lr=... --config.train.d_lr=... "
             f"--allow_changes=train.g_lr,train.d_lr" if good is not None
             else "no checkpoint was written yet; start again with other learning rates")
    raise TrainingStopped(f"training diverged: non-finite parameters or metrics at step "
                          f"{step}; {where}")

  try:
    for step in range(first_step + 1, num_steps + 1):
      stage = variant.stage_at(step - 1)
      local_batch = _next_batch(data_iterator, stage_batch_size(
          setup, config.train.batch_size, stage) // config.train.batch_size)
      state, metrics = train_step_of(stage)(state, parallel.global_batch(local_batch,
                                                                         batch_sharding))
      if pending is not None:
        log(*pending)
        pending = None
      signal_name = stop_requested()
      stopping = parallel.any_process(signal_name is not None)
      last = step == num_steps
      is_log_step = last or step % config.train.log_every == 0
      is_sample_step = last or step % config.train.sample_every == 0
      is_eval_step = evaluator and (last or step % config.eval.every_steps == 0)
      is_checkpoint_step = last or stopping or step % config.train.checkpoint_every == 0
      if ((is_log_step or is_sample_step or is_eval_step or is_checkpoint_step)
          and bool(_non_finite(state, metrics))):
        stop_diverged(step)
      if is_log_step:
        pending = (step, metrics)
      if is_sample_step:
        with progress.paused("sample grid"):
          images = generate.generate(variant.after_steps(step), state, sample_noise,
                                     sample_labels)
          writer.write_sample_grid(step, summaries.image_grid(images))
      if is_eval_step:
        with progress.paused("evaluation"):
          evaluate(step)
      if is_checkpoint_step:
        with progress.paused("checkpoint"):
          checkpointing.save(manager, state, data_iterator)
      if stopping:
        if pending is not None:
          log(*pending)
        checkpointing.finish(manager)
        record_session(step, time.time() - start_time)
        raise TrainingStopped(
            f"stopped by {signal_name or 'another process'} at step {step} of {num_steps}, "
            f"saved in {workdir / 'checkpoints'}; run the same command to resume")
    if pending is not None:
      log(*pending)
  finally:
    progress.close()
  return state, last_scalars
