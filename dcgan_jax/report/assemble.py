"""A trained run's report: `write_report(workdir)` fills DIR/report/ and its index.html.

  losses.png                  the losses and other metrics the train step logged
  metrics.png                 the evaluation metrics logged during training
  samples.png, progress.gif   the fixed-noise grid: the last one, and all of them in order
  real_vs_fake.png            training images beside generated ones
  interpolation.png           slerp paths through the latent space
  attributes.png              a conditional run's faces with each attribute toggled
  discriminator_features.png  what D's first feature maps respond to, real and fake
  nearest_neighbours.png      generated faces beside their closest training images
"""

import json
import os
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dcgan_jax import files, generate, growth, population, run_dir, spread, summaries
from dcgan_jax.data import sources
from dcgan_jax.report import figures, neighbours, page

NUM_REAL_VS_FAKE = 36
NUM_NEIGHBOUR_QUERIES = 8
# Beyond this many training images the neighbour search looks at a seeded subset.
MAX_NEIGHBOUR_CANDIDATES = 20_000
NUM_FEATURE_IMAGES = 4  # of each kind, real and generated
INTERPOLATION_ROWS, INTERPOLATION_COLS = 8, 10
ATTRIBUTE_ROWS = 6


def expected_seconds(source: sources.Source, space: neighbours.FeatureSpace,
                     probe: int = 64) -> float:
  """About how long `write_report` takes besides running the networks: its neighbour
  search (reading and embedding `probe` training images, timed after as many untimed ones
  that compile what the space compiles, scaled to the number of candidates) and drawing
  its figures (the largest, of neighbours, drawn now with those images, twice: the others
  together take about as long)."""
  probe = min(probe, max(len(source) // 2, 1))
  images = sources.read_images(source, np.arange(probe))
  space.embed(images)
  start = time.perf_counter()
  space.embed(sources.read_images(source, np.arange(probe, 2 * probe) % len(source)))
  search = (time.perf_counter() - start) * min(len(source), MAX_NEIGHBOUR_CANDIDATES) / probe
  start = time.perf_counter()
  figures.figure_png(neighbours.nearest_neighbours_figure(
      images[np.arange(NUM_NEIGHBOUR_QUERIES) % probe],
      images[np.arange(NUM_NEIGHBOUR_QUERIES * 8).reshape(-1, 8) % probe],
      np.ones((NUM_NEIGHBOUR_QUERIES, 8)), "a rehearsal"))
  return search + 2 * (time.perf_counter() - start)


def write_report(workdir: Path, *, num_neighbours: int = 8, seed: int = 0,
                 neighbour_space: neighbours.FeatureSpace = neighbours.PIXEL_SPACE,
                 member: int | None = None) -> Path:
  """Writes DIR/report/ for the run's latest checkpoint and returns that directory; of a
  population's `member`, in its directory (`run_dir.member_dir`)."""
  workdir = Path(workdir)
  if member is None and population.is_population(run_dir.read_config(workdir)):
    return write_population_report(workdir)
  run = generate.load_run(workdir, member=member)
  if member is not None:
    workdir = run_dir.member_dir(workdir, member)
  source = sources.create_source(run.config.data, run.config.seed)
  if not 1 <= num_neighbours <= len(source):
    raise ValueError(f"--num_neighbours must be between 1 and the {len(source)} training "
                     f"images, got {num_neighbours}")
  report_dir = workdir / "report"
  report_dir.mkdir(exist_ok=True)
  rows = summaries.read_metrics(workdir / "metrics.jsonl")
  rng = np.random.default_rng(seed)
  images: list[tuple[str, str]] = []
  notes: list[str] = []

  def write_figure(name: str, figure: Figure, caption: str) -> None:
    files.write_atomic(report_dir / name, figures.figure_png(figure))
    images.append((name, caption))

  write_figure("losses.png", figures.loss_figure(rows, run.variant.loss),
               figures.loss_caption(run.variant.loss))
  write_figure("metrics.png", figures.eval_metrics_figure(rows),
               "Evaluation metrics logged during training.")

  grid_paths = figures.sample_grid_paths(workdir)
  if grid_paths:
    files.write_atomic(report_dir / "samples.png", grid_paths[-1].read_bytes())
    images.append(("samples.png",
                   f"The fixed-noise sample grid at step {figures.grid_step(grid_paths[-1])}."))
    files.write_atomic(report_dir / "progress.gif", figures.progress_gif(grid_paths))
    images.append(("progress.gif", f"The fixed-noise grid at each of the {len(grid_paths)} "
                                   "saved steps, as the generator learned."))
  else:
    notes.append(f"No sample grids in {workdir / 'samples'} yet: samples.png and progress.gif "
                 "were not written.")

  real_indices = rng.choice(len(source), min(NUM_REAL_VS_FAKE, len(source)), replace=False)
  real = sources.read_images(source, real_indices)
  fake = generate.generate(run.variant, run.state, *run.inputs(seed, NUM_REAL_VS_FAKE))
  # A growing run's faces and discriminator are at its current stage's resolution.
  real = growth.box_filtered(real, fake.shape[1])
  write_figure("real_vs_fake.png", figures.real_vs_fake_figure(real, fake, run.step),
               "Randomly chosen training images (left) beside generated faces (right).")

  files.write_png(report_dir / "interpolation.png",
                  generate.interpolation_grid(run, seed, INTERPOLATION_ROWS, INTERPOLATION_COLS))
  images.append(("interpolation.png", "Each row walks the latent space along a great circle "
                                      "(slerp) between two random points."))

  if run.variant.conditional:
    write_figure("attributes.png",
                 figures.attribute_figure(
                     generate.attribute_grid(run, seed, ATTRIBUTE_ROWS),
                     ["as drawn", *(f"{name} toggled" for name in run.variant.attributes)]),
                 "Each row is one latent and the attributes of a training face (first "
                 "column); each further column toggles the attribute named above it.")

  feature_real, feature_fake = real[:NUM_FEATURE_IMAGES], fake[:NUM_FEATURE_IMAGES]
  feature_inputs = np.concatenate([feature_real, feature_fake])
  row_labels = ["real"] * len(feature_real) + ["generated"] * len(feature_fake)
  write_figure("discriminator_features.png",
               figures.discriminator_features_figure(
                   feature_inputs, figures.discriminator_activations(run, feature_inputs),
                   row_labels),
               "The discriminator's first feature maps on real and generated images: what "
               "its first layers respond to.")

  queries = growth.enlarged(fake[:NUM_NEIGHBOUR_QUERIES], run.variant.resolution)
  candidates = sources.sample_indices(len(source), MAX_NEIGHBOUR_CANDIDATES, rng)
  nearest, distances = neighbours.nearest_training_images(source, queries, candidates,
                                                          num_neighbours, neighbour_space)
  write_figure("nearest_neighbours.png",
               neighbours.nearest_neighbours_figure(
                   queries, nearest, distances,
                   f"Nearest of {len(candidates):,} training images in "
                   f"{neighbour_space.description}; distance under each"),
               "Generated faces (red frame) beside their nearest training images: if none is "
               "a near copy, the generator makes new faces rather than recalling its data.")

  final_path = workdir / "final.json"
  facts = page.run_facts(json.loads(final_path.read_text()) if final_path.exists() else None,
                         summaries.evaluation_scores(rows))
  files.write_atomic(report_dir / "index.html",
                     page.index_html(workdir, report_dir, run.step, run.config, images, notes,
                                     facts).encode())
  return report_dir


def write_population_report(workdir: Path) -> Path:
  """Writes a trained population's DIR/report/index.html: the spread of each setting over
  its seeds and every member's last sample grid, linked to the member's own report."""
  final_path = workdir / "final.json"
  if not final_path.exists():
    raise FileNotFoundError(f"{workdir} has no final.json yet: a population's page needs its "
                            f"members' results; give --member K for one member's report")
  finals = run_dir.read_json(final_path, list)
  report_dir = workdir / "report"
  report_dir.mkdir(exist_ok=True)
  members = []
  for final in finals:
    member_dir = run_dir.member_dir(workdir, final["member"])
    grids = figures.sample_grid_paths(member_dir)
    member_report = member_dir / "report" / "index.html"
    members.append((final["member"],
                    os.path.relpath(grids[-1], report_dir) if grids else None,
                    os.path.relpath(member_report, report_dir) if member_report.exists()
                    else None))
  config = run_dir.read_config(workdir)
  table = spread.population_table(finals, config.train.batch_size)
  files.write_atomic(report_dir / "index.html",
                     page.population_html(workdir, finals, table, members).encode())
  return report_dir
