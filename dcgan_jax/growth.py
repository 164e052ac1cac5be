"""The progressive-growing schedule (Karras et al. 2018): which resolution a step trains
at, and how far its new layers have faded in.

Stage s trains at 4 * 2**s pixels. Stage 0 only stabilises; every later stage first
fades its new layers in (alpha rising linearly from 0 to 1 over `fade_images` images)
and then stabilises (alpha 1) for `stable_images` images; the last stage stabilises until
training ends. Each stage has its own batch size, a multiple of the loader's batch.
Everything is a pure function of the step, so a run resumed anywhere, mid fade-in
included, trains exactly as one that never stopped.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from dcgan_jax.models import progan


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Steps are counted from 0: step t is the (t+1)-th update."""

  batch_sizes: tuple[int, ...]  # per stage; its length is the number of stages
  fade_images: int
  stable_images: int

  @property
  def num_stages(self) -> int:
    return len(self.batch_sizes)

  @staticmethod
  def resolution(stage: int) -> int:
    return 4 * 2**stage

  def fade_steps(self, stage: int) -> int:
    return math.ceil(self.fade_images / self.batch_sizes[stage]) if stage else 0

  def stable_steps(self, stage: int) -> int:
    return math.ceil(self.stable_images / self.batch_sizes[stage])

  def start(self, stage: int) -> int:
    """The first step of `stage`."""
    return sum(self.fade_steps(s) + self.stable_steps(s) for s in range(stage))

  def stage_at(self, step: int) -> int:
    """The stage step `step` trains in (host side: it picks the compiled step)."""
    stage = 0
    while stage + 1 < self.num_stages and step >= self.start(stage + 1):
      stage += 1
    return stage

  def alpha(self, stage: int, step: jax.Array | int) -> jax.Array:
    """How far `stage`'s new layers have faded in at `step`, in [0, 1]: 0 at its first
    step, (images seen in the fade-in) / fade_images after, 1 once it stabilises."""
    fade_steps = self.fade_steps(stage)
    if not fade_steps:
      return jnp.ones((), jnp.float32)
    done = jnp.asarray(step, jnp.float32) - self.start(stage)
    return jnp.clip(done / fade_steps, 0.0, 1.0)

  def images(self, num_steps: int) -> int:
    """Images the first `num_steps` steps train on."""
    total, step = 0, 0
    for stage in range(self.num_stages):
      end = (self.start(stage + 1) if stage + 1 < self.num_stages else num_steps)
      steps = max(0, min(end, num_steps) - step)
      total += steps * self.batch_sizes[stage]
      step += steps
    return total

  def steps_to_finish(self) -> int:
    """Steps through the last stage's fade-in and one stabilising phase: the length of
    the full schedule."""
    last = self.num_stages - 1
    return self.start(last) + self.fade_steps(last) + self.stable_steps(last)


def parse_batch_sizes(text: str, max_resolution: int, loader_batch_size: int
                      ) -> tuple[int, ...]:
  """`growth.batch_sizes` ("4:16,8:16,16:8"; resolutions not named, or all when empty,
  take `train.batch_size`) as one batch size per stage, each a multiple of the loader's
  batch (`train.batch_size`), which a stage's batch is assembled from."""
  resolutions = progan.resolutions(max_resolution)
  sizes = dict.fromkeys(resolutions, loader_batch_size)
  for item in filter(None, (part.strip() for part in text.split(","))):
    resolution, _, size = item.partition(":")
    if not (resolution.isdigit() and size.isdigit() and int(resolution) in sizes
            and int(size) > 0 and int(size) % loader_batch_size == 0):
      raise ValueError(
          f"growth.batch_sizes item {item!r}: expected RESOLUTION:BATCH with RESOLUTION one "
          f"of {', '.join(map(str, resolutions))} and BATCH a positive multiple of "
          f"train.batch_size {loader_batch_size}")
    sizes[int(resolution)] = int(size)
  return tuple(sizes[r] for r in resolutions)


def fade_images(x_BHWC: jax.Array, resolution: int, stage: int, alpha: float | jax.Array
                ) -> jax.Array:
  """Full-resolution images box-filtered to `resolution` (the paper's downsampling of the
  training set) and, from stage 1 on, blended as `(1 - alpha) * previous + alpha * new`
  with the previous stage's resolution shown at this one, the same fade-in as the
  generator's output, so the discriminator cannot tell real from fake by it."""
  new = progan.box_downsample(x_BHWC, x_BHWC.shape[1] // resolution)
  if stage == 0:
    return new
  previous = progan.upsample_nearest(progan.box_downsample(new, 2), 2)
  return (1.0 - alpha) * previous + alpha * new


def box_filtered(images_BHWC: np.ndarray, resolution: int) -> np.ndarray:
  """uint8 images box-filtered down to `resolution` (the images themselves if there):
  training images as a growing run's stage sees them."""
  if images_BHWC.shape[1] == resolution:
    return images_BHWC
  filtered = progan.box_downsample(jnp.asarray(images_BHWC, jnp.float32),
                                   images_BHWC.shape[1] // resolution)
  return np.clip(np.round(np.asarray(filtered)), 0, 255).astype(np.uint8)


def enlarged(images_BHWC: np.ndarray, resolution: int) -> np.ndarray:
  """uint8 images repeated up to `resolution` (nearest neighbour), to set a growing run's
  early samples beside full-resolution images."""
  return np.asarray(progan.upsample_nearest(images_BHWC, resolution // images_BHWC.shape[1]))
