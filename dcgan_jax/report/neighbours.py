"""Generated faces beside their nearest training images, in pixel or Inception space."""

import dataclasses
from typing import Callable, Iterable, Iterator

import numpy as np
from matplotlib.figure import Figure

from dcgan_jax.data import sources
from dcgan_jax.eval import inception


@dataclasses.dataclass(frozen=True)
class FeatureSpace:
  """Where nearness is measured: `embed` maps uint8 (N, H, W, 3) images to float (N, D)."""

  description: str
  embed: Callable[[np.ndarray], np.ndarray]


def pixel_features(images_BHWC: np.ndarray) -> np.ndarray:
  return images_BHWC.reshape(len(images_BHWC), -1).astype(np.float32)


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


def embedded_chunks(source: sources.Source, indices: np.ndarray, space: FeatureSpace,
                    chunk_size: int = 512) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  for start in range(0, len(indices), chunk_size):
    chunk = indices[start:start + chunk_size]
    yield chunk, space.embed(sources.read_images(source, chunk))


def nearest_training_images(source: sources.Source, queries_QHWC: np.ndarray,
                            candidates: np.ndarray, k: int, space: FeatureSpace
                            ) -> tuple[np.ndarray, np.ndarray]:
  """uint8 (Q, k, H, W, 3) nearest images among the `candidates` indices, and their distances."""
  indices, distances = nearest_neighbours(space.embed(queries_QHWC),
                                          embedded_chunks(source, candidates, space), k)
  images = sources.read_images(source, indices.ravel())
  return images.reshape(*indices.shape, *images.shape[1:]), distances


def nearest_neighbours_figure(queries_BHWC: np.ndarray, neighbours_BKHWC: np.ndarray,
                              distances_NK: np.ndarray, title: str) -> Figure:
  num_rows, k = distances_NK.shape
  figure = Figure(figsize=(1.1 * (k + 1), 1.25 * num_rows + 0.6), layout="constrained")
  axes = figure.subplots(num_rows, k + 1, squeeze=False)
  for row in range(num_rows):
    axes[row, 0].imshow(queries_BHWC[row], interpolation="nearest")
    for col in range(k):
      ax = axes[row, col + 1]
      ax.imshow(neighbours_BKHWC[row, col], interpolation="nearest")
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
