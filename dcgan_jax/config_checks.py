"""Every key of a training config checked before anything is written: `check_config`.

A bad value is one line naming the key, the value and what was expected; a key the
project does not know (a typo in a config file) names the closest known key. Names
(`model.arch`, `loss.name`, ...) are checked where they are looked up
(`dcgan_jax.variants`, `data.sources`), which list the known ones.
"""

import difflib
import math
from typing import Any, Callable, NamedTuple

import ml_collections

from dcgan_jax import run_dir


class Rule(NamedTuple):
  kind: type
  holds: Callable[[Any], bool]
  expected: str
  optional: bool = False  # None allowed


def _positive(kind: type) -> Rule:
  return Rule(kind, lambda v: v > 0, f"a positive {'integer' if kind is int else 'number'}")


def _at_least_zero(kind: type) -> Rule:
  return Rule(kind, lambda v: v >= 0, f"{'an integer' if kind is int else 'a number'} >= 0")


def _count(low: int, high: int) -> Rule:
  return Rule(int, lambda v: low <= v <= high, f"an integer from {low} to {high:,}")


# Upper bounds of the sizes, so that a slip (an extra zero or three) is refused before it
# takes the machine's memory: each far above any use (the defaults are 8, 64, 10,000, ...)
# and below what 64 GB holds at 64 px (prefetched batches of 128 images are 1.5 MB each).
MAX_PREFETCH = 1_024
MAX_IMAGES_AT_ONCE = 200_000  # generated and held whole: the sample grid, an evaluation
MAX_STEPS = 10**9
MAX_SEED = 2**32 - 1


def _fraction() -> Rule:
  return Rule(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


_ANY_STR = Rule(str, lambda v: True, "a string")
_ANY_BOOL = Rule(bool, lambda v: True, "true or false")
MAX_RESOLUTION = 1024

# Every key of a training config; a key not here is unknown.
RULES: dict[str, Rule] = {
    "seed": _count(0, MAX_SEED),
    "data.source": _ANY_STR,
    "data.dir": _ANY_STR,
    "data.split": Rule(str, lambda v: v in ("train", "valid", "test"), "train, valid or test"),
    "data.resolution": Rule(int, lambda v: 8 <= v <= MAX_RESOLUTION and v & (v - 1) == 0,
                            f"a power of two from 8 to {MAX_RESOLUTION}"),
    "data.num_images": _positive(int),
    "data.random_flip": _ANY_BOOL,
    "data.augment": _ANY_STR,
    "data.num_workers": _count(0, 1_024),
    "data.num_threads": _count(1, 1_024),
    "data.prefetch": _count(0, MAX_PREFETCH),
    "model.arch": _ANY_STR,
    "model.d_norm": _ANY_STR,
    "model.condition": _ANY_STR,
    "model.g_condition": _ANY_STR,
    "model.d_projection": _ANY_BOOL,
    "model.attributes": _ANY_STR,
    "model.nf": _count(1, 8_192),
    "model.z_dim": _count(1, 65_536),
    "model.dtype": Rule(str, lambda v: v in ("float32", "bfloat16"), "float32 or bfloat16"),
    "model.impl": _ANY_STR,
    "loss.name": _ANY_STR,
    "loss.penalty": _ANY_STR,
    "loss.penalty_weight": _at_least_zero(float),
    "loss.drift_weight": _at_least_zero(float),
    "loss.aux_classifier_weight": _at_least_zero(float),
    "loss.aux_classifier": _ANY_STR,
    "growth.fade_images": _at_least_zero(int),
    "growth.stable_images": _positive(int),
    "growth.batch_sizes": _ANY_STR,
    "train.batch_size": _count(1, 1_048_576),
    "train.num_steps": _count(1, MAX_STEPS),
    "train.num_epochs": Rule(float, lambda v: v > 0, "a positive number (or None)",
                             optional=True),
    "train.d_steps": _positive(int),
    "train.g_lr": _positive(float),
    "train.d_lr": _positive(float),
    "train.g_beta1": _fraction(),
    "train.g_beta2": _fraction(),
    "train.d_beta1": _fraction(),
    "train.d_beta2": _fraction(),
    "train.g_ema_decay": _fraction(),
    "train.forced_attribute_rate": Rule(float, lambda v: 0 <= v <= 1, "a number from 0 to 1"),
    "train.log_every": _positive(int),
    "train.sample_every": _positive(int),
    "train.checkpoint_every": _positive(int),
    "train.keep_checkpoints": _count(1, 1_000_000),
    "train.num_samples": _count(1, MAX_IMAGES_AT_ONCE),
    "train.write_report": _ANY_BOOL,
    "population.seeds": _ANY_STR,
    "population.sweep": _ANY_STR,
    "population.vmap_members": _at_least_zero(int),
    "eval.every_steps": _at_least_zero(int),
    "eval.num_samples": _count(1, MAX_IMAGES_AT_ONCE),
    "eval.inception_weights": _ANY_STR,
    "eval.download_weights": _ANY_BOOL,
    "eval.reference_num_images": _at_least_zero(int),
    "eval.attribute_classifier": _ANY_STR,
}


def _has_kind(value: Any, kind: type) -> bool:
  if isinstance(value, bool):
    return kind is bool
  if kind is float:
    return isinstance(value, (int, float)) and math.isfinite(value)
  return isinstance(value, kind)


def unknown_key_message(key: str, known: list[str]) -> str:
  """'unknown config key K' with the closest known key, if one is close."""
  close = difflib.get_close_matches(key, known, n=1)
  return f"unknown config key {key}" + (f"; did you mean {close[0]}?" if close else "")


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a one-line ValueError for the first unknown key or bad value."""
  values = run_dir.flatten(config.to_dict())
  for key in values:
    if key not in RULES:
      raise ValueError(unknown_key_message(key, list(RULES)))
  for key, rule in RULES.items():
    if key not in values:
      raise ValueError(f"config key {key} is missing")
    value = values[key]
    if value is None and rule.optional:
      continue
    if not (_has_kind(value, rule.kind) and rule.holds(value)):
      raise ValueError(f"config key {key}={value!r}: expected {rule.expected}")
