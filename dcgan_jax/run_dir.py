"""The run directory: its config.json and data.json (written at the start, checked on
resume, read back), and the directory itself, checked before anything is written (the
lock that keeps a second process out is `files.locked`)."""

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Collection

import ml_collections

from dcgan_jax import files


# Keys that may change between a run and its resumption: they set how long and how
# verbosely to train, not what is trained.
RESUMABLE_KEYS = frozenset({
    "train.num_steps", "train.num_epochs", "train.log_every", "train.sample_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.write_report", "data.dir",
    "data.num_workers",
    "data.num_threads", "data.prefetch", "eval.every_steps", "eval.num_samples",
    "eval.inception_weights", "eval.reference_num_images", "eval.download_weights",
    "eval.attribute_classifier", "model.impl", "population.vmap_members",
})
# Keys a resumed run may change when asked to (`allow_changes`): the optimiser's, to retry
# from the last good checkpoint of a run that diverged.
RETRY_KEYS = frozenset({
    "train.g_lr", "train.d_lr", "train.g_beta1", "train.g_beta2", "train.d_beta1",
    "train.d_beta2", "train.d_steps", "loss.penalty_weight",
})
# config.json's record of the keys changed on resume: [{"step", "changed": {key: [old, new]}}].
RESUME_CHANGES = "resume_changes"
# Keys added after runs were first written, with the value that reproduces those runs:
# a config.json without them means these.
ADDED_KEYS = {
    "model.arch": "dcgan",
    "model.d_norm": "batch",
    "model.condition": "none",
    "model.attributes": "",
    "model.g_condition": "concat",
    "model.d_projection": True,
    "loss.aux_classifier_weight": 0.0,
    "eval.attribute_classifier": "",
    "loss.name": "non_saturating",
    "loss.penalty": "none",
    "loss.penalty_weight": 10.0,
    "train.g_ema_decay": 0.0,
    "data.augment": "",
    "eval.download_weights": True,
    "loss.drift_weight": 0.0,
    "growth.fade_images": 800_000,
    "growth.stable_images": 800_000,
    "growth.batch_sizes": "",
    "population.seeds": "",
    "population.sweep": "",
    "population.vmap_members": 0,
    "loss.aux_classifier": "acgan",
    "train.forced_attribute_rate": 0.0,
}


MEMBERS_DIR = "members"


def member_dir(workdir: Path, index: int) -> Path:
  """Where member `index` of a population writes what a solo run writes in its own
  directory: config.json (its solo config), metrics, samples, best checkpoint, report,
  final.json. The population's checkpoints hold every member's state."""
  return workdir / MEMBERS_DIR / str(index)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat |= flatten(value, f"{prefix}{key}.")
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def with_added_keys(saved: dict[str, Any]) -> dict[str, Any]:
  """A saved config (nested dicts) with every key of `ADDED_KEYS` it lacks filled in."""
  completed = copy.deepcopy(saved)
  for dotted, value in ADDED_KEYS.items():
    *parents, leaf = dotted.split(".")
    tree = completed
    for parent in parents:
      tree = tree.setdefault(parent, {})
    tree.setdefault(leaf, value)
  return completed


