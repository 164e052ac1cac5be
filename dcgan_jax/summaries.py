"""What a run reports: TensorBoard events, metrics.jsonl, sample grids and a progress line.

Only process 0 of a multi-host run writes; other processes get a writer that drops
everything, so the loop needs no `if process_index == 0` of its own.
"""

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping

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
  rows = []
  for number, line in enumerate(path.read_text().splitlines(keepends=True), start=1):
    if not (line.endswith("\n") and line.strip()):
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as error:
      raise ValueError(f"{path} line {number} is not a JSON row ({error}); remove or repair "
                       f"that line") from None
    if not (isinstance(row, dict) and isinstance(row.get("step"), int)):
      raise ValueError(f"{path} line {number} is not a row of a step's scalars; remove or "
                       f"repair that line")
    rows.append(row)
  return rows


EVAL_PREFIX = "eval_"
# Entries of a metrics.jsonl row that say where it belongs rather than what was measured.
ROW_FIELDS = ("step", "member")


def training_scalars_at(rows: MetricRows, step: int) -> dict[str, float]:
  """The training scalars logged at `step` (its last row without evaluation scores); {}
  when none was logged there."""
  logged = [row for row in rows if row["step"] == step
            and not any(key.startswith(EVAL_PREFIX) for key in row)]
  return ({k: v for k, v in logged[-1].items() if k not in ROW_FIELDS} if logged else {})


def evaluation_scores(rows: MetricRows) -> dict[str, dict[str, float]]:
  """{"last": ..., "best": ...}: the scores of the last evaluation and of the best one
  by `evaluator.selection_metric`), each with its step; {} without any.
  A step evaluated twice (by a resumed run) counts once, its later row. A growing run's
  best is among the evaluations at its last evaluation's resolution."""
  by_step = {}
  for row in rows:
    scores = {k[len(EVAL_PREFIX):]: v for k, v in row.items() if k.startswith(EVAL_PREFIX)}
    if scores:
      by_step[row["step"]] = scores
  if not by_step:
    return {}
  evaluations = [{"step": step, **scores} for step, scores in sorted(by_step.items())]
  metric = evaluator.selection_metric(evaluations[-1])
  resolution = evaluations[-1].get("resolution")
  return {"last": evaluations[-1],
          "best": min((e for e in evaluations if metric in e
                       and e.get("resolution") == resolution), key=lambda e: e[metric])}


class MetricWriter:
  """TensorBoard scalars/images plus one JSON object per logged step in metrics.jsonl."""

  def __init__(self, workdir: Path, enabled: bool = True,
               row_fields: Mapping[str, Any] = MappingProxyType({})):
    """`row_fields` go into every metrics.jsonl row (a population member's `member`)."""
    self._enabled = enabled
    self._row_fields = dict(row_fields)
    if not enabled:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._workdir = workdir
    self._tb = SummaryWriter(logdir=str(workdir))
    # Appended to, never through a link (run_dir.make_workdir refuses one up front).
    self._jsonl = os.fdopen(os.open(workdir / "metrics.jsonl",
                                    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                                    0o644), "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._enabled:
      return
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({"step": step, **self._row_fields, **scalars}) + "\n")
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
      try:
        self._tb.close()
      finally:
        self._jsonl.close()


def training_seconds(final: Mapping[str, Any]) -> float:
  """A run's training time from its final.json, over every session; one written before
  sessions were summed has only its last session's."""
  return final.get("total_seconds", final["seconds"])


def format_duration(seconds: float) -> str:
  seconds = int(seconds)
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def progress_line(step: int, num_steps: int, scalars: Mapping[str, float],
                  images_per_second: float, eta_seconds: float) -> str:
  """Every metric the step emitted, losses first, then speed and ETA."""
  ordered = sorted(scalars, key=lambda name: not name.endswith("_loss"))
  values = "  ".join(f"{name} {scalars[name]:.4g}" for name in ordered)
  return (f"step {step}/{num_steps}  {values}  {images_per_second:,.0f} img/s  "
          f"ETA {format_duration(eta_seconds)}")


