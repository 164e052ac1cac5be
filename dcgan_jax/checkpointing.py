"""Orbax checkpoints holding the train state and the grain iterator state together.

Saves are asynchronous and atomic (orbax writes to a temporary directory and renames),
so an interrupted run never leaves a checkpoint that a later run would trust. Each
checkpoint also holds its state's `state_fingerprint` and a fingerprint of every
process's data position (the "digest" item), checked on restore: a checkpoint damaged on
disk is found out instead of silently loaded.
Checkpoints written before digests existed restore unchecked.
"""

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from dcgan_jax import files, parallel
from dcgan_jax.train_state import TrainState, state_fingerprint, step_of

ITEMS = ("state", "data", "digest")


class UnusableCheckpoint(ValueError):
  """A checkpoint that cannot be read or does not match its digest."""


def create_manager(directory: Path, max_to_keep: int) -> ocp.CheckpointManager:
  _drop_after_effects_of_failed_reads()
  return ocp.CheckpointManager(
      directory.absolute(),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_names=ITEMS,
  )


def create_best_manager(directory: Path) -> ocp.CheckpointManager:
  """Keeps the one train state with the lowest `score` passed to `save_best`, with its
  digest. Its scores are read at once: damaged ones are one line naming the directory."""
  try:
    return _best_manager(directory)
  except (ValueError, OSError) as error:  # the JSON of a step's metrics
    raise ValueError(f"{directory} holds a best checkpoint whose score cannot be read "
                     f"({files.one_line(error)}); move that checkpoint out of it") from None


def _best_manager(directory: Path) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      directory.absolute(),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=1, best_fn=lambda m: m["score"], best_mode="min", create=True,
          # Its own barrier names: both managers save at the same step, and shared names
          # deadlock the processes of a multi-host run.
          multiprocessing_options=ocp.options.MultiprocessingOptions(
              barrier_sync_key_prefix="best")),
      item_names=("state", "digest"),
  )


def save_best(manager: ocp.CheckpointManager, state: TrainState, score: float) -> None:
  step = step_of(state)
  with _writing(manager):
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        digest=ocp.args.JsonSave({"state_fingerprint": state_fingerprint(state)})),
                 metrics={"score": score})


def _data_fingerprint(data_iterator: grain.DatasetIterator) -> str:
  """sha256 of this process's data iterator position."""
  position = data_iterator.get_state()
  if not isinstance(position, bytes):
    position = json.dumps(position, sort_keys=True).encode()
  return hashlib.sha256(position).hexdigest()


def _data_fingerprints(data_iterator: grain.DatasetIterator) -> list[str]:
  """Every process's `_data_fingerprint`, in process order: each holds only its own."""
  own = np.frombuffer(bytes.fromhex(_data_fingerprint(data_iterator)), np.uint8)
  return [bytes(row).hex() for row in parallel.from_every_process(own)]


def save(manager: ocp.CheckpointManager, state: TrainState,
         data_iterator: grain.DatasetIterator) -> None:
  step = step_of(state)
  with _writing(manager):
    saved = manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        digest=ocp.args.JsonSave({"state_fingerprint": state_fingerprint(state),
                                  "data_fingerprints": _data_fingerprints(data_iterator)})))
  if not saved:  # orbax skips a step at or below one it holds
    raise ValueError(f"the checkpoint of step {step} was not saved: {manager.directory} holds "
                     f"step {manager.latest_step()}, beyond it; move that one away and resume")


def _raised_in_orbax(error_traceback) -> bool:
  return any("orbax" in frame.filename for frame in traceback.extract_tb(error_traceback))


class _OrbaxFailures(logging.Filter):
  """Drops asyncio's "exception was never retrieved" records of failures raised in orbax,
  and orbax's own error records (with their tracebacks) of a failed write, which it also
  raises, to be reported in one line."""

  def filter(self, record: logging.LogRecord) -> bool:
    own_error = record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname
    return not (own_error or (record.exc_info and _raised_in_orbax(record.exc_info[2])))


