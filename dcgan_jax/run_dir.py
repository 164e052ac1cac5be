"""The run directory's config.json: written at the start, checked on resume, read back."""

import copy
import json
from pathlib import Path
from typing import Any

import ml_collections

from dcgan_jax import files

# Keys that may change between a run and its resumption: they set how long and how
# verbosely to train, not what is trained.
RESUMABLE_KEYS = frozenset({
    "train.num_steps", "train.num_epochs", "train.log_every", "train.sample_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.write_report", "data.dir", "data.num_workers",
    "data.num_threads", "data.prefetch", "eval.every_steps", "eval.num_samples",
    "eval.inception_weights", "eval.reference_num_images", "model.impl",
})
# Keys added after runs were first written, with the value that reproduces those runs:
# a config.json without them means these.
ADDED_KEYS = {
    "model.arch": "dcgan",
    "model.d_norm": "batch",
    "model.condition": "none",
    "model.attributes": "",
    "loss.name": "non_saturating",
    "loss.penalty": "none",
    "loss.penalty_weight": 10.0,
    "train.g_ema_decay": 0.0,
    "data.augment": "",
}


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


def read_config(workdir: Path) -> ml_collections.ConfigDict:
  """DIR/config.json as a ConfigDict, keys added since it was written filled in."""
  path = workdir / "config.json"
  if not path.exists():
    raise ValueError(f"--workdir {workdir} has no config.json: is it a training run directory?")
  return ml_collections.ConfigDict(with_added_keys(json.loads(path.read_text())))


def check_and_write_config(workdir: Path, config: ml_collections.ConfigDict,
                           has_checkpoints: bool) -> None:
  """Writes DIR/config.json, refusing to resume checkpoints made under another config."""
  path = workdir / "config.json"
  current = config_as_dict(config)
  if has_checkpoints and path.exists():
    saved = with_added_keys(json.loads(path.read_text()))
    keys = incompatible_keys(saved, current)
    if keys:
      details = ", ".join(f"{k}: {flatten(saved).get(k)!r} -> {flatten(current).get(k)!r}"
                          for k in keys)
      raise ValueError(f"{workdir} holds checkpoints of a run with a different config "
                       f"({details}); use a new --workdir or the original config.")
  files.write_json(path, current)
