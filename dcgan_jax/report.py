"""A trained run's report: `write_report(workdir)` fills DIR/report/ and its index.html.

  losses.png                  D and G losses, and D's mean output on real and fake batches
  metrics.png                 the evaluation metrics logged during training
  samples.png, progress.gif   the fixed-noise grid: the last one, and all of them in order
  real_vs_fake.png            training images beside generated ones
  interpolation.png           slerp paths through the latent space
  discriminator_features.png  what D's first two convolutions respond to, real and fake
  nearest_neighbours.png      generated faces beside their closest training images

Figures are drawn on matplotlib's Agg canvas without pyplot, so no display and no global
figure state are involved.
"""

import dataclasses
import html
import io
import json
import math
from pathlib import Path
from typing import Callable, Iterable, Iterator

import ml_collections
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw

from dcgan_jax import generate, inception, input_pipeline, run_dir, steps, summaries

MetricRows = list[dict[str, float]]

NUM_REAL_VS_FAKE = 36
NUM_NEIGHBOUR_QUERIES = 8
# Beyond this many training images the neighbour search looks at a seeded subset.
MAX_NEIGHBOUR_CANDIDATES = 20_000
NUM_FEATURE_IMAGES = 4  # of each kind, real and generated
NUM_FEATURE_CHANNELS = 8
FEATURE_LAYERS = ("Conv_0", "Conv_1")
INTERPOLATION_ROWS, INTERPOLATION_COLS = 8, 10
GRID_PAD = 2
# Small pixel grids are shown enlarged by a whole factor up to this width, so stay crisp.
DISPLAY_WIDTH = 640

_D_OUTPUTS = (("d_real", "D(x), real batch"),
              ("d_fake", "D(G(z)) before the D update"),
              ("d_fake_after", "D(G(z)) after the D update"))
_BETTER = {"swd": "lower", "fid": "lower", "kid": "lower", "is": "higher"}
_SUMMARY_KEYS = ("data.source", "data.dir", "data.resolution", "data.num_images", "model.nf",
                 "model.z_dim", "train.batch_size", "train.num_steps", "train.num_epochs",
                 "train.d_steps", "train.g_lr", "train.d_lr")


# ---------------------------------------------------------------------------- metrics


def read_metrics(path: Path) -> MetricRows:
  """The rows of metrics.jsonl; a last line still being written (no newline yet) is left out."""
  if not path.exists():
    return []
  lines = path.read_text().splitlines(keepends=True)
  return [json.loads(line) for line in lines if line.endswith("\n") and line.strip()]


def series(rows: MetricRows, name: str) -> tuple[np.ndarray, np.ndarray]:
  """Steps and values of one metric, in step order.

  Where a step was logged twice the later row wins: a resumed run logs again the steps
  after its last checkpoint.
  """
  by_step = {row["step"]: row[name] for row in rows if name in row}
  ordered = sorted(by_step.items())
  return (np.array([step for step, _ in ordered], np.int64),
          np.array([value for _, value in ordered], np.float64))


def eval_metric_names(rows: MetricRows) -> list[str]:
  """Logged evaluation metrics without their `eval_` prefix; spreads (`X_std`) go with X."""
  names = {key.removeprefix("eval_") for row in rows for key in row if key.startswith("eval_")}
  return sorted(n for n in names if not (n.endswith("_std") and n.removesuffix("_std") in names))


# ---------------------------------------------------------------------------- figures


def figure_png(figure: Figure) -> bytes:
  FigureCanvasAgg(figure)
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", pad_inches=0.1)
  return buffer.getvalue()


def message_figure(message: str) -> Figure:
  figure = Figure(figsize=(6, 1))
  figure.text(0.5, 0.5, message, ha="center", va="center")
  return figure


def loss_figure(rows: MetricRows) -> Figure:
  """Losses above, D's mean sigmoid outputs below, over training steps."""
  if not any("d_loss" in row for row in rows):
    return message_figure("No training losses were logged yet.")
  figure = Figure(figsize=(9, 7), layout="constrained")
  losses_ax, outputs_ax = figure.subplots(2, 1, sharex=True)
  for name, label in (("d_loss", "D loss"), ("g_loss", "G loss")):
    losses_ax.plot(*series(rows, name), label=label)
  losses_ax.set(ylabel="loss", title="Losses")
  for name, label in _D_OUTPUTS:
    outputs_ax.plot(*series(rows, name), label=label)
  # At equilibrium D cannot tell real from fake and outputs 0.5 for both.
  outputs_ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
  outputs_ax.set(xlabel="step", ylabel="mean sigmoid(D)", ylim=(0, 1),
                 title="Discriminator outputs")
  outputs_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  for ax in (losses_ax, outputs_ax):
    ax.legend()
    ax.grid(alpha=0.3)
  return figure


