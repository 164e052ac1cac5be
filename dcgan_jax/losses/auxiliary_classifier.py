"""AC-GAN's auxiliary classifier (Odena et al. 2017, "Conditional Image Synthesis with
Auxiliary Classifier GANs") as a term added to any loss.

The discriminator also predicts the conditioned attributes: with "classifier" in its
heads it returns (outputs, attribute logits) (`layers.conditional_output`). D learns
them from the real batch, weight * the attributes' binary cross-entropy against the
true +1/-1 labels; G is rewarded when its fakes are classified as the attributes they
were asked for, weight * the same cross-entropy on the fakes.

Where this departs from the paper, and why:
- Multi-label attributes take one sigmoid each where the paper's single class takes a
  softmax; their cross-entropies are summed, the log-likelihood of the attribute vector.
- Each attribute's two values weigh alike, as in the balanced accuracy `attr_accuracy`
  judges by: CelebA's rare attributes (Eyeglasses on 6.5% of faces) would otherwise
  teach D little beyond "no".
- D's term leaves out the fakes, which the paper's D also classifies: that term lets D
  and G agree on fakes that are easy to classify whatever they look like.
"""

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from dcgan_jax import losses
from dcgan_jax.losses import Batch, Critic, PyTree


def balanced_cross_entropy(logits_BA: jax.Array, labels_BA: jax.Array) -> jax.Array:
  """Binary cross-entropy of attribute logits against +1/-1 labels, each attribute's two
  values weighing alike in the batch however rare one is (a value absent from the batch
  leaves the other alone), summed over attributes: the negative log-likelihood of the
  attribute vector, as the paper's is of the class, so that the weight is per attribute
  however many there are."""
  has = labels_BA > 0
  losses_BA = optax.sigmoid_binary_cross_entropy(logits_BA, has.astype(jnp.float32))

  def mean_over(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    count = mask.sum(axis=0)
    return jnp.sum(losses_BA * mask, axis=0) / jnp.maximum(count, 1), (count > 0)

  with_value, any_with = mean_over(has)
  without_value, any_without = mean_over(~has)
  per_attribute = ((with_value * any_with + without_value * any_without)
                   / (any_with.astype(jnp.float32) + any_without))
  return jnp.sum(per_attribute)


def _classified(critic: Critic, judged: Batch) -> tuple[Critic, list[jax.Array]]:
  """A critic that returns only D's adversarial outputs, as every loss expects, and the
  list it fills with D's attribute logits of each pass on the batch `judged` itself."""
  found = []

  def adversarial(d_params: PyTree, d_state: PyTree, batch: Batch
                  ) -> tuple[jax.Array, PyTree]:
    (outputs, attribute_logits), d_state = critic(d_params, d_state, batch)
    if batch is judged:
      found.append(attribute_logits)
    return outputs, d_state

  return adversarial, found


def with_auxiliary_classifier(loss: losses.Loss, weight: float,
                              label_columns: Sequence[int]) -> losses.Loss:
  """`loss` with AC-GAN's class terms: on the real batch in D's loss, on the fakes in G's;
  `label_columns` are the conditioned attributes' columns of the batches' label rows.
  The unweighted terms are logged as `d_classes` and `g_classes`."""
  columns = jnp.array(label_columns, jnp.int32)

  def class_term(found: list[jax.Array], batch: Batch, which: str) -> jax.Array:
    if not found:
      raise ValueError(f"the loss never showed D the {which} batch it was given, so "
                       f"AC-GAN's classifier has nothing to learn from")
    return balanced_cross_entropy(found[0], batch["label"][:, columns])

  def discriminator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                         fake: Batch, key: jax.Array) -> losses.LossResult:
    adversarial, found = _classified(critic, real)
    value, (d_state, metrics) = loss.discriminator(adversarial, d_params, d_state, real, fake,
                                                   key)
    term = class_term(found, real, "real")
    return value + weight * term, (d_state, metrics | {"d_classes": term})

  def generator_loss(critic: Critic, d_params: PyTree, d_state: PyTree, real: Batch,
                     fake: Batch, key: jax.Array) -> losses.LossResult:
    adversarial, found = _classified(critic, fake)
    value, (d_state, metrics) = loss.generator(adversarial, d_params, d_state, real, fake, key)
    term = class_term(found, fake, "fake")
    return value + weight * term, (d_state, metrics | {"g_classes": term})

  return dataclasses.replace(loss, discriminator=discriminator_loss, generator=generator_loss)
