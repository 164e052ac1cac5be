"""Sliced Wasserstein distance between two image sets, as defined for ProGAN.

Karras et al. 2018 ("Progressive Growing of GANs", appendix D): each image is split into
a Laplacian pyramid from full resolution down to 16 px (5x5 binomial filter, mirrored
edges, as cv2.pyrDown/pyrUp). At every level, 128 random 7x7x3 patches per image form a
set of descriptors, normalised per colour channel by that set's own mean and std. The
distance between the two sets of descriptors is the sliced Wasserstein distance: project
both on random unit directions, sort, and average the absolute differences, over 4
repeats of 128 directions. It is reported x1e3 per level (fine structure at the
full-resolution level, colour and layout at 16 px) and averaged over levels.

Needs no weights. Randomness comes from one seeded numpy Generator; both sets use the
same patch positions image by image, so a set compared with itself scores exactly 0.
Memory: about 75 KB of descriptors per image, set and level.
"""

import numpy as np

_BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0
_IMAGES_PER_CHUNK = 256


def _blur(x_BHWC: np.ndarray) -> np.ndarray:
  """5x5 binomial filter (outer product of [1, 4, 6, 4, 1] / 16) with mirrored edges."""
  padded = np.pad(x_BHWC, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
  height, width = x_BHWC.shape[1:3]
  rows = sum(w * padded[:, i:i + height] for i, w in enumerate(_BINOMIAL_5))
  return sum(w * rows[:, :, i:i + width] for i, w in enumerate(_BINOMIAL_5))


def _downsample(x_BHWC: np.ndarray) -> np.ndarray:
  return _blur(x_BHWC)[:, ::2, ::2]


def _upsample(x_BHWC: np.ndarray) -> np.ndarray:
  b, h, w, c = x_BHWC.shape
  zeros_between = np.zeros((b, 2 * h, 2 * w, c), x_BHWC.dtype)
  zeros_between[:, ::2, ::2] = x_BHWC
  # x4 restores the brightness the inserted zeros took away.
  return 4.0 * _blur(zeros_between)


def laplacian_pyramid(images_BHWC: np.ndarray, num_levels: int) -> list[np.ndarray]:
  """Band-pass levels, finest first, and the low-pass residual last, float32 pixel units."""
  levels = [images_BHWC.astype(np.float32)]
  for _ in range(num_levels - 1):
    levels.append(_downsample(levels[-1]))
    levels[-2] = levels[-2] - _upsample(levels[-1])
  return levels


def pyramid_resolutions(resolution: int, min_resolution: int = 16) -> list[int]:
  """Level sizes from `resolution` halving down to `min_resolution`; each must halve evenly."""
  resolutions = [resolution]
  while resolutions[-1] // 2 >= min_resolution:
    if resolutions[-1] % 2:
      raise ValueError(f"image size {resolution} does not halve evenly down to {min_resolution}")
    resolutions.append(resolutions[-1] // 2)
  return resolutions


def _patches(level_BHWC: np.ndarray, centres_BP2: np.ndarray, patch_size: int) -> np.ndarray:
  """(B, P, 2) patch centres -> (B * P, patch_size, patch_size, C) patches."""
  offsets = np.arange(patch_size) - patch_size // 2
  image = np.arange(len(level_BHWC))[:, None, None, None]
  rows = centres_BP2[:, :, 0, None, None] + offsets[:, None]
  cols = centres_BP2[:, :, 1, None, None] + offsets[None, :]
  return level_BHWC[image, rows, cols].reshape(-1, patch_size, patch_size, level_BHWC.shape[-1])


def _descriptors(images_BHWC: np.ndarray, centres: list[np.ndarray],
                 patch_size: int) -> list[np.ndarray]:
  """Per level, every image's patches as rows, normalised per channel over the whole set."""
  per_level: list[list[np.ndarray]] = [[] for _ in centres]
  for start in range(0, len(images_BHWC), _IMAGES_PER_CHUNK):
    chunk = slice(start, start + _IMAGES_PER_CHUNK)
    pyramid = laplacian_pyramid(images_BHWC[chunk], len(centres))
    for level, level_centres, out in zip(pyramid, centres, per_level):
      out.append(_patches(level, level_centres[chunk], patch_size))
  descriptors = []
  for chunks in per_level:
    patches = np.concatenate(chunks)
    mean = patches.mean(axis=(0, 1, 2))
    std = patches.std(axis=(0, 1, 2))
    # A constant channel (a collapsed generator) has nothing to scale; leave it at zero.
    std = np.where(std > 0, std, 1.0)
    descriptors.append(((patches - mean) / std).reshape(len(patches), -1).astype(np.float32))
  return descriptors


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
  """Mean |sorted projection of a - sorted projection of b| over rows and (D, K) directions."""
  # (K, N) keeps each direction's projections contiguous, which sorts several times faster.
  projected_a = np.sort(directions.T @ a.T, axis=1)
  projected_b = np.sort(directions.T @ b.T, axis=1)
  return float(np.mean(np.abs(projected_a - projected_b)))


def sliced_wasserstein_distance(images_a: np.ndarray, images_b: np.ndarray, *, seed: int = 0,
                                patches_per_image: int = 128, patch_size: int = 7,
                                projection_repeats: int = 4, projections_per_repeat: int = 128,
                                min_resolution: int = 16) -> dict:
  """SWD x1e3 between two equally many uint8 (N, R, R, C) images.

  Returns {'resolutions': [R, R/2, ..., 16], 'per_level': [swd per resolution],
  'mean': their average}.
  """
  if images_a.shape != images_b.shape:
    raise ValueError(f"both sets need the same shape, got {images_a.shape} and {images_b.shape}")
  if images_a.dtype != np.uint8 or images_b.dtype != np.uint8:
    raise ValueError("images must be uint8")
  num_images, height, width, _ = images_a.shape
  if height != width:
    raise ValueError(f"images must be square, got {height}x{width}")
  resolutions = pyramid_resolutions(height, min_resolution)
  rng = np.random.default_rng(seed)
  half = patch_size // 2
  # Patches lie wholly inside the image, as in ProGAN.
  centres = [rng.integers(half, r - half, size=(num_images, patches_per_image, 2))
             for r in resolutions]
  descriptors_a = _descriptors(images_a, centres, patch_size)
  descriptors_b = _descriptors(images_b, centres, patch_size)
  per_level = []
  for a, b in zip(descriptors_a, descriptors_b):
    distances = []
    for _ in range(projection_repeats):
      directions = rng.standard_normal((a.shape[1], projections_per_repeat))
      directions /= np.linalg.norm(directions, axis=0, keepdims=True)
      distances.append(sliced_wasserstein(a, b, directions.astype(np.float32)))
    per_level.append(1e3 * float(np.mean(distances)))
  return {"resolutions": resolutions, "per_level": per_level, "mean": float(np.mean(per_level))}
