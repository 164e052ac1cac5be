"""SWD computed the direct way, in float64: every descriptor held, normalised by the set's
float64 mean and std, every projection sorted. An independent reference for the streamed
`dcgan_jax.eval.swd`, which shares only the pyramid, the patch positions and directions."""

import numpy as np

from dcgan_jax.eval import swd


def _descriptors(images: np.ndarray, plan: swd.Plan) -> list[np.ndarray]:
  """Per level, every patch of every image as a row, normalised per channel in float64."""
  half = plan.patch_size // 2
  pyramids = [swd.laplacian_pyramid(images[i:i + 1000], len(plan.resolutions))
              for i in range(0, len(images), 1000)]
  levels = [np.concatenate(parts) for parts in zip(*pyramids)]
  out = []
  for level, centres in zip(levels, plan.centres):
    # (B, H', W', C, size, size): the window starting at (r, c), for every (r, c).
    windows = np.lib.stride_tricks.sliding_window_view(level, (plan.patch_size,) * 2, (1, 2))
    centres = centres[:len(images)]
    image = np.arange(len(images))[:, None]
    patches = windows[image, centres[..., 0] - half, centres[..., 1] - half]  # (B, P, C, s, s)
    per_channel = patches.astype(np.float64).transpose(0, 1, 3, 4, 2).reshape(
        -1, plan.patch_size**2, images.shape[-1])
    mean, std = per_channel.mean(axis=(0, 1)), per_channel.std(axis=(0, 1))
    std = np.where(std > 0, std, 1.0)
    out.append(((per_channel - mean) / std).reshape(len(per_channel), -1))
  return out


def _w1(a: np.ndarray, b: np.ndarray) -> float:
  """1-D Wasserstein-1 of two samples of any sizes: the integral of |F_a - F_b|."""
  values = np.sort(np.concatenate([a, b]))
  cdf_a = np.searchsorted(np.sort(a), values[:-1], side="right") / len(a)
  cdf_b = np.searchsorted(np.sort(b), values[:-1], side="right") / len(b)
  return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(values)))


def reference_swd(images_a: np.ndarray, images_b: np.ndarray, plan: swd.Plan) -> list[float]:
  """Per level, SWD x1e3 between the two sets."""
  per_level = []
  for a, b, directions in zip(_descriptors(images_a, plan), _descriptors(images_b, plan),
                              plan.directions):
    directions = directions.astype(np.float64)
    projected_a, projected_b = a @ directions, b @ directions
    per_level.append(1e3 * np.mean([_w1(projected_a[:, k], projected_b[:, k])
                                    for k in range(directions.shape[1])]))
  return per_level
