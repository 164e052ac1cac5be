"""An auxiliary classifier in D as a term added to any loss: AC-GAN's (Odena et al. 2017,
"Conditional Image Synthesis with Auxiliary Classifier GANs") or ADC-GAN's (Hou et al.
2022, "Conditional GANs with Auxiliary Discriminative Classifier").

The discriminator also predicts the conditioned attributes: with a classifier in its
heads it returns (outputs, attribute logits) (`layers.conditional_output`).
- AC-GAN: one sigmoid per attribute. D learns them from the real batch, weight * the
  attributes' binary cross-entropy against the true +1/-1 labels; G is rewarded when its
  fakes are classified as the attributes they were asked for, weight * the same
  cross-entropy on the fakes.
- ADC-GAN: a softmax over four classes per attribute (`ADC_CLASSES`): a real face with
  it, a real face without, a fake asked to have it, a fake asked not to. D learns real
  faces' and fakes' classes, so a fake that only looks classifiable, not like a real face
  with its attributes, is told apart; G is rewarded when its fakes are classified as
  real faces with the attributes asked of them.

Where this departs from the papers, and why:
- Multi-label attributes take a classifier each where the papers' single class takes one
  softmax; their cross-entropies are summed, the log-likelihood of the attribute vector.
- Each attribute's two values weigh alike, as in the balanced accuracy `attr_accuracy`
  judges by: CelebA's rare attributes (Eyeglasses on 6.5% of faces) would otherwise
  teach D little beyond "no".
- AC-GAN's D term leaves out the fakes, which the paper's D also classifies: that term
  lets D and G agree on fakes that are easy to classify whatever they look like.
- ADC-GAN's G term is the cross-entropy towards the real class alone; the paper also
  subtracts the one towards the fake class, which has no lower bound.
"""

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from dcgan_jax import losses
from dcgan_jax.losses import Batch, Critic, PyTree


# ADC-GAN's classes of each attribute, in the order of D's logits.
ADC_CLASSES = ("real with it", "real without it", "fake with it", "fake without it")


def _balanced_sum(losses_BA: jax.Array, has_BA: jax.Array) -> jax.Array:
  """Per attribute, the mean of its losses over the samples with it and over those
  without it, averaged (a value absent from the batch leaves the other alone), summed over
  attributes: each attribute's two values weigh alike however rare one is."""
  def mean_over(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    count = mask.sum(axis=0)
    return jnp.sum(losses_BA * mask, axis=0) / jnp.maximum(count, 1), (count > 0)

  with_value, any_with = mean_over(has_BA)
  without_value, any_without = mean_over(~has_BA)
  per_attribute = ((with_value * any_with + without_value * any_without)
                   / (any_with.astype(jnp.float32) + any_without))
  return jnp.sum(per_attribute)


def balanced_cross_entropy(logits_BA: jax.Array, labels_BA: jax.Array) -> jax.Array:
  """AC-GAN's term: the binary cross-entropy of attribute logits against +1/-1 labels,
  balanced and summed over attributes (`_balanced_sum`): the negative log-likelihood of
  the attribute vector, as the paper's is of the class, so that the weight is per
  attribute however many there are."""
  has = labels_BA > 0
  return _balanced_sum(
      optax.sigmoid_binary_cross_entropy(logits_BA, has.astype(jnp.float32)), has)


def discriminative_cross_entropy(logits_BK: jax.Array, labels_BA: jax.Array,
                                 as_fake: bool) -> jax.Array:
  """ADC-GAN's term: the cross-entropy of each attribute's four logits (`ADC_CLASSES`)
  against the class of its +1/-1 label, of a real face or, `as_fake`, of a fake;
  balanced and summed over attributes as AC-GAN's."""
  has = labels_BA > 0
  logits_BAC = logits_BK.reshape(*labels_BA.shape, len(ADC_CLASSES))
  target_BA = jnp.where(has, 0, 1) + (2 if as_fake else 0)
  return _balanced_sum(
      optax.softmax_cross_entropy_with_integer_labels(logits_BAC, target_BA), has)


def _classified(critic: Critic, *judged: Batch) -> tuple[Critic, list[list[jax.Array]]]:
  """A critic that returns only D's adversarial outputs, as every loss expects, and, for
  each batch in `judged`, the list it fills with D's attribute logits of each pass on
  that batch itself."""
  found = [[] for _ in judged]

  def adversarial(d_params: PyTree, d_state: PyTree, batch: Batch
                  ) -> tuple[jax.Array, PyTree]:
    (outputs, attribute_logits), d_state = critic(d_params, d_state, batch)
    for batch_found, judged_batch in zip(found, judged):
      if batch is judged_batch:
        batch_found.append(attribute_logits)
    return outputs, d_state

  return adversarial, found


def with_auxiliary_classifier(loss: losses.Loss, weight: float, label_columns: Sequence[int],
                              kind: str = "acgan") -> losses.Loss:
  """`loss` with the class terms of `kind` (`loss.aux_classifier`): AC-GAN's on the real
  batch in D's loss, ADC-GAN's on the real batch and the fakes; both on the fakes in G's.
  `label_columns` are the conditioned attributes' columns of the batches' label rows. The
  unweighted terms are logged as `d_classes` and `g_classes`."""
  columns = jnp.array(label_columns, jnp.int32)

  def logits_of(found: list[jax.Array], which: str) -> jax.Array:
    if not found:
      raise ValueError(f"the loss never showed D the {which} batch it was given, so "
                       f"the auxiliary classifier has nothing to learn from")
    return found[0]

  def labels(batch: Batch) -> jax.Array:
    return batch["label"][:, columns]

  def discriminator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                         fake: Batch, key: jax.Array) -> losses.LossResult:
    adversarial, (real_found, fake_found) = _classified(critic, real, fake)
    value, (d_state, metrics) = loss.discriminator(adversarial, d_params, d_state, real, fake,
                                                   key)
    real_logits = logits_of(real_found, "real")
    if kind == "acgan":
      term = balanced_cross_entropy(real_logits, labels(real))
    else:
      term = (discriminative_cross_entropy(real_logits, labels(real), as_fake=False)
              + discriminative_cross_entropy(logits_of(fake_found, "fake"), labels(fake),
                                             as_fake=True))
    return value + weight * term, (d_state, metrics | {"d_classes": term})

  def generator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                     fake: Batch, key: jax.Array) -> losses.LossResult:
    adversarial, (fake_found,) = _classified(critic, fake)
    value, (d_state, metrics) = loss.generator(adversarial, d_params, d_state, real, fake, key)
    fake_logits = logits_of(fake_found, "fake")
    if kind == "acgan":
      term = balanced_cross_entropy(fake_logits, labels(fake))
    else:
      term = discriminative_cross_entropy(fake_logits, labels(fake), as_fake=False)
    return value + weight * term, (d_state, metrics | {"g_classes": term})

  return dataclasses.replace(loss, discriminator=discriminator_loss, generator=generator_loss)
