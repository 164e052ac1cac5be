"""The project's own measure of conditioning: a small CNN that reads a face's attributes.

`train_classifier` fits it to a labelled source's +1/-1 attributes (a sigmoid
cross-entropy per attribute, its two values weighted alike; Adam, random horizontal
flips; batches drawn by a seeded numpy Generator, the parameters initialised from the
seed), and `balanced_accuracy` scores it per attribute: the mean of its accuracy on the
faces that have the attribute and on those that have not, so that a rare attribute
(Eyeglasses is on 6.5% of CelebA) cannot score 0.93 by always answering "no".
"""

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dcgan_jax import files, generate
from dcgan_jax.data import sources
from dcgan_jax.steps import to_model_range
from dcgan_jax.train_state import TrainState
from dcgan_jax.variants import Variant

PyTree = Any
_CHUNK = 512  # images per forward pass when scoring
_FREQUENCY_SAMPLE = 4096  # training examples that estimate each attribute's frequency


class Classifier(nn.Module):
  """Images (B, R, R, 3) in [-1, 1] -> one logit per attribute (B, A): per halving down to
  4x4, a 3x3 convolution and a stride-2 one (channels doubling from `nf`, at most 256),
  then a 256-unit layer and a linear one."""

  num_attributes: int
  nf: int = 32

  @nn.compact
  def __call__(self, images_BHWC: jax.Array) -> jax.Array:
    x, features = images_BHWC, self.nf
    while x.shape[1] > 4:
      x = nn.leaky_relu(nn.Conv(features, (3, 3))(x), 0.2)
      x = nn.leaky_relu(nn.Conv(features, (3, 3), strides=2)(x), 0.2)
      features = min(2 * features, 256)
    x = nn.leaky_relu(nn.Dense(256)(x.reshape(len(x), -1)), 0.2)
    return nn.Dense(self.num_attributes)(x)


@dataclasses.dataclass(frozen=True)
class TrainedClassifier:
  params: PyTree
  attribute_names: tuple[str, ...]
  resolution: int
  nf: int = 32

  @functools.cached_property
  def _apply(self):
    model = Classifier(len(self.attribute_names), self.nf)
    return jax.jit(lambda params, images: model.apply({"params": params}, to_model_range(images)))

  def logits(self, images_BHWC: np.ndarray) -> np.ndarray:
    """float32 (N, A) logits of uint8 (N, R, R, 3) faces; > 0 reads the attribute as +1."""
    if images_BHWC.shape[1:] != (self.resolution, self.resolution, 3):
      raise ValueError(f"the classifier reads {self.resolution}px images, got "
                       f"{images_BHWC.shape[1]}x{images_BHWC.shape[2]}")
    return np.concatenate([np.asarray(self._apply(self.params, images_BHWC[i:i + _CHUNK]))
                           for i in range(0, len(images_BHWC), _CHUNK)])


