"""AC-GAN's and ADC-GAN's auxiliary classifiers: D's attribute head, the class terms of
both losses against a NumPy cross-entropy, the configurations refused, and a D that learns the
attributes of real faces."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcgan_jax import generate, steps, train
from dcgan_jax.data import synthetic_faces
from dcgan_jax.eval import attribute_classifier
from dcgan_jax.losses import auxiliary_classifier, non_saturating
from dcgan_jax.variants import variant_from_config
from tests.runs import tiny_config

NAMES = synthetic_faces.ATTRIBUTE_NAMES
# Attributes a 16 px D sees: Smiling is a pixel or two there.
ATTRIBUTES = ("Black_Hair", "Blond_Hair", "Eyeglasses")


def ac_config(weight: float = 1.0, **overrides):
  return tiny_config({"model.condition": "attributes", "model.attributes": ",".join(ATTRIBUTES),
                      "loss.aux_classifier_weight": weight, **overrides})


def _numpy_balanced(losses: np.ndarray, labels: np.ndarray) -> float:
  """Per attribute, the mean loss over the faces with it and over those without it,
  averaged (one alone where the other is absent), summed over attributes."""
  terms = []
  for a in range(labels.shape[1]):
    means = [np.mean(losses[labels[:, a] > 0, a]) if np.any(labels[:, a] > 0) else None,
             np.mean(losses[labels[:, a] < 0, a]) if np.any(labels[:, a] < 0) else None]
    terms.append(np.mean([m for m in means if m is not None]))
  return float(np.sum(terms))


def _numpy_balanced_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
  """AC-GAN's term in float64: the sigmoid cross-entropy of each attribute, balanced."""
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  return _numpy_balanced(np.where(labels > 0, -np.log(p), -np.log(1 - p)), labels)


def _numpy_discriminative_cross_entropy(logits: np.ndarray, labels: np.ndarray,
                                        as_fake: bool) -> float:
  """ADC-GAN's term in float64: each attribute's four logits (real with it, real without,
  fake with it, fake without) against its class, balanced."""
  logits = logits.astype(np.float64).reshape(len(labels), labels.shape[1], 4)
  log_p = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
  target = np.where(labels > 0, 0, 1) + (2 if as_fake else 0)
  return _numpy_balanced(-np.take_along_axis(log_p, target[..., None], -1)[..., 0], labels)


def _batch(key: jax.Array, num: int, resolution: int) -> dict[str, jax.Array]:
  image_key, label_key = jax.random.split(key)
  return {"image": jax.random.uniform(image_key, (num, resolution, resolution, 3),
                                      minval=-1, maxval=1),
          "label": jnp.where(jax.random.bernoulli(label_key, shape=(num, len(NAMES))), 1,
                             -1).astype(jnp.int8)}


@pytest.mark.parametrize("kind,d_projection", [("acgan", True), ("acgan", False),
                                               ("adcgan", True)])
def test_class_terms_are_the_cross_entropy_of_ds_attribute_logits_added_to_the_loss(
    kind, d_projection):
  """AC-GAN: D's term is the balanced cross-entropy of its attribute logits on the real
  batch, G's on the fakes, against the chosen attributes' labels. ADC-GAN: D's is that of
  the real faces' classes on the real batch plus the fakes' on the fakes, G's that of the
  real faces' classes on the fakes. The adversarial loss is the one the plain loss
  computes from D's adversarial outputs, plus weight times the term."""
  weight = 0.7
  variant = variant_from_config(ac_config(weight, **{"model.d_projection": d_projection,
                                                     "loss.aux_classifier": kind}), NAMES)
  _, d_vars = variant.init_variables(jax.random.PRNGKey(0), jax.random.PRNGKey(1))
  real = _batch(jax.random.PRNGKey(2), 6, variant.resolution)
  # Every real face has eyeglasses: that attribute's term is over its one value present.
  real["label"] = real["label"].at[:, NAMES.index("Eyeglasses")].set(1)
  fake = _batch(jax.random.PRNGKey(3), 6, variant.resolution)
  columns = [NAMES.index(name) for name in ATTRIBUTES]
  params, state = d_vars["params"], d_vars["batch_stats"]

  # A second code path: D applied directly, and the plain loss on its outputs.
  (real_out, real_classes), state_after_real = variant.discriminate(params, state, real)
  (fake_out, fake_classes), _ = variant.discriminate(params, state_after_real, fake)
  (g_fake_out, g_fake_classes), _ = variant.discriminate(params, state, fake)
  assert real_classes.shape == (6, 3 * (4 if kind == "adcgan" else 1))

  d_loss, (_, d_metrics) = variant.loss.discriminator(variant.discriminate, params, state,
                                                      real, fake, jax.random.PRNGKey(4))
  real_labels, fake_labels = (np.asarray(b["label"])[:, columns] for b in (real, fake))
  if kind == "acgan":
    d_term = _numpy_balanced_cross_entropy(np.asarray(real_classes), real_labels)
    g_term = _numpy_balanced_cross_entropy(np.asarray(g_fake_classes), fake_labels)
  else:
    d_term = (_numpy_discriminative_cross_entropy(np.asarray(real_classes), real_labels, False)
              + _numpy_discriminative_cross_entropy(np.asarray(fake_classes), fake_labels,
                                                    True))
    g_term = _numpy_discriminative_cross_entropy(np.asarray(g_fake_classes), fake_labels,
                                                 False)
  np.testing.assert_allclose(d_metrics["d_classes"], d_term, rtol=1e-5)
  np.testing.assert_allclose(
      d_loss, non_saturating.discriminator_bce(real_out, fake_out) + weight * d_term, rtol=1e-5)

  g_loss, (_, g_metrics) = variant.loss.generator(variant.discriminate, params, state, real,
                                                  fake, jax.random.PRNGKey(5))
  np.testing.assert_allclose(g_metrics["g_classes"], g_term, rtol=1e-5)
  np.testing.assert_allclose(
      g_loss, non_saturating.generator_bce(g_fake_out) + weight * g_term, rtol=1e-5)
  assert abs(d_term - g_term) > 1e-3  # the two batches differ, so a swap would show