class Progress:
  """Training as the terminal shows it: a tqdm bar on a terminal (elsewhere, e.g. a log
  file, one line per log step). Its ETA is the remaining steps at a smoothed training
  rate, which leaves out the time spent in `paused(kind)` blocks (evaluations, sample
  grids, checkpoints), plus, per kind, the mean time of those blocks so far times how
  many remain (`intervals[kind]` steps apart, and once more at the last step), or
  `expected_pauses[kind]` before one is measured, plus `after_last_step`, the seconds the
  run takes after its last step (its report). The first interval, and the first pause of
  each kind, hold compilation: each only stands until the next replaces it.
  Silent when not `enabled` (processes other than 0)."""

  SMOOTHING = 0.3  # weight of the newest interval in the rate's moving average

  def __init__(self, first_step: int, num_steps: int, enabled: bool = True,
               intervals: Mapping[str, int] | None = None,
               expected_pauses: Mapping[str, float] | None = None,
               after_last_step: float = 0.0):
    self._num_steps = num_steps
    self._enabled = enabled
    self._intervals = dict(intervals or {})
    self._expected_pauses = dict(expected_pauses or {})  # kind -> seconds, until measured
    self._after_last_step = after_last_step
    self._last_step, self._last_time = first_step, time.perf_counter()
    self._paused_seconds = 0.0
    self._pauses: dict[str, list[float]] = {}  # kind -> its durations so far
    self._seconds_per_step: float | None = None
    self._updates = 0
    self._bar = None
    if enabled and sys.stdout.isatty():
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=num_steps, initial=first_step, dynamic_ncols=True, file=sys.stdout,
                       bar_format="{percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt}{postfix}")

  @contextlib.contextmanager
  def paused(self, kind: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
      yield
    finally:
      seconds = time.perf_counter() - start
      self._paused_seconds += seconds
      self._pauses.setdefault(kind, []).append(seconds)

  def _remaining(self, kind: str, step: int) -> int:
    """How many `kind` pauses come after `step`: every interval, and at the last step."""
    every = self._intervals.get(kind, 0)
    if every <= 0:
      return 0
    count = self._num_steps // every - step // every
    return count + (self._num_steps % every != 0 and step < self._num_steps)

  def eta(self, step: int) -> float:
    """Seconds left after `step`: training at the current rate, and the pauses to come."""
    # A kind's first pause compiles what the later ones reuse: like the first interval,
    # it only stands until another is measured.
    expected = self._expected_pauses | {kind: float(np.mean(durations[1:] or durations))
                                        for kind, durations in self._pauses.items()}
    pauses = sum(seconds * self._remaining(kind, step) for kind, seconds in expected.items())
    return ((self._num_steps - step) * (self._seconds_per_step or 0.0) + pauses
            + self._after_last_step)

  def update(self, step: int, scalars: Mapping[str, float], batch_size: int) -> float:
    """Shows the metrics of a log step; returns the training throughput in images/s."""
    now = time.perf_counter()
    seconds = max(now - self._last_time - self._paused_seconds, 1e-9)
    per_step = seconds / max(step - self._last_step, 1)
    self._updates += 1
    self._seconds_per_step = per_step if self._updates <= 2 else (
        self.SMOOTHING * per_step + (1 - self.SMOOTHING) * self._seconds_per_step)
    self._last_step, self._last_time, self._paused_seconds = step, now, 0.0
    images_per_second = batch_size / per_step
    eta = self.eta(step)
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      line = progress_line(step, self._num_steps, scalars, images_per_second, eta)
      self._bar.set_postfix_str(line.split("  ", 1)[1], refresh=True)
    elif self._enabled:
      print(progress_line(step, self._num_steps, scalars, images_per_second, eta), flush=True)
    return images_per_second

  def write(self, line: str) -> None:
    """A line of its own (an evaluation, the end), above the bar."""
    if self._bar is not None:
      self._bar.write(line, file=sys.stdout)
    elif self._enabled:
      print(line, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
