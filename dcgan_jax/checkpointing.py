"""Orbax checkpoints holding the train state and the grain iterator state together.

Saves are asynchronous and atomic (orbax writes to a temporary directory and renames),
so an interrupted run never leaves a checkpoint that a later run would trust.
"""

from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp

from dcgan_jax.train_state import TrainState


def create_manager(directory: Path, max_to_keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      directory.absolute(),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_names=("state", "data"),
  )


def create_best_manager(directory: Path) -> ocp.CheckpointManager:
  """Keeps the one train state with the lowest `score` passed to `save_best`."""
  return ocp.CheckpointManager(
      directory.absolute(),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=1, best_fn=lambda m: m["score"], best_mode="min", create=True,
          # Its own barrier names: both managers save at the same step, and shared names
          # deadlock the processes of a multi-host run.
          multiprocessing_options=ocp.options.MultiprocessingOptions(
              barrier_sync_key_prefix="best")),
      item_names=("state",),
  )


def save_best(manager: ocp.CheckpointManager, state: TrainState, score: float) -> None:
  step = int(jax.device_get(state.step))
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
               metrics={"score": score})


def save(manager: ocp.CheckpointManager, state: TrainState,
         data_iterator: grain.DatasetIterator) -> None:
  step = int(jax.device_get(state.step))
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(data_iterator)))


def restore(manager: ocp.CheckpointManager, abstract_state: TrainState,
            data_iterator: grain.DatasetIterator, step: int | None = None) -> TrainState:
  """Restores `step` (default: the latest) into arrays laid out like `abstract_state`
  (a pytree of jax.ShapeDtypeStruct with shardings) and rewinds `data_iterator`."""
  step = manager.latest_step() if step is None else step
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state),
      data=grain.checkpoint.CheckpointRestore(data_iterator)))
  return restored["state"]


def restore_state(directory: Path, abstract_state: TrainState,
                  step: int | None = None) -> TrainState:
  """Restores only the train state, e.g. for sampling or evaluation."""
  with ocp.CheckpointManager(directory.absolute(), item_names=("state", "data"),
                             options=ocp.CheckpointManagerOptions(read_only=True, create=False)) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
  return restored["state"]