def test_the_classifier_head_leaves_the_adversarial_output_as_it_was():
  """With and without the classifier, the same parameters give the same D(x, y)."""
  with_head = variant_from_config(ac_config(), NAMES)
  without = variant_from_config(ac_config(0.0), NAMES)
  _, d_vars = with_head.init_variables(jax.random.PRNGKey(0), jax.random.PRNGKey(1))
  batch = _batch(jax.random.PRNGKey(2), 4, with_head.resolution)
  (outputs, classes), _ = with_head.discriminate(d_vars["params"], d_vars["batch_stats"], batch,
                                                 train=False)
  params = {k: v for k, v in d_vars["params"].items() if k != "AttributeClasses"}
  plain, _ = without.discriminate(params, d_vars["batch_stats"], batch, train=False)
  np.testing.assert_array_equal(outputs, plain)
  assert set(d_vars["params"]) - set(params) == {"AttributeClasses"}
  assert np.std(np.asarray(classes)) > 0


def test_a_loss_that_never_shows_d_the_real_batch_itself_is_an_error():
  def copies_the_batch(critic, d_params, d_state, real, fake, key):
    out, d_state = critic(d_params, d_state, {**real})
    return out.mean(), (d_state, {})

  loss = auxiliary_classifier.with_auxiliary_classifier(
      non_saturating.LOSS.__class__(discriminator=copies_the_batch,
                                    generator=non_saturating.LOSS.generator), 1.0, [0])

  def critic(d_params, d_state, batch):
    return (batch["image"].sum(axis=(1, 2, 3)), batch["image"][:, 0, 0, :1]), d_state

  batch = _batch(jax.random.PRNGKey(0), 2, 4)
  with pytest.raises(ValueError, match="^the loss never showed D the real batch"):
    loss.discriminator(critic, None, None, batch, batch, jax.random.PRNGKey(1))


def test_a_d_blind_to_the_attributes_or_a_classifier_without_them_is_refused():
  with pytest.raises(ValueError, match="^model.d_projection=False with "
                                       "loss.aux_classifier_weight=0 leaves D blind"):
    variant_from_config(ac_config(0.0, **{"model.d_projection": False}), NAMES)
  with pytest.raises(ValueError, match="^loss.aux_classifier_weight trains D to predict the "
                                       "attributes: set model.condition=attributes"):
    variant_from_config(tiny_config({"loss.aux_classifier_weight": 1.0}), NAMES)
  with pytest.raises(ValueError, match="^loss.aux_classifier 'ac' is unknown; expected one "
                                       "of: acgan, adcgan$"):
    variant_from_config(ac_config(**{"loss.aux_classifier": "ac"}), NAMES)


@pytest.mark.slow
def test_trained_ds_classifier_tells_the_attributes_of_real_faces(tmp_path):
  """Its class term on real batches falls well below chance's log 2 as it trains, and
  the trained head calls the attributes of real faces it never saw."""
  config = ac_config(1.0, **{"train.num_steps": 250, "train.log_every": 10,
                             "data.num_images": 1024, "model.d_projection": False})
  train.train_and_evaluate(config, tmp_path)
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  terms = [r["d_classes"] for r in records if "d_classes" in r]
  # Chance is 3 log 2 = 2.08 for the three attributes.
  assert np.mean(terms[:2]) > 1.8 and np.mean(terms[-10:]) < 1.35, terms  # measured 2.0, 1.19

  run = generate.load_run(tmp_path)
  unseen = synthetic_faces.SyntheticFaces(12345, 512, config.data.resolution)
  images = np.stack([unseen[i]["image"] for i in range(len(unseen))])
  labels = np.stack([unseen[i]["label"] for i in range(len(unseen))])
  batch = {"image": steps.to_model_range(jnp.asarray(images)), "label": jnp.asarray(labels)}
  (_, classes), _ = run.variant.discriminate(run.state.d_params, run.state.d_batch_stats, batch,
                                             train=False)
  columns = [NAMES.index(name) for name in ATTRIBUTES]
  accuracy = attribute_classifier.balanced_accuracy(np.asarray(classes), labels[:, columns])
  assert np.all(accuracy > 0.6) and np.mean(accuracy) > 0.75, accuracy  # measured 0.90 0.91 0.67