def train_classifier(source: sources.Source, attribute_names: Sequence[str],
                     indices: np.ndarray, *, steps: int, batch_size: int = 64,
                     learning_rate: float = 1e-3, seed: int = 0, nf: int = 32
                     ) -> TrainedClassifier:
  """A classifier of `attribute_names` (the source's label columns, in order) fitted to
  the examples at `indices`."""
  resolution = source[int(indices[0])]["image"].shape[0]
  model = Classifier(len(attribute_names), nf)
  params = model.init(jax.random.PRNGKey(seed),
                      jnp.zeros((1, resolution, resolution, 3)))["params"]
  optimizer = optax.adam(learning_rate)

  rng = np.random.default_rng(seed)
  # Each attribute's two values weigh alike however rare one is (its frequency estimated
  # on a sample), so that the loss favours the balanced accuracy a logit's sign is judged by.
  sample = sources.read_batch(source, rng.choice(indices, min(len(indices), _FREQUENCY_SAMPLE),
                                                 replace=False))["label"] > 0
  frequency = np.clip(sample.mean(axis=0), 1 / len(sample), 1 - 1 / len(sample))
  weights = (0.5 / frequency, 0.5 / (1 - frequency))

  @jax.jit
  def step(params, opt_state, images, labels):
    def loss_fn(params):
      logits = model.apply({"params": params}, to_model_range(images))
      has = labels > 0
      weight = jnp.where(has, weights[0], weights[1])
      return (weight * optax.sigmoid_binary_cross_entropy(logits, has)).mean()
    updates, opt_state = optimizer.update(jax.grad(loss_fn)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = optimizer.init(params)
  for _ in range(steps):
    batch = sources.read_batch(source, rng.choice(indices, batch_size))
    flip = rng.random(batch_size) < 0.5
    images = np.where(flip[:, None, None, None], batch["image"][:, :, ::-1], batch["image"])
    params, opt_state = step(params, opt_state, images, batch["label"])
  return TrainedClassifier(params, tuple(attribute_names), resolution, nf)


def balanced_accuracy(logits_NA: np.ndarray, labels_NA: np.ndarray) -> np.ndarray:
  """Per attribute, the mean of the accuracy on the +1 faces and on the -1 faces; NaN
  where the faces hold only one of the two."""
  predicted, labels = np.asarray(logits_NA) > 0, np.asarray(labels_NA) > 0
  with np.errstate(invalid="ignore", divide="ignore"):
    on_positive = (predicted & labels).sum(0) / labels.sum(0)
    on_negative = (~predicted & ~labels).sum(0) / (~labels).sum(0)
  both = (labels.sum(0) > 0) & ((~labels).sum(0) > 0)
  return np.where(both, (on_positive + on_negative) / 2, np.nan)


def held_out(num_images: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, held-out) indices: a seeded `fraction` of `num_images` held out, both sorted."""
  order = np.random.default_rng(seed).permutation(num_images)
  cut = max(1, round(fraction * num_images))
  return np.sort(order[cut:]), np.sort(order[:cut])


def save(classifier: TrainedClassifier, path: Path, scores: dict) -> None:
  """The parameters to `path` (msgpack) and, beside it (`.json`), what they read and
  `scores`; each written whole under a temporary name."""
  files.write_atomic(path, flax.serialization.to_bytes(classifier.params))
  files.write_json(path.with_suffix(".json"), {
      "attribute_names": list(classifier.attribute_names),
      "resolution": classifier.resolution, "nf": classifier.nf, **scores})


def load(path: Path) -> TrainedClassifier:
  """A classifier `save` wrote; ValueError, naming the file, if it does not read."""
  try:
    facts = json.loads(path.with_suffix(".json").read_text())
    model = Classifier(len(facts["attribute_names"]), facts["nf"])
    template = model.init(jax.random.PRNGKey(0), jnp.zeros(
        (1, facts["resolution"], facts["resolution"], 3)))["params"]
    params = flax.serialization.from_bytes(template, path.read_bytes())
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise ValueError(f"{path}: not an attribute classifier this project wrote "
                     f"({files.one_line(error)}); delete it to train it again") from error
  return TrainedClassifier(params, tuple(facts["attribute_names"]), facts["resolution"],
                           facts["nf"])


def asking_rows(label_rows_NA: np.ndarray, column: int, value: int) -> np.ndarray:
  """As many label rows as given, each asking for `value` (+1 or -1) in `column`: the given
  rows that have it, repeated in turn, so every request is a combination real faces have
  (a row with black hair set to blond asks for both hair colours, which no training face
  has; attribute-editing evaluations such as AttGAN's turn the other hair colours off
  likewise). Where no row has it, every row with `column` set to it."""
  having = label_rows_NA[(label_rows_NA[:, column] > 0) == (value > 0)]
  if not len(having):
    having = label_rows_NA.copy()
    having[:, column] = value
  return np.resize(having, label_rows_NA.shape)


def attribute_accuracy(make_faces: Callable[[np.ndarray], np.ndarray],
                       label_rows_NA: np.ndarray, attributes: Mapping[str, int],
                       classifier: TrainedClassifier) -> dict[str, Any]:
  """How well faces follow the attributes asked of them. For each of `attributes` (name
  -> its column in the label rows) that the classifier reads: the faces `make_faces` makes
  from label rows asking for +1 there and from as many asking for -1 (`asking_rows` of
  `label_rows_NA`), and the classifier's balanced accuracy on the value asked for.
  Returns {"attr_accuracy": their mean, "attr_accuracy/<name>": each attribute's}."""
  per_attribute = {}
  for name, column in attributes.items():
    if name not in classifier.attribute_names:
      continue
    read = classifier.attribute_names.index(name)
    rows = np.concatenate([asking_rows(label_rows_NA, column, value) for value in (1, -1)])
    logits = classifier.logits(make_faces(rows))[:, read:read + 1]
    per_attribute[name] = float(balanced_accuracy(logits, rows[:, column:column + 1])[0])
  if not per_attribute:
    raise ValueError(f"the classifier reads none of the attributes {sorted(attributes)}")
  return {"attr_accuracy": float(np.mean(list(per_attribute.values())))} | {
      f"attr_accuracy/{name}": value for name, value in per_attribute.items()}


def for_run(path: str, variant: Variant) -> TrainedClassifier | None:
  """The classifier at `path` (a `.msgpack` this module saved) for scoring a run of
  `variant`: None where `path` is empty or the run is not conditional; a one-line error
  where it cannot be read or reads faces of another size than the run makes."""
  if not path or not variant.conditional:
    return None
  classifier = load(Path(path))
  if classifier.resolution != variant.image_resolution:
    raise ValueError(f"attribute classifier {path} reads {classifier.resolution}px faces, the "
                     f"run makes {variant.image_resolution}px ones; train one with python -m "
                     f"experiments.attribute_classifier --resolution {variant.image_resolution}")
  return classifier


def generator_accuracy(variant: Variant, state: TrainState, z_NZ: np.ndarray,
                       label_rows_NA: np.ndarray, classifier: TrainedClassifier
                       ) -> dict[str, float]:
  """`attribute_accuracy` of the run's generator: the latents `z_NZ` with rows from
  `label_rows_NA` asking for each attribute of `variant` at either value."""
  def make_faces(rows: np.ndarray) -> np.ndarray:
    return generate.generate(variant, state, np.concatenate([z_NZ, z_NZ]), rows)

  return attribute_accuracy(make_faces, label_rows_NA,
                            dict(zip(variant.attributes, variant.label_columns)), classifier)
