"""The GAN losses against the binary cross-entropy formula written out in numpy, and in
the shape the train step calls them."""

import jax
import numpy as np
import pytest

from dcgan_jax import variants
from dcgan_jax.losses import non_saturating


def _bce(logits: np.ndarray, label: float) -> float:
  p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  return float(np.mean(-(label * np.log(p) + (1 - label) * np.log(1 - p))))


def _sigmoid_mean(logits: np.ndarray) -> float:
  return float(np.mean(1.0 / (1.0 + np.exp(-logits.astype(np.float64)))))


def test_discriminator_loss_is_bce_real_one_fake_zero():
  rng = np.random.default_rng(0)
  real, fake = rng.normal(size=32) * 3, rng.normal(size=32) * 3
  expected = _bce(real, 1.0) + _bce(fake, 0.0)
  np.testing.assert_allclose(float(non_saturating.discriminator_bce(real, fake)), expected,
                             rtol=1e-5)


def test_generator_loss_is_non_saturating_bce():
  rng = np.random.default_rng(1)
  fake = rng.normal(size=32) * 3
  np.testing.assert_allclose(float(non_saturating.generator_bce(fake)), _bce(fake, 1.0),
                             rtol=1e-5)


def test_losses_stay_finite_and_exact_for_huge_logits():
  # -log(sigmoid(-200)) = 200 + log(1 + e^-200) ~ 200; a naive log(sigmoid) gives inf.
  np.testing.assert_allclose(float(non_saturating.generator_bce(np.array([-200.0]))), 200.0,
                             rtol=1e-6)
  np.testing.assert_allclose(
      float(non_saturating.discriminator_bce(np.array([-100.0]), np.array([100.0]))), 200.0,
      rtol=1e-6)


def test_seam_losses_judge_each_batch_and_thread_the_state_through():
  """With a critic whose logits are the batch's "image" entry and whose state counts its
  calls, the losses and metrics are the closed forms on those logits."""
  rng = np.random.default_rng(2)
  real = {"image": rng.normal(size=16) * 2, "label": np.zeros((16, 0), np.int8)}
  fake = {"image": rng.normal(size=16) * 2, "label": np.zeros((16, 0), np.int8)}
  calls = []

  def critic(params, state, batch):
    calls.append(batch["image"])
    return params * batch["image"], state + 1

  key = jax.random.PRNGKey(0)
  d_loss, (d_state, d_metrics) = non_saturating.LOSS.discriminator(critic, 1.0, 0, real, fake, key)
  np.testing.assert_allclose(float(d_loss), _bce(real["image"], 1) + _bce(fake["image"], 0),
                             rtol=1e-5)
  assert d_state == 2 and calls[0] is real["image"] and calls[1] is fake["image"]
  np.testing.assert_allclose(float(d_metrics["d_real"]), _sigmoid_mean(real["image"]), rtol=1e-5)
  np.testing.assert_allclose(float(d_metrics["d_fake"]), _sigmoid_mean(fake["image"]), rtol=1e-5)

  g_loss, (g_state, g_metrics) = non_saturating.LOSS.generator(critic, 1.0, 0, real, fake, key)
  np.testing.assert_allclose(float(g_loss), _bce(fake["image"], 1), rtol=1e-5)
  assert g_state == 1 and set(g_metrics) == {"d_fake_after"}
  np.testing.assert_allclose(float(g_metrics["d_fake_after"]), _sigmoid_mean(fake["image"]),
                             rtol=1e-5)
  assert set(d_metrics) | set(g_metrics) == set(non_saturating.LOSS.output_metrics)


# Each loss as written in its paper, on D's raw outputs, in float64 numpy.
CLOSED_FORMS = {
    "non_saturating": (lambda r, f: _bce(r, 1.0) + _bce(f, 0.0), lambda f: _bce(f, 1.0)),
    "minimax": (lambda r, f: _bce(r, 1.0) + _bce(f, 0.0),
                lambda f: np.mean(np.log(1.0 - 1.0 / (1.0 + np.exp(-f))))),
    "least_squares": (lambda r, f: 0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f ** 2),
                      lambda f: 0.5 * np.mean((f - 1) ** 2)),
    "hinge": (lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
              lambda f: -np.mean(f)),
    "wasserstein": (lambda r, f: np.mean(f) - np.mean(r), lambda f: -np.mean(f)),
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_every_registered_loss_is_its_closed_form(name):
  loss = variants.LOSSES[name]
  d_form, g_form = CLOSED_FORMS[name]
  rng = np.random.default_rng(3)
  real = {"image": rng.normal(size=64) * 2, "label": np.zeros((64, 0), np.int8)}
  fake = {"image": rng.normal(size=64) * 2, "label": np.zeros((64, 0), np.int8)}

  def critic(params, state, batch):  # D's outputs are the batch's "image" entry
    return batch["image"], state

  key = jax.random.PRNGKey(0)
  d_loss, (_, d_metrics) = loss.discriminator(critic, None, (), real, fake, key)
  g_loss, (_, g_metrics) = loss.generator(critic, None, (), real, fake, key)
  np.testing.assert_allclose(float(d_loss), d_form(real["image"], fake["image"]), rtol=1e-5)
  np.testing.assert_allclose(float(g_loss), g_form(fake["image"]), rtol=1e-5)
  assert set(d_metrics) | set(g_metrics) == set(loss.output_metrics)


def test_registry_holds_exactly_the_documented_losses():
  assert sorted(variants.LOSSES) == sorted(CLOSED_FORMS)