def eval_metrics_figure(rows: MetricRows) -> Figure:
  """One panel per evaluation metric, with its spread shaded where one was logged."""
  names = eval_metric_names(rows)
  if not names:
    return message_figure("No evaluation metrics logged yet: training logs them every "
                          "config.eval.every_steps steps when that is above 0.")
  num_cols = min(len(names), 3)
  num_rows = math.ceil(len(names) / num_cols)
  figure = Figure(figsize=(4.5 * num_cols, 3.2 * num_rows), layout="constrained")
  axes = figure.subplots(num_rows, num_cols, squeeze=False).ravel()
  for ax, name in zip(axes, names):
    steps_, values = series(rows, f"eval_{name}")
    ax.plot(steps_, values, marker="o")
    spread_steps, spread = series(rows, f"eval_{name}_std")
    if len(spread) and np.array_equal(spread_steps, steps_):
      ax.fill_between(steps_, values - spread, values + spread, alpha=0.3)
    better = _BETTER.get(name.split("_")[0])
    ax.set(title=f"{name} ({better} is better)" if better else name, xlabel="step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
  for ax in axes[len(names):]:
    ax.set_visible(False)
  return figure


def real_vs_fake_figure(real_NHWC: np.ndarray, fake_NHWC: np.ndarray, step: int) -> Figure:
  figure = Figure(figsize=(12, 6.3), layout="constrained")
  for ax, images, title in zip(figure.subplots(1, 2), (real_NHWC, fake_NHWC),
                               ("Training images", f"Generated at step {step}")):
    ax.imshow(summaries.image_grid(images, pad=GRID_PAD), interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
  return figure


def interpolation_grid(run: generate.TrainedRun, seed: int) -> np.ndarray:
  z = generate.interpolation_latents(seed, INTERPOLATION_ROWS, INTERPOLATION_COLS, run.setup.z_dim)
  return summaries.image_grid(generate.generate(run, z), num_cols=INTERPOLATION_COLS)


# ------------------------------------------------------------------ sample grids


def grid_step(path: Path) -> int:
  return int(path.stem.removeprefix("step_"))


def sample_grid_paths(workdir: Path) -> list[Path]:
  """DIR/samples/step_XXXXXXX.png in step order."""
  return sorted((workdir / "samples").glob("step_*.png"), key=grid_step)


def labelled_frame(grid: Image.Image, label: str, label_height: int = 14) -> Image.Image:
  """The grid above a black strip with `label` in it."""
  frame = Image.new("RGB", (grid.width, grid.height + label_height))
  frame.paste(grid, (0, 0))
  ImageDraw.Draw(frame).text((GRID_PAD, grid.height + 1), label, fill="white")
  return frame


def progress_gif(grid_paths: list[Path], frame_ms: int = 500, last_frame_ms: int = 2000) -> bytes:
  """An animated GIF, one frame per grid with its step written beneath.

  The step labels keep consecutive frames distinct, so GIF encoding never merges two.
  """
  frames = [labelled_frame(Image.open(path).convert("RGB"), f"step {grid_step(path)}")
            for path in grid_paths]
  buffer = io.BytesIO()
  frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                 duration=[frame_ms] * (len(frames) - 1) + [last_frame_ms])
  return buffer.getvalue()


# ------------------------------------------------------- discriminator features


def discriminator_activations(run: generate.TrainedRun, images_NHWC: np.ndarray
                              ) -> list[np.ndarray]:
  """Outputs of the discriminator's `FEATURE_LAYERS` (eval mode), float32 (N, H, W, C) each."""
  variables = {"params": run.state.d_params, "batch_stats": run.state.d_batch_stats}
  _, state = run.setup.discriminator.apply(
      variables, steps.to_model_range(images_NHWC), train=False,
      capture_intermediates=lambda module, _: module.name in FEATURE_LAYERS,
      mutable=["intermediates"])
  return [np.asarray(state["intermediates"][name]["__call__"][0], np.float32)
          for name in FEATURE_LAYERS]


def normalise_per_channel(maps_NHWC: np.ndarray) -> np.ndarray:
  """Each channel scaled to [0, 1] over all images at once, so real and fake compare."""
  low = maps_NHWC.min(axis=(0, 1, 2))
  high = maps_NHWC.max(axis=(0, 1, 2))
  return (maps_NHWC - low) / np.maximum(high - low, 1e-12)


def feature_tiles(maps_NHWC: np.ndarray, num_channels: int, size: int) -> np.ndarray:
  """uint8 (N, num_channels, size, size, 3): the first channels, coloured, upsampled."""
  maps = normalise_per_channel(maps_NHWC[..., :num_channels])
  factor = size // maps.shape[1]
  maps = maps.repeat(factor, axis=1).repeat(factor, axis=2)
  return colormaps["viridis"](maps.transpose(0, 3, 1, 2), bytes=True)[..., :3]


def discriminator_features_figure(images_NHWC: np.ndarray, activations: list[np.ndarray],
                                  row_labels: list[str]) -> Figure:
  """Each row one image, then the first channels of each captured layer, one tile each."""
  n, size = images_NHWC.shape[:2]
  groups = [images_NHWC[:, None]] + [
      feature_tiles(maps, NUM_FEATURE_CHANNELS, size) for maps in activations]
  tiles = np.concatenate(groups, axis=1)
  num_cols = tiles.shape[1]
  mosaic = summaries.image_grid(tiles.reshape(-1, size, size, 3), num_cols=num_cols, pad=GRID_PAD)
  pitch = size + GRID_PAD
  figure = Figure(figsize=(0.55 * num_cols + 1.5, 0.6 * n + 1.6), layout="constrained")
  ax = figure.subplots()
  ax.imshow(mosaic, interpolation="nearest")
  group_labels = ["input"] + [
      f"{name}: {maps.shape[1]}x{maps.shape[2]}, channels 0-{group.shape[1] - 1}"
      for name, maps, group in zip(FEATURE_LAYERS, activations, groups[1:])]

  def tile_centre(index: int | np.ndarray) -> float | np.ndarray:
    return GRID_PAD + index * pitch + (size - 1) / 2

  bounds = np.cumsum([0] + [group.shape[1] for group in groups])
  ax.set_xticks((tile_centre(bounds[:-1]) + tile_centre(bounds[1:] - 1)) / 2, group_labels,
                fontsize=8)
  ax.xaxis.tick_top()
  ax.set_yticks(tile_centre(np.arange(n)), row_labels)
  for col in bounds[1:-1]:
    ax.axvline(tile_centre(col) - (size + GRID_PAD) / 2, color="white", linewidth=1.5)
  ax.tick_params(length=0)
  ax.set_title("Discriminator convolution outputs (eval mode), each channel scaled to [0, 1] "
               "over all rows", fontsize=9)
  return figure


# ----------------------------------------------------------- nearest neighbours


@dataclasses.dataclass(frozen=True)
class FeatureSpace:
  """Where nearness is measured: `embed` maps uint8 (N, H, W, 3) images to float (N, D)."""

  description: str
  embed: Callable[[np.ndarray], np.ndarray]


def pixel_features(images_NHWC: np.ndarray) -> np.ndarray:
  return images_NHWC.reshape(len(images_NHWC), -1).astype(np.float32)


PIXEL_SPACE = FeatureSpace("pixel space (L2 over 0-255 values)", pixel_features)


def neighbour_space(inception_weights: str | None = None) -> FeatureSpace:
  """Inception pool3 space when pytorch-fid's weights are found, pixel space otherwise."""
  weights = inception.find_inception_weights(inception_weights)
  if weights is None:
    return PIXEL_SPACE
  variables = inception.load_inception_params(weights)
  return FeatureSpace("Inception pool3 space (L2 over 2048-d features)",
                      lambda images: inception.inception_features(variables, images)["pool3"])


def nearest_neighbours(queries_QD: np.ndarray,
                       candidate_chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                       k: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices and L2 distances, both (Q, k) nearest first, of each query's k nearest candidates.

  `candidate_chunks` yields (indices_C, features_CD); one chunk is held at a time beside
  the running best k, so memory does not grow with the number of candidates.
  """
  queries = queries_QD.astype(np.float64)
  query_sq_Q1 = (queries**2).sum(axis=1, keepdims=True)
  best_sq_QK = np.zeros((len(queries), 0))
  best_idx_QK = np.zeros((len(queries), 0), np.int64)
  for indices_C, features_CD in candidate_chunks:
    features = features_CD.astype(np.float64)
    sq_QC = query_sq_Q1 - 2 * queries @ features.T + (features**2).sum(axis=1)
    all_sq = np.concatenate([best_sq_QK, sq_QC], axis=1)
    all_idx = np.concatenate([best_idx_QK, np.broadcast_to(indices_C, sq_QC.shape)], axis=1)
    keep = np.argsort(all_sq, axis=1, kind="stable")[:, :k]
    best_sq_QK = np.take_along_axis(all_sq, keep, axis=1)
    best_idx_QK = np.take_along_axis(all_idx, keep, axis=1)
  if best_idx_QK.shape[1] < k:
    raise ValueError(f"asked for {k} neighbours among {best_idx_QK.shape[1]} candidates")
  return best_idx_QK, np.sqrt(np.maximum(best_sq_QK, 0.0))


def candidate_indices(num_images: int, max_candidates: int, rng: np.random.Generator
                      ) -> np.ndarray:
  """Every index, or a seeded sorted subset of `max_candidates` of them."""
  if num_images <= max_candidates:
    return np.arange(num_images)
  return np.sort(rng.choice(num_images, max_candidates, replace=False))


def read_images(source: input_pipeline.ImageSource, indices: np.ndarray) -> np.ndarray:
  """uint8 (N, H, W, 3) images at `indices`, unflipped."""
  return input_pipeline.read_local_batch(source, slice(None), input_pipeline.no_flips(indices))


def embedded_chunks(source: input_pipeline.ImageSource, indices: np.ndarray, space: FeatureSpace,
                    chunk_size: int = 512) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  for start in range(0, len(indices), chunk_size):
    chunk = indices[start:start + chunk_size]
    yield chunk, space.embed(read_images(source, chunk))


def nearest_training_images(source: input_pipeline.ImageSource, queries_QHWC: np.ndarray,
                            candidates: np.ndarray, k: int, space: FeatureSpace
                            ) -> tuple[np.ndarray, np.ndarray]:
  """uint8 (Q, k, H, W, 3) nearest images among the `candidates` indices, and their distances."""
  indices, distances = nearest_neighbours(space.embed(queries_QHWC),
                                          embedded_chunks(source, candidates, space), k)
  images = read_images(source, indices.ravel())
  return images.reshape(*indices.shape, *images.shape[1:]), distances


def nearest_neighbours_figure(queries_NHWC: np.ndarray, neighbours_NKHWC: np.ndarray,
                              distances_NK: np.ndarray, title: str) -> Figure:
  num_rows, k = distances_NK.shape
  figure = Figure(figsize=(1.1 * (k + 1), 1.25 * num_rows + 0.6), layout="constrained")
  axes = figure.subplots(num_rows, k + 1, squeeze=False)
  for row in range(num_rows):
    axes[row, 0].imshow(queries_NHWC[row], interpolation="nearest")
    for col in range(k):
      ax = axes[row, col + 1]
      ax.imshow(neighbours_NKHWC[row, col], interpolation="nearest")
      ax.set_xlabel(f"{distances_NK[row, col]:,.0f}", fontsize=8, labelpad=1)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  for spine in (s for ax in axes[:, 0] for s in ax.spines.values()):
    spine.set(color="tab:red", linewidth=2)
  axes[0, 0].set_title("generated", fontsize=8)
  for col in range(k):
    axes[0, col + 1].set_title(f"#{col + 1}", fontsize=8)
  figure.suptitle(title, fontsize=9)
  return figure


# ------------------------------------------------------------------------ index


def config_summary(config: ml_collections.ConfigDict) -> dict[str, object]:
  flat = run_dir.flatten(run_dir.config_as_dict(config))
  return {key: flat[key] for key in _SUMMARY_KEYS if flat.get(key) not in (None, "")}


def display_width(image_path: Path) -> int:
  width = Image.open(image_path).width
  return width * max(1, DISPLAY_WIDTH // width)


def index_html(workdir: Path, report_dir: Path, step: int, config: ml_collections.ConfigDict,
               images: list[tuple[str, str]], notes: list[str]) -> str:
  """The report page: a header, then each (file name, caption) image in `report_dir`,
  linked relatively."""
  title = html.escape(f"DCGAN report: {workdir.resolve()}")
  summary = " &middot; ".join(f"{html.escape(k)} = {html.escape(str(v))}"
                              for k, v in config_summary(config).items())
  full_config = "\n".join(
      f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
      for k, v in run_dir.flatten(run_dir.config_as_dict(config)).items())
  figures = "\n".join(
      f'<figure><a href="{name}"><img src="{name}" alt="{name}" '
      f'width="{display_width(report_dir / name)}"></a>'
      f"<figcaption>{html.escape(caption)}</figcaption></figure>" for name, caption in images)
  notes_html = "".join(f"<p class=note>{html.escape(note)}</p>\n" for note in notes)
  return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; }}
figure {{ margin: 2em 0; }}
img {{ max-width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #ddd; }}
figcaption {{ color: #444; margin-top: .4em; }}
.note {{ color: #a40; }}
td {{ padding: 0 1em 0 0; font-family: monospace; }}
</style></head>
<body>
<h1>{title}</h1>
<p>Checkpoint step {step}. {summary}</p>
<details><summary>Full config</summary><table>
{full_config}
</table></details>
{notes_html}{figures}
</body></html>
"""


# ----------------------------------------------------------------------- report


def write_report(workdir: Path, *, num_neighbours: int = 8, seed: int = 0,
                 neighbour_space: FeatureSpace = PIXEL_SPACE) -> Path:
  """Writes DIR/report/ for the run's latest checkpoint and returns that directory."""
  workdir = Path(workdir)
  run = generate.load_run(workdir)
  source = input_pipeline.create_source(run.config.data, run.config.seed)
  if not 1 <= num_neighbours <= len(source):
    raise ValueError(f"--num_neighbours must be between 1 and the {len(source)} training "
                     f"images, got {num_neighbours}")
  report_dir = workdir / "report"
  report_dir.mkdir(exist_ok=True)
  rows = read_metrics(workdir / "metrics.jsonl")
  rng = np.random.default_rng(seed)
  images: list[tuple[str, str]] = []
  notes: list[str] = []

  def write_figure(name: str, figure: Figure, caption: str) -> None:
    summaries.write_atomic(report_dir / name, figure_png(figure))
    images.append((name, caption))

  write_figure("losses.png", loss_figure(rows),
               "Losses, and D's mean output on real images and on generated ones before and "
               "after its update; both outputs near 0.5 means D cannot tell them apart.")
  write_figure("metrics.png", eval_metrics_figure(rows),
               "Evaluation metrics logged during training.")

  grid_paths = sample_grid_paths(workdir)
  if grid_paths:
    summaries.write_atomic(report_dir / "samples.png", grid_paths[-1].read_bytes())
    images.append(("samples.png",
                   f"The fixed-noise sample grid at step {grid_step(grid_paths[-1])}."))
    summaries.write_atomic(report_dir / "progress.gif", progress_gif(grid_paths))
    images.append(("progress.gif", f"The fixed-noise grid at each of the {len(grid_paths)} "
                                   "saved steps, as the generator learned."))
  else:
    notes.append(f"No sample grids in {workdir / 'samples'} yet: samples.png and progress.gif "
                 "were not written.")

  real_indices = rng.choice(len(source), min(NUM_REAL_VS_FAKE, len(source)), replace=False)
  real = read_images(source, real_indices)
  fake = generate.generate(run, generate.latent_noise(seed, NUM_REAL_VS_FAKE, run.setup.z_dim))
  write_figure("real_vs_fake.png", real_vs_fake_figure(real, fake, run.step),
               "Randomly chosen training images (left) beside generated faces (right).")

  summaries.write_png(report_dir / "interpolation.png", interpolation_grid(run, seed))
  images.append(("interpolation.png", "Each row walks the latent space along a great circle "
                                      "(slerp) between two random points."))

  feature_real, feature_fake = real[:NUM_FEATURE_IMAGES], fake[:NUM_FEATURE_IMAGES]
  feature_inputs = np.concatenate([feature_real, feature_fake])
  row_labels = ["real"] * len(feature_real) + ["generated"] * len(feature_fake)
  write_figure("discriminator_features.png",
               discriminator_features_figure(feature_inputs,
                                             discriminator_activations(run, feature_inputs),
                                             row_labels),
               "The discriminator's first two convolution outputs on real and generated "
               "images: what its first layers respond to.")

  queries = fake[:NUM_NEIGHBOUR_QUERIES]
  candidates = candidate_indices(len(source), MAX_NEIGHBOUR_CANDIDATES, rng)
  neighbours, distances = nearest_training_images(source, queries, candidates, num_neighbours,
                                                  neighbour_space)
  write_figure("nearest_neighbours.png",
               nearest_neighbours_figure(
                   queries, neighbours, distances,
                   f"Nearest of {len(candidates):,} training images in "
                   f"{neighbour_space.description}; distance under each"),
               "Generated faces (red frame) beside their nearest training images: if none is "
               "a near copy, the generator makes new faces rather than recalling its data.")

  summaries.write_atomic(report_dir / "index.html",
                         index_html(workdir, report_dir, run.step, run.config, images,
                                    notes).encode())
  return report_dir