def _drop_after_effects_of_failed_reads() -> None:
  """After a failed read or write, orbax's pending operations still fail one by one, in
  coroutines and in tensorstore callbacks into the event loop orbax has closed, and each
  would print a traceback, through sys.unraisablehook, asyncio's logger (for a task whose
  exception nobody retrieved) or orbax's own error log, drowning the one-line report.
  Drops those, and only those: exceptions raised inside orbax, "Event loop is closed",
  and orbax's error records."""
  previous = sys.unraisablehook
  if getattr(previous, "drops_failed_read_after_effects", False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    closed_loop = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
    if not (closed_loop or _raised_in_orbax(unraisable.exc_traceback)):
      previous(unraisable)

  hook.drops_failed_read_after_effects = True
  sys.unraisablehook = hook
  for logger in ("asyncio", "absl"):
    logging.getLogger(logger).addFilter(_OrbaxFailures())


@contextlib.contextmanager
def _writing(manager: ocp.CheckpointManager) -> Iterator[None]:
  """A failed checkpoint write (a full disk, say: orbax raises it at the next save or
  wait) as one line naming the directory."""
  try:
    yield
  except (ValueError, OSError) as error:
    reason = next((r for r in ("No space left on device", "Permission denied",
                               "Read-only file system") if r in str(error)), files.one_line(error))
    raise ValueError(f"cannot write a checkpoint in {manager.directory}: {reason}; the "
                     f"checkpoints before it are kept") from None


def finish(manager: ocp.CheckpointManager) -> None:
  """Waits for the manager's saves to be written; `_writing`'s line if one failed."""
  with _writing(manager):
    manager.wait_until_finished()


def _verified(manager: ocp.CheckpointManager, step: int, restore_items: Callable[[], dict],
              data_iterator: grain.DatasetIterator | None = None) -> TrainState:
  """The state of checkpoint `step`, restored by `restore_items` (with `data_iterator`'s
  position, when given), checked against its digest; UnusableCheckpoint, in one line, if
  either fails. Checkpoints written before digests (or a position in them) are read
  unchecked."""
  directory = Path(manager.directory) / str(step)
  _drop_after_effects_of_failed_reads()
  try:
    state = restore_items()["state"]
  except Exception as error:  # orbax and tensorstore raise many kinds for a damaged file
    raise UnusableCheckpoint(f"checkpoint {directory} cannot be read: {files.one_line(error)}"
                             ) from error
  recorded_step = step_of(state)
  if recorded_step != step:  # a copy under another step's name
    raise UnusableCheckpoint(f"checkpoint {directory} holds step {recorded_step}, not the "
                             f"step of its name")
  if not (directory / "digest").exists():
    # Checkpoints have digests from some step on (earlier ones were written before them).
    if any((directory.parent / str(s) / "digest").exists() for s in manager.all_steps()
           if s < step):
      raise UnusableCheckpoint(f"checkpoint {directory} has no digest, which the checkpoints "
                               f"before it have: it was removed")
  else:
    try:
      digest = manager.restore(step, args=ocp.args.Composite(digest=ocp.args.JsonRestore()))
      expected = digest["digest"]["state_fingerprint"]
      # Digests written before every process's position was gathered hold process 0's.
      positions = (digest["digest"].get("data_fingerprints")
                   or [digest["digest"].get("data_fingerprint")])
    except Exception as error:
      raise UnusableCheckpoint(f"checkpoint {directory} has an unreadable digest: "
                               f"{files.one_line(error)}") from error
    process = jax.process_index()
    expected_data = positions[process] if process < len(positions) else None
    changed = state_fingerprint(state) != expected or (
        data_iterator is not None and expected_data is not None
        and _data_fingerprint(data_iterator) != expected_data)
    # Every process sets the checkpoint aside, or none: they restore the next one together.
    if parallel.any_process(changed):
      raise UnusableCheckpoint(f"checkpoint {directory} does not match its digest: its "
                               f"files were changed after it was written")
  return state


def restore(manager: ocp.CheckpointManager, abstract_state: TrainState,
            data_iterator: grain.DatasetIterator, step: int | None = None) -> TrainState:
  """Restores `step` (default: the latest) into arrays laid out like `abstract_state`
  (a pytree of jax.ShapeDtypeStruct with shardings) and rewinds `data_iterator`;
  UnusableCheckpoint if it cannot be read or fails its digest."""
  step = manager.latest_step() if step is None else step
  return _verified(manager, step, lambda: manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state),
      data=grain.checkpoint.CheckpointRestore(data_iterator))), data_iterator)


def set_aside(manager: ocp.CheckpointManager, step: int) -> Path:
  """Moves checkpoint `step` out of the manager's directory, into a sibling
  `<directory>_unusable/` (renamed, never deleted), and returns where it went."""
  directory = Path(manager.directory)
  aside = _set_aside_directory(directory) / f"{step}-{int(time.time())}"
  aside.parent.mkdir(exist_ok=True)
  (directory / str(step)).rename(aside)
  manager.reload()
  return aside


def restore_latest_usable(manager: ocp.CheckpointManager, abstract_state: TrainState,
                          data_iterator: grain.DatasetIterator,
                          report: Callable[[str], None]) -> TrainState:
  """The latest checkpoint that reads and matches its digest. Each one that does not is
  reported in one line and set aside; ValueError if none is usable."""
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return restore(manager, abstract_state, data_iterator, step)
    except UnusableCheckpoint as error:
      report(f"{error}; moved to {set_aside(manager, step)}")
  raise no_usable_checkpoint(Path(manager.directory))


def _set_aside_directory(directory: Path) -> Path:
  return directory.with_name(directory.name + "_unusable")


def check_checkpoint_directory(directory: Path) -> None:
  """Before a run starts: each step entry is a real directory (not a link, which orbax
  would follow, even into a loop), and a run whose checkpoints were all set aside is not
  started again from step 0."""
  steps = [p for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
  for step in steps:
    if step.is_symlink() or not step.is_dir():
      raise ValueError(f"{step} is not a checkpoint directory ("
                       f"{'a symbolic link' if step.is_symlink() else 'a file'}); move it out "
                       f"of {directory}")
  aside = _set_aside_directory(directory)
  if not steps and aside.is_dir() and any(aside.iterdir()):
    raise no_usable_checkpoint(directory)


def no_usable_checkpoint(directory: Path) -> ValueError:
  return ValueError(f"no usable checkpoint in {directory} (the unusable ones are in "
                    f"{_set_aside_directory(directory)}); restore one or use a new --workdir")


def _read_only_manager(directory: Path) -> ocp.CheckpointManager:
  """A manager that only reads. Its options are those orbax would set for reading alone
  (it warns of each it changes), and orbax's warning that the directory is read only,
  given whatever the options, is dropped: neither says anything to someone sampling."""
  options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    return ocp.CheckpointManager(directory.absolute(), item_names=ITEMS, options=options)
  finally:
    absl_logger.setLevel(level)


def restore_state(directory: Path, abstract_state: TrainState,
                  step: int | None = None) -> TrainState:
  """Restores only the train state (checked against its digest), e.g. for sampling."""
  with _read_only_manager(directory) as manager:
    available = manager.all_steps()
    if not available:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    if step is not None and step not in available:
      raise FileNotFoundError(f"no checkpoint at step {step} in {directory}; steps available: "
                              f"{', '.join(map(str, sorted(available)))}")
    step = max(available) if step is None else step
    return _verified(manager, step, lambda: manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state))))
