"""The training loop: `train_and_evaluate(config, workdir)`.

Resumes from the latest checkpoint in `workdir` (train state and data iterator), so
running the same command again continues where the last run stopped.
"""

import contextlib
import dataclasses
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

from dcgan_jax import (checkpointing, config_checks, files, generate, parallel, population,
                       run_dir, spread, steps, summaries)
from dcgan_jax.data import pipeline, sources
from dcgan_jax.eval import attribute_classifier
from dcgan_jax.eval import evaluator as evaluation
from dcgan_jax.report import page
from dcgan_jax.train_state import (GanSetup, TrainState, abstract_state, init_state_on,
                                   setup_from_config, state_fingerprint, step_of)

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
  return [{"step": final["step"], "seconds": final["seconds"]}] if isinstance(final, dict) else []


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


# DIR/population.md: a population's scores per swept setting, mean and spread over seeds.
POPULATION_TABLE = "population.md"


class TrainingStopped(RuntimeError):
  """Training ended before its last step, its work saved: by a signal, or because the
  state went non-finite. The message, one line, says where and how to go on."""


def create_or_restore_state(setup: GanSetup, seed: int, mesh: jax.sharding.Mesh,
                            manager, data_iterator,
                            members: population.Population | None = None) -> TrainState:
  """Initialises replicated on the mesh (a population's members spread over it), or
  restores the latest usable checkpoint into it (damaged ones are reported and set aside)."""
  if members is None:
    initial = functools.partial(init_state_on, setup, seed, parallel.replicated(mesh))
    abstract = functools.partial(abstract_state, setup, parallel.replicated(mesh))
  else:
    initial = functools.partial(population.init_population, members,
                                parallel.member_sharded(mesh))
    abstract = functools.partial(population.abstract_population, members,
                                 parallel.member_sharded(mesh))
  if manager.latest_step() is None:
    return initial()
  return checkpointing.restore_latest_usable(
      manager, abstract(), data_iterator,
      report=lambda line: print(line, file=sys.stderr, flush=True))


def _host_scalars(metrics: dict[str, jax.Array]) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def _any_non_finite(state: TrainState, metrics: dict[str, jax.Array]) -> jax.Array:
  """Whether any float in the state or the metrics is NaN or infinite: one device
  reduction, run before anything is written from the state."""
  leaves = [x for x in jax.tree.leaves((state, metrics)) if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.logical_not(jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])))


_non_finite = jax.jit(_any_non_finite)
# A population's, (P,): each member's reduction on the devices that hold it.
_non_finite_members = jax.jit(jax.vmap(_any_non_finite))


def _diverged(state: TrainState, metrics: dict[str, jax.Array], outputs: list["_Output"]
              ) -> list[int]:
  """The indices of the outputs whose state or metrics went non-finite."""
  if outputs[0].index is None:
    return [0] if bool(_non_finite(state, metrics)) else []
  return [int(index) for index in
          np.flatnonzero(parallel.to_host(_non_finite_members(state, metrics)))]


def _views(tree: Any, outputs: list["_Output"]) -> list[Any]:
  """Each output's part of the loop's state or metrics: the run's own for a solo run; a
  population's read to the host once and sliced there."""
  if outputs[0].index is None:
    return [tree]
  host = parallel.to_host(tree)
  return [population.of_member(host, output.index) for output in outputs]


def _call_all(closers: list[Callable[[], Any]]) -> None:
  """Calls each, even after one raised, then raises the first error: a save that failed
  on a full disk fails `checkpointing.finish` too and may fail a writer's flush, yet every
  file of the run is closed and the line that says why is the first one."""
  first_error = None
  for close in closers:
    try:
      close()
    except BaseException as error:  # pylint: disable=broad-exception-caught
      first_error = first_error or error
  if first_error is not None:
    raise first_error


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


