"""Sliced Wasserstein distance between two image sets, as defined for ProGAN, streamed.

Karras et al. 2018 ("Progressive Growing of GANs", appendix D): each image is split into
a Laplacian pyramid from full resolution down to 16 px (5x5 binomial filter, mirrored
edges, as cv2.pyrDown/pyrUp). At every level, 128 random 7x7x3 patches per image form a
set of descriptors, normalised per colour channel by that set's own mean and std. The
distance between the two sets of descriptors is the sliced Wasserstein distance: project
both on random unit directions (4 repeats of 128) and average, over directions, the 1-D
Wasserstein-1 distance of the projections. It is reported x1e3 per level (fine structure
at the full-resolution level, colour and layout at 16 px) and averaged over levels.

Memory does not grow with the number of images. A set is read twice, a chunk of images
at a time: first for its per-channel mean and variance (accumulated in float64 with
Chan's merge, so the normalisation does not drift with the count), then to project its
normalised descriptors and accumulate, per direction, a `Sketch`: the count and the
float64 sum of the projections falling in each of `BINS` bins over [-RANGE, RANGE], plus
two open-ended bins for the tails. In 1-D, W1(a, b) is the integral of |F_a - F_b|, and
the integral of a CDF over a bin follows exactly from the counts below the bin and the
bin's own count and sum; so the distance is exact except inside a bin where F_a - F_b
changes sign (measured against sorting every projection in memory: see the tests).
Sets may differ in size.

Needs no weights. Patch positions and directions come from one seeded numpy Generator;
both sets use the same patch positions image by image, so a set compared with itself
scores exactly 0.
"""

import dataclasses
from collections.abc import Iterator

import numpy as np

_IMAGES_PER_CHUNK = 128
MIN_RESOLUTION = 16  # the coarsest level of ProGAN's pyramid
# Normalised descriptors projected on unit directions have unit variance on average, and
# heavy tails at the fine levels (a sharp edge among flat patches). Bin edges are evenly
# spaced in asinh(x): about 0.0015 wide near 0, 0.05 at |x| = 32; beyond +-RANGE the two
# open-ended bins still count exactly.
RANGE = 256.0
BINS = 8192
_ASINH_RANGE = float(np.arcsinh(RANGE))
_ASINH_STEP = 2 * _ASINH_RANGE / BINS
# The right edges of the bins before the last: -RANGE, then each inner bin's.
_RIGHT_EDGES = np.sinh(-_ASINH_RANGE + _ASINH_STEP * np.arange(BINS + 1))
_RIGHT_EDGES[0], _RIGHT_EDGES[-1] = -RANGE, RANGE

# The pyramid filters ProGAN's SWD uses: a 5x5 binomial blur (the outer product of
# [1, 4, 6, 4, 1] / 16) with mirrored edges, then every other pixel (down), or pixels
# spread apart with zeros between them, blurred and scaled by 4 (up). Each is computed
# here one axis at a time and only where its output lands: the same sums, in a quarter
# of the work.


def _along(axis: int, part: slice) -> tuple[slice, ...]:
  """An index taking `part` of `axis` and all of the axes before it."""
  return (slice(None),) * axis + (part,)


def _down_axis(x: np.ndarray, axis: int) -> np.ndarray:
  """Blurred along `axis` (mirrored edges), at its even positions."""
  n = x.shape[axis]
  padded = np.pad(x, [(2, 2) if a == axis else (0, 0) for a in range(x.ndim)], mode="reflect")

  def taps(i: int) -> np.ndarray:  # padded[i], padded[i + 2], ...: n // 2 of them
    return padded[_along(axis, slice(i, i + n, 2))]

  out = taps(0) + taps(4)
  out += 4.0 * (taps(1) + taps(3))
  out += 6.0 * taps(2)
  out *= 1.0 / 16.0
  return out


