"""The report's figures: training curves, sample grids and their progress GIF, real
beside generated faces, and what the discriminator's first layers respond to.

Figures are drawn on matplotlib's Agg canvas without pyplot, so no display and no global
figure state are involved. Nothing here knows the variant's metric names or network
layout: curves come from whatever the step logged, feature maps from whatever modules
the discriminator runs.
"""

import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from dcgan_jax import generate, losses, steps, summaries
from dcgan_jax.summaries import MetricRows


NUM_FEATURE_LAYERS = 2
NUM_FEATURE_CHANNELS = 8
GRID_PAD = 2
# Logged beside the step's metrics by the loop; not curves of the model.
TIMING_KEYS = ("img_per_s", "elapsed_s")

_BETTER = {"swd": "lower", "fid": "lower", "kid": "lower", "is": "higher", "attr": "higher"}


# ---------------------------------------------------------------------------- metrics


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
  """Logged evaluation metrics without their `eval_` prefix; spreads (`X_std`) go with X,
  and per-item parts (`X/item`, e.g. attr_accuracy's per attribute) stay in the logs."""
  names = {key.removeprefix("eval_") for row in rows for key in row
           if key.startswith("eval_") and "/" not in key}
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


def training_metric_names(rows: MetricRows) -> list[str]:
  """Every metric the train step logged, in the order first seen (no evaluations, no timing)."""
  names = dict.fromkeys(key for row in rows for key in row
                        if key != "step" and not key.startswith("eval_") and key not in TIMING_KEYS)
  return list(names)


