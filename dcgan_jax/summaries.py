"""What a run reports: TensorBoard events, metrics.jsonl, sample grids and a progress line.

Only process 0 of a multi-host run writes; other processes get a writer that drops
everything, so the loop needs no `if process_index == 0` of its own.
"""

import json
import math
import sys
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from dcgan_jax import files
from dcgan_jax.eval import evaluator


def image_grid(images_BHWC: np.ndarray, num_cols: int | None = None, pad: int = 2) -> np.ndarray:
  """Tiles uint8 images into one (H', W', C) image with `pad` black pixels between."""
  n, h, w, c = images_BHWC.shape
  num_cols = num_cols or math.ceil(math.sqrt(n))
  num_rows = math.ceil(n / num_cols)
  grid = np.zeros((num_rows * (h + pad) + pad, num_cols * (w + pad) + pad, c), np.uint8)
  for i, image in enumerate(images_BHWC):
    row, col = divmod(i, num_cols)
    top, left = pad + row * (h + pad), pad + col * (w + pad)
    grid[top:top + h, left:left + w] = image
  return grid


LABEL_HEIGHT = 14


def labelled(image: Image.Image, label: str) -> Image.Image:
  """The image above a black strip of `LABEL_HEIGHT` pixels with `label` in it."""
  frame = Image.new("RGB", (image.width, image.height + LABEL_HEIGHT))
  frame.paste(image, (0, 0))
  ImageDraw.Draw(frame).text((2, image.height + 1), label, fill="white")
  return frame


MetricRows = list[dict[str, float]]


def read_metrics(path: Path) -> MetricRows:
  """The rows of metrics.jsonl; a last line still being written (no newline yet) is left out."""
  if not path.exists():
    return []
  lines = path.read_text().splitlines(keepends=True)
  return [json.loads(line) for line in lines if line.endswith("\n") and line.strip()]


EVAL_PREFIX = "eval_"


def evaluation_scores(rows: MetricRows) -> dict[str, dict[str, float]]:
  """{"last": ..., "best": ...}: the scores of the last evaluation and of the best one
  by `evaluator.selection_metric`), each with its step; {} without any.
  A step evaluated twice (by a resumed run) counts once, its later row."""
  by_step = {}
  for row in rows:
    scores = {k[len(EVAL_PREFIX):]: v for k, v in row.items() if k.startswith(EVAL_PREFIX)}
    if scores:
      by_step[row["step"]] = scores
  if not by_step:
    return {}
  evaluations = [{"step": step, **scores} for step, scores in sorted(by_step.items())]
  metric = evaluator.selection_metric(evaluations[-1])
  return {"last": evaluations[-1],
          "best": min((e for e in evaluations if metric in e), key=lambda e: e[metric])}


class MetricWriter:
  """TensorBoard scalars/images plus one JSON object per logged step in metrics.jsonl."""

  def __init__(self, workdir: Path, enabled: bool = True):
    self._enabled = enabled
    if not enabled:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._workdir = workdir
    self._tb = SummaryWriter(logdir=str(workdir))
    self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._enabled:
      return
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()

  def write_sample_grid(self, step: int, grid_HWC: np.ndarray) -> None:
    """Adds the grid to TensorBoard and writes samples/step_XXXXXXX.png."""
    if not self._enabled:
      return
    self._tb.add_image("samples", grid_HWC, step, dataformats="HWC")
    files.write_png(self._workdir / "samples" / f"step_{step:07d}.png", grid_HWC)

  def flush(self) -> None:
    if self._enabled:
      self._tb.flush()

  def close(self) -> None:
    if self._enabled:
      self._tb.close()
      self._jsonl.close()


def format_duration(seconds: float) -> str:
  seconds = int(seconds)
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def print_progress(step: int, num_steps: int, scalars: Mapping[str, float],
                   images_per_second: float, eta_seconds: float) -> None:
  """One line per log step with every metric the step emitted; on a terminal it rewrites
  itself in place."""
  # Losses first, then whatever else the step emitted.
  ordered = sorted(scalars, key=lambda name: not name.endswith("_loss"))
  values = "  ".join(f"{name} {scalars[name]:.4g}" for name in ordered)
  line = (f"step {step}/{num_steps}  {values}  {images_per_second:,.0f} img/s  "
          f"ETA {format_duration(eta_seconds)}")
  if sys.stdout.isatty():
    end = "\n" if step >= num_steps else ""
    print("\r" + line.ljust(100), end=end, flush=True)
  else:
    print(line, flush=True)