@dataclasses.dataclass
class _Output:
  """What the loop writes for one run: the run itself (`index` None, in DIR), or member
  `index` of a population (in DIR/members/<index>/, laid out like a run directory)."""

  index: int | None
  config: ml_collections.ConfigDict  # the solo run's
  source: sources.Source
  workdir: Path
  writer: summaries.MetricWriter | None = None
  best_manager: Any = None
  last_scalars: dict[str, float] = dataclasses.field(default_factory=dict)

  @property
  def name(self) -> str:
    return "" if self.index is None else f"member {self.index}: "


def _outputs(config: ml_collections.ConfigDict, workdir: Path,
             members: population.Population | None,
             source: sources.Source) -> list[_Output]:
  if members is None:
    return [_Output(None, config, source, workdir)]
  outputs = []
  for index, member in enumerate(members.members):
    member_config = population.member_config(config, member)
    member_source = (source if member.seed == config.seed
                     else sources.create_source(config.data, member.seed))
    outputs.append(_Output(index, member_config, member_source,
                           run_dir.member_dir(workdir, index)))
  return outputs


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, *,
                       allow_changes: Collection[str] = ()
                       ) -> dict[str, Any] | list[dict[str, Any]]:
  """Trains to `train.num_steps` (or `train.num_epochs`), returns the final.json contents:
  a population's (`population.seeds`, `population.sweep`) is a list, an entry per member.

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
  if population.is_population(config):
    members = population.from_config(config, source.attribute_names)
    setup = members.setup
    mesh = parallel.make_population_mesh(len(members))
  else:
    members = None
    setup = setup_from_config(config, source.attribute_names)
    mesh = parallel.make_mesh()
  parallel.check_global_batch_size(config.train.batch_size, mesh)
  num_steps = total_steps(config.train, len(source))
  classifier = (attribute_classifier.for_run(config.eval.attribute_classifier, setup.variant)
                if config.eval.every_steps else None)
  outputs = _outputs(config, workdir, members, source)
  is_main_process = jax.process_index() == 0
  if is_main_process:
    run_dir.make_workdir(workdir)
  # Only process 0 writes; the processes of a multi-host run share the workdir.
  with (files.locked(workdir, "--workdir") if is_main_process else contextlib.nullcontext()):
    return _train(config, workdir, setup, members, outputs, mesh, num_steps, allow_changes,
                  start_time, classifier)


def _train(config: ml_collections.ConfigDict, workdir: Path, setup: GanSetup,
           members: population.Population | None, outputs: list[_Output],
           mesh: jax.sharding.Mesh, num_steps: int, allow_changes: Collection[str],
           start_time: float, classifier: attribute_classifier.TrainedClassifier | None
           ) -> dict[str, Any] | list[dict[str, Any]]:
  is_main_process = jax.process_index() == 0
  source = outputs[0].source  # the members' data differ at most in their seeds' synthetic faces
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
      if config.train.write_report:
        for output in outputs:
          if page.report_step(output.workdir / "report") != num_steps:
            print(f"{output.name}report "
                  f"{_write_report(config, workdir, output.index) / 'index.html'}", flush=True)
      print(f"run complete at step {num_steps}; raise train.num_steps to continue", flush=True)
    return final
  if is_main_process:
    files.write_json(workdir / "config.json", config_json)
    files.write_json(workdir / run_dir.DATA_RECORD, data_identity)
    for output in outputs:
      if output.index is not None:  # a member's directory reads like its solo run's
        output.workdir.mkdir(parents=True, exist_ok=True)
        files.write_json(output.workdir / "config.json", run_dir.config_as_dict(output.config))
    epochs = images_in_steps(setup, config.train.batch_size, num_steps) / len(source)
    print(f"training {num_steps:,} steps ({epochs:,.2f} epochs of {len(source):,} images)"
          + (f" for each of {len(members)} members" if members else "")
          + (f", resuming from step {resume_step:,}" if resume_step else ""), flush=True)
  iterators = [pipeline.create_train_iterator(output.config, output.source, jax.process_index(),
                                              jax.process_count()) for output in outputs]
  data_iterator = iterators[0] if members is None else pipeline.MemberBatches(iterators)
  for output in outputs:
    output.writer = summaries.MetricWriter(
        output.workdir, enabled=is_main_process,
        row_fields={} if output.index is None else {"member": output.index})
  try:
    state = create_or_restore_state(setup, config.seed, mesh, manager, data_iterator, members)
    record_session = session_recorder(workdir, earlier_sessions(workdir),
                                      step_of(state), is_main_process)
    if config.eval.every_steps:
      for output in outputs:
        output.best_manager = checkpointing.create_best_manager(
            output.workdir / "checkpoints_best")
    report_space = (_report_space(config) if config.train.write_report and is_main_process
                    else None)
    with _stop_requests() as stop_requested:
      state = _loop(config, workdir, setup, members, outputs, mesh, num_steps, state, manager,
                    data_iterator, stop_requested, start_time, record_session, report_space,
                    classifier)
  finally:
    closers = [functools.partial(checkpointing.finish, manager), manager.close]
    for output in outputs:
      if output.best_manager is not None:
        closers += [functools.partial(checkpointing.finish, output.best_manager),
                    output.best_manager.close]
      if output.writer is not None:
        closers.append(output.writer.close)
    if hasattr(data_iterator, "close"):  # stops grain's worker processes
      closers.append(data_iterator.close)
    _call_all(closers)

  step = step_of(state)
  seconds = time.time() - start_time
  total_seconds = record_session(step, seconds)
  finals = []
  for output, output_state in zip(outputs, _views(state, outputs)):
    final = {
        "step": step,
        "num_devices": mesh.size,
        "num_processes": jax.process_count(),
        "seconds": seconds,
        "total_seconds": total_seconds,
        "metrics": output.last_scalars,
        "eval": summaries.evaluation_scores(
            summaries.read_metrics(output.workdir / "metrics.jsonl")),
        "state_fingerprint": state_fingerprint(output_state),
    }
    if output.index is not None:
      final = {"member": output.index, **members.members[output.index].entry(), **final}
    finals.append(final)
  final = finals if members else finals[0]
  if is_main_process:
    written = [f"final.json {workdir / 'final.json'}"]
    if members:
      for output, member_final in zip(outputs, finals):
        files.write_json(output.workdir / "final.json", member_final)
      table = spread.population_table(finals, config.train.batch_size)
      files.write_atomic(workdir / POPULATION_TABLE, table.encode())
      print(table, end="", flush=True)
      written.append(f"{POPULATION_TABLE} {workdir / POPULATION_TABLE}")
    files.write_json(workdir / "final.json", final)
    for output in outputs:
      grids = sorted((output.workdir / "samples").glob("step_*.png"))
      if grids:
        written.append(f"{output.name}samples {grids[-1]}")
      if config.train.write_report:
        report = _write_report(config, workdir, output.index, report_space)
        written.append(f"{output.name}report {report / 'index.html'}")
    if members and config.train.write_report:  # the members' page, linking their reports
      written.append(f"report {_write_report(config, workdir, space=report_space) / 'index.html'}")
    print("\n".join(written), flush=True)
  return final


def _final_at(path: Path, step: int | None) -> dict[str, Any] | list[dict[str, Any]] | None:
  """final.json if it describes `step` (any, for None); None if it is missing, older or
  damaged (then the run writes it again from its last checkpoint). A population's is a
  list, an entry per member."""
  try:
    final = run_dir.read_json(path, object)
  except (ValueError, FileNotFoundError):
    return None
  entries = final if isinstance(final, list) else [final]
  complete = entries and all(
      isinstance(entry, dict) and isinstance(entry.get("step"), int)
      and isinstance(entry.get("seconds"), (int, float)) and entry["step"] == entries[0]["step"]
      for entry in entries)
  return final if complete and step in (None, entries[0]["step"]) else None


def _report_space(config: ml_collections.ConfigDict) -> "neighbours.FeatureSpace":
  """Where the report measures nearness (Inception space when the weights are found):
  loaded once for the ETA's estimate of the report and the report itself."""
  # matplotlib is imported only where a report is written.
  from dcgan_jax.report import neighbours  # pylint: disable=g-import-not-at-top
  return neighbours.neighbour_space(config.eval.inception_weights or None)