def loss_figure(rows: MetricRows, loss: losses.Loss) -> Figure:
  """The step's losses (`*_loss`) above, its other metrics below, over training steps.

  The metrics the loss describes (`loss.output_metrics`) get its labels, and its
  equilibrium level where it has one.
  """
  names = training_metric_names(rows)
  if not names:
    return message_figure("No training metrics were logged yet.")
  panels = [("Losses", "loss", [n for n in names if n.endswith("_loss")]),
            ("Other training metrics", loss.output_axis_label,
             [n for n in names if not n.endswith("_loss")])]
  panels = [panel for panel in panels if panel[2]]
  figure = Figure(figsize=(9, 3.5 * len(panels)), layout="constrained")
  axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
  for ax, (title, ylabel, panel_names) in zip(axes, panels):
    for name in panel_names:
      ax.plot(*series(rows, name), label=loss.output_metrics.get(name, name))
    if loss.equilibrium is not None and set(panel_names) & set(loss.output_metrics):
      ax.axhline(loss.equilibrium, color="grey", linestyle=":", linewidth=1,
                 label="equilibrium: D cannot tell real from fake")
    ax.set(ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    ax.grid(alpha=0.3)
  axes[-1].set_xlabel("step")
  return figure


def loss_caption(loss: losses.Loss) -> str:
  """What `loss_figure` shows, in words."""
  caption = "The losses of both networks"
  if loss.output_metrics:
    caption += ", and " + ", ".join(loss.output_metrics.values())
  if loss.equilibrium is not None:
    caption += f" (at {loss.equilibrium} D cannot tell real from fake)"
  return caption + "."


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


def real_vs_fake_figure(real_BHWC: np.ndarray, fake_BHWC: np.ndarray, step: int) -> Figure:
  figure = Figure(figsize=(12, 6.3), layout="constrained")
  for ax, images, title in zip(figure.subplots(1, 2), (real_BHWC, fake_BHWC),
                               ("Training images", f"Generated at step {step}")):
    ax.imshow(summaries.image_grid(images, pad=GRID_PAD), interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
  return figure


def attribute_figure(grid_HWC: np.ndarray, column_titles: Sequence[str]) -> Figure:
  """A grid of faces (`generate.attribute_grid`, `attribute_settings_grid`) with each
  column's title above it."""
  num_cols = len(column_titles)
  width = max(6.0, 0.55 * num_cols)
  figure = Figure(figsize=(width, width * grid_HWC.shape[0] / grid_HWC.shape[1] + 1.6),
                  layout="constrained")
  ax = figure.subplots()
  ax.imshow(grid_HWC, interpolation="nearest")
  column_width = grid_HWC.shape[1] / num_cols
  ax.set_xticks((np.arange(num_cols) + 0.5) * column_width,
                column_titles, rotation=60,
                ha="left", rotation_mode="anchor", fontsize=8)
  ax.xaxis.tick_top()
  ax.set_yticks([])
  ax.tick_params(length=0)
  return figure


# ------------------------------------------------------------------ sample grids


def grid_step(path: Path) -> int:
  return int(path.stem.removeprefix("step_"))


def sample_grid_paths(workdir: Path) -> list[Path]:
  """DIR/samples/step_XXXXXXX.png in step order."""
  return sorted((workdir / "samples").glob("step_*.png"), key=grid_step)


def progress_gif(grid_paths: list[Path], frame_ms: int = 500, last_frame_ms: int = 2000) -> bytes:
  """An animated GIF, one frame per grid with its step written beneath.

  The step labels keep consecutive frames distinct, so GIF encoding never merges two.
  """
  frames = []
  with Image.open(grid_paths[-1]) as last:
    size = last.size
  for path in grid_paths:
    with Image.open(path) as grid:
      # A growing run's early grids are smaller: shown at the last one's size.
      grid = grid.convert("RGB").resize(size, Image.Resampling.NEAREST)
      frames.append(summaries.labelled(grid, f"step {grid_step(path)}"))
  buffer = io.BytesIO()
  frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                 duration=[frame_ms] * (len(frames) - 1) + [last_frame_ms])
  return buffer.getvalue()


# ------------------------------------------------------- discriminator features


def discriminator_activations(run: generate.TrainedRun, images_BHWC: np.ndarray
                              ) -> list[tuple[str, np.ndarray]]:
  """The discriminator's first feature maps (eval mode), float32 (N, H, W, C) with their
  module paths: the first output at each of its first `NUM_FEATURE_LAYERS` resolutions
  below the input's, whatever the network."""
  features = run.variant.discriminator_features(run.state.d_params, run.state.d_batch_stats,
                                                steps.to_model_range(images_BHWC))
  chosen: dict[int, tuple[str, np.ndarray]] = {}
  for path, maps in features:
    size = maps.shape[1] if maps.ndim == 4 else None
    if size is not None and size < images_BHWC.shape[1] and size not in chosen:
      chosen[size] = (path, np.asarray(maps, np.float32))
      if len(chosen) == NUM_FEATURE_LAYERS:
        break
  return list(chosen.values())


def normalise_per_channel(maps_BHWC: np.ndarray) -> np.ndarray:
  """Each channel scaled to [0, 1] over all images at once, so real and fake compare."""
  low = maps_BHWC.min(axis=(0, 1, 2))
  high = maps_BHWC.max(axis=(0, 1, 2))
  return (maps_BHWC - low) / np.maximum(high - low, 1e-12)


def feature_tiles(maps_BHWC: np.ndarray, num_channels: int, size: int) -> np.ndarray:
  """uint8 (N, num_channels, size, size, 3): the first channels, coloured, upsampled."""
  maps = normalise_per_channel(maps_BHWC[..., :num_channels])
  factor = size // maps.shape[1]
  maps = maps.repeat(factor, axis=1).repeat(factor, axis=2)
  return colormaps["viridis"](maps.transpose(0, 3, 1, 2), bytes=True)[..., :3]


def discriminator_features_figure(images_BHWC: np.ndarray,
                                  activations: list[tuple[str, np.ndarray]],
                                  row_labels: list[str]) -> Figure:
  """Each row one image, then the first channels of each captured layer, one tile each."""
  n, size = images_BHWC.shape[:2]
  groups = [images_BHWC[:, None]] + [
      feature_tiles(maps, NUM_FEATURE_CHANNELS, size) for _, maps in activations]
  tiles = np.concatenate(groups, axis=1)
  num_cols = tiles.shape[1]
  mosaic = summaries.image_grid(tiles.reshape(-1, size, size, 3), num_cols=num_cols, pad=GRID_PAD)
  pitch = size + GRID_PAD
  figure = Figure(figsize=(0.55 * num_cols + 1.5, 0.6 * n + 1.6), layout="constrained")
  ax = figure.subplots()
  ax.imshow(mosaic, interpolation="nearest")
  group_labels = ["input"] + [
      f"{name}: {maps.shape[1]}x{maps.shape[2]}, channels 0-{group.shape[1] - 1}"
      for (name, maps), group in zip(activations, groups[1:])]

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
  ax.set_title("Discriminator feature maps (eval mode), each channel scaled to [0, 1] "
               "over all rows", fontsize=9)
  return figure
