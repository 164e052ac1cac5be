"""The GAN losses against the binary cross-entropy formula written out in numpy."""

import numpy as np

from dcgan_jax import losses


def _bce(logits: np.ndarray, label: float) -> float:
  p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  return float(np.mean(-(label * np.log(p) + (1 - label) * np.log(1 - p))))


def test_discriminator_loss_is_bce_real_one_fake_zero():
  rng = np.random.default_rng(0)
  real, fake = rng.normal(size=32) * 3, rng.normal(size=32) * 3
  expected = _bce(real, 1.0) + _bce(fake, 0.0)
  np.testing.assert_allclose(float(losses.discriminator_loss(real, fake)), expected, rtol=1e-5)


def test_generator_loss_is_non_saturating_bce():
  rng = np.random.default_rng(1)
  fake = rng.normal(size=32) * 3
  np.testing.assert_allclose(float(losses.generator_loss(fake)), _bce(fake, 1.0), rtol=1e-5)


def test_losses_stay_finite_and_exact_for_huge_logits():
  # -log(sigmoid(-200)) = 200 + log(1 + e^-200) ~ 200; a naive log(sigmoid) gives inf.
  np.testing.assert_allclose(float(losses.generator_loss(np.array([-200.0]))), 200.0, rtol=1e-6)
  np.testing.assert_allclose(
      float(losses.discriminator_loss(np.array([-100.0]), np.array([100.0]))), 200.0, rtol=1e-6)
