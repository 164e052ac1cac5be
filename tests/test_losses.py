"""The GAN losses against the binary cross-entropy formula written out in numpy, and in
the shape the train step calls them."""

import jax
import numpy as np

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
