"""Presets side by side: every preset x seed trained on the same data, then scored with
the same real images and the same latent noise.

`DIR/<preset>/seed<k>/` holds each run (a run already trained that far is not trained
again), or, when a preset's seeds train as one population (`dcgan_jax.population`),
`DIR/<preset>/population/` holds them all, member k the k-th seed; `DIR/compare.json`, `compare.md` and `compare.png` hold the result: per preset,
the mean and standard deviation over seeds of each score (a conditional run's
attr_accuracy too, given `eval.attribute_classifier`), wall time and img/s (over all of
a run's training sessions, when it was stopped and resumed), and one sample grid per preset
side by side.
"""

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from PIL import Image

from dcgan_jax import files, generate, summaries, train
from dcgan_jax.data import sources
from dcgan_jax.eval import attribute_classifier
from dcgan_jax.eval import evaluator as evaluation
from dcgan_jax.spread import RunResult, markdown_table, summarise, wall_time_and_rate

# The noise every compared run is scored and drawn with: one seed for all.
NOISE_SEED = 12345
GRID_SAMPLES = 16


def run_directory(workdir: Path, preset: str, seed: int) -> Path:
  return workdir / preset / f"seed{seed}"


def population_directory(workdir: Path, preset: str) -> Path:
  return workdir / preset / "population"


def _trained_to(directory: Path, num_steps: int) -> bool:
  """Whether the run (or population) in `directory` finished `num_steps` steps."""
  final_path = directory / "final.json"
  if not final_path.exists():
    return False
  final = json.loads(final_path.read_text())
  return (final[0] if isinstance(final, list) else final)["step"] >= num_steps


def _shards_read(data_config: ml_collections.ConfigDict) -> Path | None:
  """The prepared shards that training reads for `data.dir`; None for synthetic faces."""
  return sources.prepared_dir(data_config) if data_config.source == "celeba" else None


def _check_same_data(configs: dict[str, ml_collections.ConfigDict]) -> None:
  """Scores only compare on the same data: every preset must read the same images."""
  keys = ("source", "split", "resolution", "num_images")
  first_name, first = next(iter(configs.items()))
  for name, config in configs.items():
    differing = [k for k in keys if config.data[k] != first.data[k]]
    # data.dir last: a source given as data.dir is prepared for each resolution it is read at.
    if not differing and _shards_read(config.data) != _shards_read(first.data):
      differing = ["dir"]
    if differing:
      raise ValueError(f"--configs {first_name} and {name} train on different data "
                       f"({', '.join(f'data.{k}' for k in differing)}); set them alike, "
                       f"e.g. --config.data.resolution=32")


def train_runs(workdir: Path, configs: dict[str, ml_collections.ConfigDict],
               seeds: list[int], as_population: bool = False) -> None:
  """Trains every preset x seed that is not already trained to its length: each seed
  alone, or with `as_population` a preset's seeds as one population."""
  _check_same_data(configs)
  for name, config in configs.items():
    if as_population:
      directory = population_directory(workdir, name)
      config_p = copy.deepcopy(config)
      config_p.population.seeds = ",".join(str(seed) for seed in seeds)
      if not _trained_to(directory, config_p.train.num_steps):
        print(f"training {name} seeds {config_p.population.seeds} as one population in "
              f"{directory}", flush=True)
        train.train_and_evaluate(config_p, directory)
      continue
    for seed in seeds:
      directory = run_directory(workdir, name, seed)
      config_k = copy.deepcopy(config)
      config_k.seed = seed
      if _trained_to(directory, config_k.train.num_steps):
        continue
      print(f"training {name} seed {seed} in {directory}", flush=True)
      train.train_and_evaluate(config_k, directory)


def score_runs(workdir: Path, configs: dict[str, ml_collections.ConfigDict], seeds: list[int],
               num_samples: int, inception_weights: str | None = None,
               as_population: bool = False) -> tuple[list[RunResult], dict[str, np.ndarray]]:
  """Scores of every run against one evaluator, and each preset's first-seed samples. A
  population member's wall time is its population's divided among the members."""
  reference = copy.deepcopy(next(iter(configs.values())))
  reference.seed = 0
  evaluator = evaluation.Evaluator(reference, evaluation.cache_dir(reference, workdir),
                                   num_samples=num_samples, inception_weights=inception_weights,
                                   download_weights=reference.eval.download_weights)
  results, grids = [], {}
  for name in configs:
    for index, seed in enumerate(seeds):
      if as_population:
        directory = population_directory(workdir, name)
        run = generate.load_run(directory, member=index)
        final = json.loads((directory / "final.json").read_text())[index]
      else:
        directory = run_directory(workdir, name, seed)
        run = generate.load_run(directory)
        final = json.loads((directory / "final.json").read_text())
      inputs = run.inputs(NOISE_SEED, evaluator.num_samples)
      images = generate.generate(run.variant, run.state, *inputs)
      scores = evaluator(images)
      classifier = attribute_classifier.for_run(run.config.eval.attribute_classifier,
                                                run.variant)
      if classifier is not None:
        scores |= attribute_classifier.generator_accuracy(run.variant, run.state, *inputs,
                                                          classifier)
      results.append(RunResult(name, seed, scores,
                               *wall_time_and_rate(final, run.config.train.batch_size,
                                                   len(seeds) if as_population else 1)))
      grids.setdefault(name, images[:GRID_SAMPLES])
  return results, grids


def side_by_side(grids: dict[str, np.ndarray]) -> np.ndarray:
  """One sample grid per preset, left to right, each above its name."""
  panels = []
  for name, images in grids.items():
    grid = summaries.image_grid(images, num_cols=math.isqrt(len(images)))
    panels.append(np.asarray(summaries.labelled(Image.fromarray(grid), name)))
  height = max(p.shape[0] for p in panels)
  padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0))) for p in panels]
  return np.concatenate(padded, axis=1)


def compare(workdir: Path, configs: dict[str, ml_collections.ConfigDict], seeds: list[int],
            num_samples: int, inception_weights: str | None = None,
            as_population: bool = False) -> dict[str, Any]:
  """Trains what is missing, scores everything, writes compare.json/.md/.png; with
  `as_population`, each preset's seeds train as one population (same scores)."""
  workdir = Path(workdir)
  train_runs(workdir, configs, seeds, as_population)
  results, grids = score_runs(workdir, configs, seeds, num_samples, inception_weights,
                              as_population)
  summary = summarise(results)
  report = {"seeds": seeds, "num_samples": num_samples, "noise_seed": NOISE_SEED,
            "presets": summary, "runs": [dataclasses.asdict(r) for r in results]}
  files.write_json(workdir / "compare.json", report)
  files.write_atomic(workdir / "compare.md", markdown_table(summary, seeds).encode())
  files.write_png(workdir / "compare.png", side_by_side(grids))
  return report