def incompatible_keys(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """Dotted keys whose values differ and that a resumed run may not change."""
  saved_flat, current_flat = flatten(with_added_keys(saved)), flatten(with_added_keys(current))
  differing = {k for k in saved_flat.keys() | current_flat.keys()
               if saved_flat.get(k, "<absent>") != current_flat.get(k, "<absent>")}
  return sorted(differing - RESUMABLE_KEYS)


def config_as_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """JSON-compatible form of the config (a round trip through its own JSON encoder)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def read_json(path: Path, kind: type = dict) -> Any:
  """A JSON `kind` the run wrote (config.json, data.json, sessions.json); one line naming
  the file if it is not one (damaged, edited, or nested past reading)."""
  try:
    value = json.loads(path.read_bytes())
  except (ValueError, RecursionError) as error:  # JSON, UTF-8 or nesting
    raise ValueError(f"{path} is not the JSON the run wrote ({type(error).__name__}: "
                     f"{files.one_line(error, limit=120)}); restore it or use a new "
                     f"--workdir") from None
  if not isinstance(value, kind):
    raise ValueError(f"{path} holds a JSON {type(value).__name__}, not the "
                     f"{'object' if kind is dict else kind.__name__} the run wrote; restore it "
                     f"or use a new --workdir")
  return value


def _saved_config(path: Path) -> tuple[dict[str, Any], list]:
  """config.json's keys (those added since filled in) and its record of resume changes."""
  saved = read_json(path)
  record = saved.pop(RESUME_CHANGES, [])
  try:
    return with_added_keys(saved), record
  except (TypeError, AttributeError, RecursionError) as error:  # a section not an object
    raise ValueError(f"{path} is not a config the run wrote ({error}); restore it or use a new "
                     f"--workdir") from None


def read_config(workdir: Path) -> ml_collections.ConfigDict:
  """DIR/config.json as a ConfigDict, keys added since it was written filled in."""
  path = workdir / "config.json"
  if not path.exists():
    raise ValueError(f"--workdir {workdir} has no config.json: is it a training run directory?")
  return ml_collections.ConfigDict(_saved_config(path)[0])


def check_allowed_changes(allow_changes: Collection[str]) -> None:
  unknown = sorted(set(allow_changes) - RETRY_KEYS)
  if unknown:
    raise ValueError(f"--allow_changes: {', '.join(unknown)} cannot change on resume; the keys "
                     f"that can are {', '.join(sorted(RETRY_KEYS))}")


def _changes(old: dict[str, Any], new: dict[str, Any], keys: Collection[str]) -> str:
  """`key: old -> new, ...` for `keys` of two flat dicts, as refusals name them."""
  return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def config_to_write(workdir: Path, config: ml_collections.ConfigDict, resume_step: int | None,
                    allow_changes: Collection[str] = ()) -> dict[str, Any]:
  """What DIR/config.json is to hold for `config`. Resuming checkpoints (at
  `resume_step`) made under another config is refused, naming the keys, unless every
  changed key is in `allow_changes` (a subset of RETRY_KEYS); then the change is recorded."""
  path = workdir / "config.json"
  current = config_as_dict(config)
  if resume_step is None and not path.exists():
    return current
  if not path.exists():
    raise ValueError(f"{workdir} holds checkpoints but no config.json, so they cannot be "
                     f"checked against this config; put config.json back or use a new --workdir")
  saved, record = _saved_config(path)
  keys = incompatible_keys(saved, current)
  refused = [k for k in keys if k not in allow_changes]
  saved_flat, current_flat = flatten(saved), flatten(current)
  if refused:
    details = _changes(saved_flat, current_flat, refused)
    retry = (f", or --allow_changes={','.join(refused)} to retry from its checkpoints with "
             f"{'these settings' if len(refused) > 1 else 'this setting'}"
             if set(refused) <= RETRY_KEYS else "")
    # Without a checkpoint yet, the run's metrics would mix two models.
    raise ValueError(f"{workdir} holds {'checkpoints of ' if resume_step else ''}a run with a "
                     f"different config ({details}); use a new --workdir or the original "
                     f"config{retry}.")
  if keys:
    record = [*record, {"step": resume_step or 0, "changed": {
        k: [saved_flat.get(k), current_flat.get(k)] for k in keys}}]
  return current | ({RESUME_CHANGES: record} if record else {})


DATA_RECORD = "data.json"


def check_same_data(workdir: Path, identity: dict[str, Any]) -> None:
  """A run resumes only on the images it was trained on (DIR/data.json records their
  `sources.data_identity`; data.dir itself may move)."""
  path = workdir / DATA_RECORD
  if not path.exists():
    return
  recorded = read_json(path)
  if recorded != identity:
    differing = _changes(recorded, identity, sorted(k for k in recorded.keys() | identity.keys()
                                                    if recorded.get(k) != identity.get(k)))
    raise ValueError(f"{workdir} was trained on other images than data.dir holds ({differing}; "
                     f"recorded in {path}); point data.dir at the run's data or use a new "
                     f"--workdir")


# The directories a run writes in, besides its own.
SUBDIRECTORIES = ("checkpoints", "checkpoints_best", "checkpoints_unusable", "samples", "report")


def _check_writable_directory(path: Path, name: str) -> None:
  if path.exists() and not path.is_dir():
    raise ValueError(f"{name} {path} is a file, not a directory")
  try:
    path.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryFile(dir=path).close()
  except OSError as error:
    raise ValueError(f"{name} {path} cannot be written: {error.strerror or error}") from error


def make_workdir(workdir: Path) -> None:
  """Creates the run directory; a one-line error if it, or a directory the run writes in
  it that is already there, cannot be a writable directory (found at start-up, not at the
  first checkpoint)."""
  _check_writable_directory(workdir, "--workdir")
  for name in SUBDIRECTORIES:
    if os.path.lexists(workdir / name):
      _check_writable_directory(workdir / name, "--workdir's")
  if (workdir / "metrics.jsonl").is_symlink():
    raise ValueError(f"{workdir / 'metrics.jsonl'} is a symbolic link; the run appends to it, "
                     f"so it must be a file of the run's own")
