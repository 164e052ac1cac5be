"""Trains the project's attribute classifier on prepared faces and reports how well it reads
each attribute: the yardstick for a conditional generator.

  python -m experiments.attribute_classifier --data_dir SHARDS [--resolution R]
                                             [--steps 2000] [--seed 0]

--data_dir may also be a source, as data.dir may: the shards are then those its runs
prepared in the cache (prepared there if missing, at `--resolution`, by default 64).
Trains on the shards' train split (at `--resolution`, by default theirs) and scores on
their valid split, or, where they have none (the shared sample), on a seeded tenth of the
train split held out from training. Writes SHARDS/attribute_classifier_<key>.msgpack and
its .json (keyed by the shards' fingerprint, the resolution, the steps and the seed, so a
second call with the same flags reuses it) and prints one JSON object: the held-out set
and the balanced accuracy per attribute (the mean of the accuracy on faces with and
without it; null where the held-out faces hold only one of the two) and their mean.
"""

import hashlib
import json

import ml_collections
import numpy as np
from absl import flags

from dcgan_jax.data import celeba_prepare, shards, sources
from dcgan_jax.eval import attribute_classifier
from experiments import cli

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Prepared shards (python -m "
                                "experiments.prepare_celeba), with attributes, or their "
                                "source, as data.dir takes it.")
_RESOLUTION = flags.DEFINE_integer("resolution", None, "Image size to classify at (a power "
                                   "of two up to the shards'); default: the shards', or 64 "
                                   "for a source.")
_STEPS = flags.DEFINE_integer("steps", 2000, "Training steps (batches of 64).")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the initialisation, the batches and the "
                             "held-out tenth.")

HELD_OUT_FRACTION = 0.1


def _data_config(data_dir: str, split: str, resolution: int | None) -> ml_collections.ConfigDict:
  """The data config that reads `split` of the shards at `resolution` (None: theirs, or
  prepare_celeba's default for a source)."""
  if resolution is None:
    resolution = (shards.load_metadata(data_dir)["resolution"]
                  if sources.holds_prepared_shards(data_dir)
                  else celeba_prepare.PrepareConfig().resolution)
  return ml_collections.ConfigDict({"source": "celeba", "dir": data_dir, "split": split,
                                    "resolution": resolution, "num_images": 0})


def main(argv: list[str]) -> None:
  del argv
  if not _DATA_DIR.value:
    cli.fail("--data_dir is required: prepared shards with attributes")
  if _STEPS.value < 1:
    cli.fail(f"--steps must be at least 1, got {_STEPS.value}")
  try:
    train_config = _data_config(_DATA_DIR.value, "train", _RESOLUTION.value)
    train_source = sources.create_source(train_config, _SEED.value)
    names = list(train_source.attribute_names)
    if not names:
      raise ValueError(f"--data_dir {_DATA_DIR.value} has no attributes: prepare it with "
                       f"list_attr_celeba.txt beside the images")
    try:
      eval_source = sources.create_source(_data_config(
          _DATA_DIR.value, "valid", train_config.resolution), _SEED.value)
      train_indices, eval_indices = np.arange(len(train_source)), np.arange(len(eval_source))
      held_out = f"the valid split ({len(eval_source):,} faces)"
    except ValueError:  # no valid split
      eval_source = train_source
      train_indices, eval_indices = attribute_classifier.held_out(
          len(train_source), HELD_OUT_FRACTION, _SEED.value)
      held_out = f"a tenth of the train split held out ({len(eval_indices):,} faces)"
  except ValueError as error:
    cli.fail(error)
  identity = [sources.data_identity(train_config, _SEED.value), _STEPS.value, _SEED.value,
              held_out]
  key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
  path = sources.prepared_dir(train_config) / f"attribute_classifier_{key}.msgpack"
  reused = path.exists()
  if reused:
    classifier = attribute_classifier.load(path)
  else:
    classifier = attribute_classifier.train_classifier(
        train_source, names, train_indices, steps=_STEPS.value, seed=_SEED.value)
  labelled = sources.read_batch(eval_source, eval_indices)
  accuracy = attribute_classifier.balanced_accuracy(classifier.logits(labelled["image"]),
                                                    labelled["label"])
  scores = {"held_out": held_out,
            "balanced_accuracy": {name: None if np.isnan(value) else round(float(value), 4)
                                  for name, value in zip(names, accuracy)},
            "mean": round(float(np.nanmean(accuracy)), 4)}
  if not reused:
    attribute_classifier.save(classifier, path, scores)
  print(json.dumps({"classifier": str(path), **scores}))


if __name__ == "__main__":
  cli.run(main)