def _up_axis(x: np.ndarray, axis: int) -> np.ndarray:
  """`x` spread to twice its length along `axis` with zeros between, blurred (mirrored
  edges) and doubled: even outputs (x[i-1] + 6 x[i] + x[i+1]) / 8, odd ones
  (x[i] + x[i+1]) / 2; past the ends, x[-1] is x[1] and x[n] is x[n-1]."""
  n = x.shape[axis]
  padded = np.concatenate([x[_along(axis, slice(1, 2))], x, x[_along(axis, slice(n - 1, n))]],
                          axis=axis)

  def at(start: int) -> np.ndarray:
    return padded[_along(axis, slice(start, start + n))]

  out = np.empty((*x.shape[:axis], 2 * n, *x.shape[axis + 1:]), x.dtype)
  even = out[_along(axis, slice(0, None, 2))]
  np.add(at(0), at(2), out=even)
  even += 6.0 * at(1)
  even *= 1.0 / 8.0
  odd = out[_along(axis, slice(1, None, 2))]
  np.add(at(1), at(2), out=odd)
  odd *= 0.5
  return out


def _downsample(x_BHWC: np.ndarray) -> np.ndarray:
  return _down_axis(_down_axis(x_BHWC, 1), 2)


def _upsample(x_BHWC: np.ndarray) -> np.ndarray:
  return _up_axis(_up_axis(x_BHWC, 1), 2)


def laplacian_pyramid(images_BHWC: np.ndarray, num_levels: int) -> list[np.ndarray]:
  """Band-pass levels, finest first, and the low-pass residual last, float32 pixel units."""
  levels = [images_BHWC.astype(np.float32)]
  for _ in range(num_levels - 1):
    levels.append(_downsample(levels[-1]))
    levels[-2] = levels[-2] - _upsample(levels[-1])
  return levels



def _patches(level_BHWC: np.ndarray, centres_BP2: np.ndarray, patch_size: int) -> np.ndarray:
  """(B, P, 2) patch centres -> (B * P, patch_size, patch_size, C) patches."""
  offsets = np.arange(patch_size) - patch_size // 2
  image = np.arange(len(level_BHWC))[:, None, None, None]
  rows = centres_BP2[:, :, 0, None, None] + offsets[:, None]
  cols = centres_BP2[:, :, 1, None, None] + offsets[None, :]
  return level_BHWC[image, rows, cols].reshape(-1, patch_size, patch_size, level_BHWC.shape[-1])

