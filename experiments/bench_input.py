"""Images/s of the training input pipeline alone, from prepared shards.

  python -m experiments.bench_input --data_dir data/celeba64 [--batch_size 128] [--num_workers 0]

Prints one JSON line: `images_per_s` through the training pipeline (shuffle, random flip,
batch, optional worker processes) and `source_images_per_s` for random single reads from
the shards alone, which bounds the pipeline from above.
"""

import json
import time

import numpy as np
from absl import flags

from dcgan_jax.data import pipeline, shards
from experiments import cli
from experiments.configs import celeba64

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Prepared shards.", required=True)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 0, "grain worker processes.")
_NUM_THREADS = flags.DEFINE_integer("num_threads", 1, "grain read threads.")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 200, "Batches to time (after warm-up).")


def source_images_per_s(source: shards.PreparedImages, num_reads: int) -> float:
  indices = np.random.default_rng(0).integers(0, len(source), num_reads)
  start = time.perf_counter()
  for index in indices:
    source[int(index)]
  return num_reads / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
  del argv
  config = celeba64.get_config()
  config.data.dir = _DATA_DIR.value
  config.data.num_workers = _NUM_WORKERS.value
  config.data.num_threads = _NUM_THREADS.value
  config.train.batch_size = _BATCH_SIZE.value
  source = shards.PreparedImages(config.data.dir, config.data.split)
  source_rate = source_images_per_s(source, 20_000)  # before the pipeline's threads start
  iterator = pipeline.create_train_iterator(config, source)
  for _ in range(20):  # warm-up: worker start-up and first prefetch
    next(iterator)
  start = time.perf_counter()
  for _ in range(_NUM_BATCHES.value):
    batch = next(iterator)
  seconds = time.perf_counter() - start
  print(json.dumps({
      "images_per_s": round(_NUM_BATCHES.value * _BATCH_SIZE.value / seconds, 1),
      "source_images_per_s": round(source_rate, 1),
      "batch_size": _BATCH_SIZE.value, "num_workers": _NUM_WORKERS.value,
      "num_threads": _NUM_THREADS.value, "batches": _NUM_BATCHES.value,
      "image_shape": list(batch.shape[1:]), "num_images": len(source),
  }))


if __name__ == "__main__":
  cli.run(main)