def _write_report(config: ml_collections.ConfigDict, workdir: Path, member: int | None = None,
                  space: "neighbours.FeatureSpace | None" = None) -> Path:
  print("writing the report" + (f" of member {member}" if member is not None else "") + "...",
        flush=True)
  from dcgan_jax.report import assemble  # pylint: disable=g-import-not-at-top
  return assemble.write_report(workdir, neighbour_space=space or _report_space(config),
                               member=member)


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
          members: population.Population | None, outputs: list[_Output],
          mesh: jax.sharding.Mesh, num_steps: int, state: TrainState, manager, data_iterator,
          stop_requested: Callable[[], str | None], start_time: float,
          record_session: Callable[[int, float], float],
          report_space: "neighbours.FeatureSpace | None",
          classifier: attribute_classifier.TrainedClassifier | None) -> TrainState:
  """Steps from the state's step to `num_steps`; returns the state, each output's last
  logged scalars in it. The session's time is recorded at every log step and when it
  stops early. The ETA counts a report per output in `report_space` when one is given
  (process 0 writes it)."""
  is_main_process = jax.process_index() == 0
  compiled_steps: dict[int, Callable] = {}
  if members is None:
    batch_sharding = parallel.batch_sharded(mesh)
  else:
    batch_sharding = parallel.member_batch_sharded(mesh)
    settings = jax.device_put(members.settings(), parallel.member_sharded(mesh))
    population_step = population.population_step(members, mesh,
                                                  config.population.vmap_members)

  def train_step_of(stage: int) -> Callable:
    """The jitted step of a stage, compiled when the stage starts: one for fixed
    networks, one per resolution for growing ones."""
    if members is not None:
      return lambda state, batch: population_step(state, batch, settings)
    if stage not in compiled_steps:
      compiled_steps.clear()
      compiled_steps[stage] = parallel.jit_train_step(
          functools.partial(steps.train_step, setup.at_stage(stage)), mesh)
    return compiled_steps[stage]

  variant = setup.variant
  sample_inputs = [generate.fixed_inputs(variant, output.source, output.config.seed,
                                         config.train.num_samples, generate.SAMPLE_NOISE_STREAM)
                   for output in outputs]

  first_step = step_of(state)
  # Drawing the grid now compiles what the sample grids reuse, and times one for the ETA.
  started = time.perf_counter()
  generate.generate(variant.after_steps(first_step), _views(state, outputs)[0], *sample_inputs[0])
  expected_pauses = {"sample grid": len(outputs) * (time.perf_counter() - started)}
  evaluators, eval_inputs = [], []
  if config.eval.every_steps:
    for output in outputs:
      evaluator = evaluation.Evaluator(output.config,
                                       evaluation.cache_dir(output.config, output.workdir),
                                       num_samples=config.eval.num_samples,
                                       inception_weights=config.eval.inception_weights,
                                       download_weights=config.eval.download_weights)
      evaluators.append(evaluator)
      eval_inputs.append(generate.fixed_inputs(variant, output.source, output.config.seed,
                                               evaluator.num_samples,
                                               generate.EVAL_NOISE_STREAM))
    if evaluators[0].unavailable_reason and is_main_process:
      print(f"evaluating SWD only. {evaluators[0].unavailable_reason}", flush=True)
    # The ETA's estimate of an evaluation until one is measured: scoring the generated
    # images costs what sketching the real ones does, and generating them compiles about
    # what a first sample grid does.
    started = time.perf_counter()
    for evaluator in evaluators:
      evaluator.prepare(variant.after_steps(first_step).image_resolution)
    expected_pauses["evaluation"] = (time.perf_counter() - started
                                     + expected_pauses["sample grid"])

  progress = summaries.Progress(first_step, num_steps, enabled=is_main_process, intervals={
      "sample grid": config.train.sample_every,
      "evaluation": config.eval.every_steps if evaluators else 0,
      "checkpoint": config.train.checkpoint_every}, expected_pauses=expected_pauses,
      after_last_step=(len(outputs) * _report_seconds(
          outputs[0].source, report_space, expected_pauses["sample grid"] / len(outputs))
                       if report_space is not None else 0.0))
  best_scores = []
  for output in outputs:
    logged = summaries.read_metrics(output.workdir / "metrics.jsonl")
    # A run stopped after its last step was logged resumes with nothing left to train.
    output.last_scalars = summaries.training_scalars_at(logged, first_step)
    best_scores.append(_best_score_before(logged, first_step, variant.resolution))
  pending = None  # (step, metrics) of the last log step, read one step late.

  def log(step: int, metrics: dict[str, jax.Array]) -> None:
    member_scalars = [_host_scalars(output_metrics) for output_metrics in _views(metrics, outputs)]
    # The line shows the members' mean and their images together.
    line_scalars = {name: float(np.mean([scalars[name] for scalars in member_scalars]))
                    for name in member_scalars[0]}
    images_per_second = progress.update(step, line_scalars, len(outputs) * stage_batch_size(
        setup, config.train.batch_size, variant.stage_at(step - 1))) / len(outputs)
    elapsed = time.time() - start_time
    for output, scalars in zip(outputs, member_scalars):
      output.last_scalars = scalars | {"img_per_s": images_per_second, "elapsed_s": elapsed}
      output.writer.write_scalars(step, output.last_scalars)
    record_session(step, elapsed)

  def evaluate(step: int, index: int, output_state: TrainState) -> None:
    output = outputs[index]
    grown = variant.after_steps(step)
    scores = evaluators[index](generate.generate(grown, output_state, *eval_inputs[index]))
    if classifier is not None:
      scores |= attribute_classifier.generator_accuracy(grown, output_state, *eval_inputs[index],
                                                        classifier)
    if grown.schedule:
      scores |= {"resolution": float(grown.image_resolution)}
    output.writer.write_scalars(step, {f"eval_{name}": value for name, value in scores.items()})
    # Per-attribute scores (attr_accuracy/<name>) go to the logs, their mean to the line.
    line = f"{output.name}eval step {step}: " + ", ".join(
        f"{name} {value:.4g}" for name, value in scores.items() if "/" not in name)
    if grown.image_resolution != variant.resolution:
      # Scores at a growing run's smaller resolutions do not compare with the final one's.
      progress.write(line)
      return
    metric = evaluation.selection_metric(scores)
    checkpointing.save_best(output.best_manager, output_state, scores[metric])
    is_best = scores[metric] < best_scores[index]
    best_scores[index] = min(best_scores[index], scores[metric])
    progress.write(line + (" (best)" if is_best else ""))

  def stop_diverged(step: int, diverged: list[int]) -> None:
    checkpointing.finish(manager)
    record_session(step, time.time() - start_time)
    good = manager.latest_step()
    if members is not None:
      which = "; ".join(f"{index} ({members.members[index].describe()})" for index in diverged)
      raise TrainingStopped(
          f"training diverged: non-finite parameters or metrics at step {step} in "
          f"{'member' if len(diverged) == 1 else 'members'} {which}; "
          + (f"the last good checkpoint, step {good} in {workdir / 'checkpoints'}, is kept"
             if good is not None else "no checkpoint was written yet")
          + "; train the population again without the settings that diverged")
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
      is_eval_step = evaluators and (last or step % config.eval.every_steps == 0)
      is_checkpoint_step = last or stopping or step % config.train.checkpoint_every == 0
      if is_log_step or is_sample_step or is_eval_step or is_checkpoint_step:
        diverged = _diverged(state, metrics, outputs)
        if diverged:
          stop_diverged(step, diverged)
      if is_log_step:
        pending = (step, metrics)
      output_states = _views(state, outputs) if is_sample_step or is_eval_step else []
      if is_sample_step:
        with progress.paused("sample grid"):
          for output, output_state, inputs in zip(outputs, output_states, sample_inputs):
            images = generate.generate(variant.after_steps(step), output_state, *inputs)
            output.writer.write_sample_grid(step, summaries.image_grid(images))
      if is_eval_step:
        with progress.paused("evaluation"):
          for index, output_state in enumerate(output_states):
            evaluate(step, index, output_state)
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
  return state