def pyramid_resolutions(resolution: int, min_resolution: int = MIN_RESOLUTION) -> list[int]:
  """Level sizes from `resolution` halving down to `min_resolution`; each must halve evenly."""
  resolutions = [resolution]
  while resolutions[-1] // 2 >= min_resolution:
    if resolutions[-1] % 2:
      raise ValueError(f"image size {resolution} does not halve evenly down to {min_resolution}")
    resolutions.append(resolutions[-1] // 2)
  return resolutions


@dataclasses.dataclass(frozen=True)
class Plan:
  """What two compared sets share: per level, every image's patch centres (by index in
  its set) and the projection directions."""

  resolutions: list[int]
  patch_size: int
  centres: list[np.ndarray]  # per level, (num_images, patches_per_image, 2) int32
  directions: list[np.ndarray]  # per level, (patch_size**2 * channels, K) float32 unit columns

  @property
  def num_images(self) -> int:
    return len(self.centres[0])


def make_plan(num_images: int, resolution: int, *, seed: int = 0, channels: int = 3,
              patches_per_image: int = 128, patch_size: int = 7, projection_repeats: int = 4,
              projections_per_repeat: int = 128,
              min_resolution: int = MIN_RESOLUTION) -> Plan:
  """Patch centres for up to `num_images` images per set, and the directions."""
  resolutions = pyramid_resolutions(resolution, min_resolution)
  rng = np.random.default_rng(seed)
  half = patch_size // 2
  # Patches lie wholly inside the image, as in ProGAN.
  centres = [rng.integers(half, r - half, size=(num_images, patches_per_image, 2),
                          dtype=np.int32) for r in resolutions]
  directions = []
  for _ in resolutions:
    d = rng.standard_normal((patch_size * patch_size * channels,
                             projection_repeats * projections_per_repeat))
    directions.append((d / np.linalg.norm(d, axis=0, keepdims=True)).astype(np.float32))
  return Plan(resolutions, patch_size, centres, directions)


@dataclasses.dataclass(frozen=True)
class Sketch:
  """One set's projections at one level: per direction, counts and float64 sums in bins
  (-inf, -RANGE), BINS bins over [-RANGE, RANGE) (even in asinh), [RANGE, inf)."""

  counts: np.ndarray  # (K, BINS + 2) int64
  sums: np.ndarray  # (K, BINS + 2) float64

  def cdf_integrals(self) -> np.ndarray:
    """(K, BINS + 2): per bin, the integral over it of the CDF F (of the survival
    function 1 - F, negated, for the last, open-ended bin), exact given counts and sums."""
    num = self.counts[0].sum()
    below = np.cumsum(self.counts, axis=1)[:, :-2]  # before each inner bin
    inner = self.counts[:, :-1] * _RIGHT_EDGES - self.sums[:, :-1]
    inner[:, 1:] += below * np.diff(_RIGHT_EDGES)
    last = -(self.sums[:, -1] - self.counts[:, -1] * RANGE)
    return np.concatenate([inner, last[:, None]], axis=1) / num


def _chunks(images_BHWC: np.ndarray, plan: Plan) -> Iterator[tuple[list[np.ndarray], slice]]:
  """Per chunk of images, its pyramid levels (finest first) and its index range."""
  for start in range(0, len(images_BHWC), _IMAGES_PER_CHUNK):
    chunk = slice(start, min(start + _IMAGES_PER_CHUNK, len(images_BHWC)))
    yield laplacian_pyramid(images_BHWC[chunk], len(plan.resolutions)), chunk


def _level_patches(levels: list[np.ndarray], chunk: slice, plan: Plan) -> Iterator[np.ndarray]:
  """Per level, the chunk's patches, (B * P, patch_size, patch_size, C) float32 pixel units."""
  for level, centres in zip(levels, plan.centres):
    yield _patches(level, centres[chunk], plan.patch_size)


def _channel_moments(images_BHWC: np.ndarray, plan: Plan) -> list[tuple[np.ndarray, np.ndarray]]:
  """Per level, the per-channel mean and std of all patches, accumulated in float64."""
  counts = [0] * len(plan.resolutions)
  means = [np.zeros(images_BHWC.shape[-1]) for _ in plan.resolutions]
  squares = [np.zeros(images_BHWC.shape[-1]) for _ in plan.resolutions]
  for levels, chunk in _chunks(images_BHWC, plan):
    for i, patches in enumerate(_level_patches(levels, chunk, plan)):
      values = patches.reshape(-1, patches.shape[-1])
      n = len(values)
      chunk_mean = values.sum(axis=0, dtype=np.float64) / n
      centred = values - chunk_mean.astype(np.float32)
      chunk_squares = np.einsum("nc,nc->c", centred, centred, dtype=np.float64)
      delta, total = chunk_mean - means[i], counts[i] + n
      # Chan et al.'s merge of two sets' means and centred sums of squares.
      squares[i] += chunk_squares + delta**2 * counts[i] * n / total
      means[i] += delta * n / total
      counts[i] = total
  return [(mean, np.sqrt(sq / count)) for mean, sq, count in zip(means, squares, counts)]


def sketch(images_BHWC: np.ndarray, plan: Plan) -> list[Sketch]:
  """Per level, the `Sketch` of uint8 (N, R, R, C) images, N at most `plan.num_images`."""
  if images_BHWC.dtype != np.uint8 or images_BHWC.ndim != 4:
    raise ValueError(f"images must be uint8 (N, H, W, C), got {images_BHWC.dtype} "
                     f"{images_BHWC.shape}")
  num_images, height, width, _ = images_BHWC.shape
  if (height, width) != (plan.resolutions[0],) * 2:
    raise ValueError(f"images must be {plan.resolutions[0]}x{plan.resolutions[0]}, got "
                     f"{height}x{width}")
  if not 0 < num_images <= plan.num_images:
    raise ValueError(f"the plan covers 1 to {plan.num_images} images, got {num_images}")
  normalisers = []
  for mean, std in _channel_moments(images_BHWC, plan):
    # A constant channel (a collapsed generator) has nothing to scale; leave it at zero.
    std = np.where(std > 0, std, 1.0)
    # Patches are (row, col, channel) rows: the channel varies fastest.
    normalisers.append((np.tile(mean, plan.patch_size**2), np.tile(std, plan.patch_size**2)))
  num_directions = plan.directions[0].shape[1]
  counts = [np.zeros(num_directions * (BINS + 2), np.int64) for _ in plan.resolutions]
  sums = [np.zeros(num_directions * (BINS + 2)) for _ in plan.resolutions]
  offsets = (np.arange(num_directions, dtype=np.int32) * (BINS + 2))[None, :]
  for levels, chunk in _chunks(images_BHWC, plan):
    for i, patches in enumerate(_level_patches(levels, chunk, plan)):
      mean, std = normalisers[i]
      rows = patches.reshape(len(patches), -1)
      projected = ((rows - mean) / std).astype(np.float32) @ plan.directions[i]
      # Truncation is the floor from the first inner bin (1) up; all below lands in bin 0.
      bins = (np.arcsinh(projected) * (1 / _ASINH_STEP)
              + (_ASINH_RANGE / _ASINH_STEP + 1)).astype(np.int32)
      flat = (np.clip(bins, 0, BINS + 1, out=bins) + offsets).ravel()
      counts[i] += np.bincount(flat, minlength=len(counts[i]))
      sums[i] += np.bincount(flat, weights=projected.ravel().astype(np.float64),
                             minlength=len(sums[i]))
  shape = (num_directions, BINS + 2)
  return [Sketch(c.reshape(shape), s.reshape(shape)) for c, s in zip(counts, sums)]


def distance(sketches_a: list[Sketch], sketches_b: list[Sketch], plan: Plan) -> dict:
  """SWD x1e3 between two sets' sketches: {'resolutions': [R, R/2, ..., 16],
  'per_level': [swd per resolution], 'mean': their average}."""
  per_level = []
  for a, b in zip(sketches_a, sketches_b):
    integrals = a.cdf_integrals() - b.cdf_integrals()
    # F_a - F_b at the inner edges, exact; where it changes sign inside a bin, |the
    # integral| undercounts, and a linear course between the edges is taken instead.
    at_edges = (np.cumsum(a.counts, axis=1)[:, :-1] / a.counts[0].sum()
                - np.cumsum(b.counts, axis=1)[:, :-1] / b.counts[0].sum())
    left, right = at_edges[:, :-1], at_edges[:, 1:]
    flips = left * right < 0
    linear = np.diff(_RIGHT_EDGES) * (left**2 + right**2) / (2 * np.where(flips, np.abs(left) + np.abs(right), 1))
    contributions = np.abs(integrals)
    contributions[:, 1:-1] = np.where(flips, linear, contributions[:, 1:-1])
    w1_per_direction = contributions.sum(axis=1)
    per_level.append(1e3 * float(w1_per_direction.mean()))
  return {"resolutions": plan.resolutions, "per_level": per_level,
          "mean": float(np.mean(per_level))}


def as_scores(result: dict) -> dict[str, float]:
  """A `distance` result as scores: `swd` (the mean) and `swd_<R>px` per level."""
  return {"swd": result["mean"],
          **{f"swd_{r}px": v for r, v in zip(result["resolutions"], result["per_level"])}}


def sliced_wasserstein_distance(images_a: np.ndarray, images_b: np.ndarray, *, seed: int = 0,
                                **plan_options) -> dict:
  """`distance` between two sets of uint8 (N, R, R, C) images (counts may differ), with
  `make_plan`'s defaults unless `plan_options` say otherwise."""
  if images_a.shape[1:] != images_b.shape[1:]:
    raise ValueError(f"both sets need images of one shape, got {images_a.shape[1:]} and "
                     f"{images_b.shape[1:]}")
  _, height, width, channels = images_a.shape
  if height != width:
    raise ValueError(f"images must be square, got {height}x{width}")
  plan = make_plan(max(len(images_a), len(images_b)), height, seed=seed, channels=channels,
                   **plan_options)
  return distance(sketch(images_a, plan), sketch(images_b, plan), plan)
