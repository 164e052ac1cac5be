"""The progressive-growing schedule and the real images' fade-in."""

import numpy as np
import pytest

from dcgan_jax import growth, variants
from experiments.configs import progan128


def _simulated(schedule: growth.Schedule, num_steps: int) -> list[tuple[int, float, int]]:
  """(stage, alpha, batch) of each step, by counting images one step at a time."""
  rows, stage, images_in_phase, fading = [], 0, 0, False
  for _ in range(num_steps):
    batch = schedule.batch_sizes[stage]
    if fading:
      alpha = images_in_phase / (-(-schedule.fade_images // batch) * batch)
    else:
      alpha = 1.0
    rows.append((stage, alpha, batch))
    images_in_phase += batch
    phase_images = schedule.fade_images if fading else schedule.stable_images
    # A phase ends with the step that reaches its image count; the last stage's
    # stabilising phase never ends.
    if images_in_phase >= phase_images:
      if fading:
        fading, images_in_phase = False, 0
      elif stage + 1 < schedule.num_stages:
        stage, fading, images_in_phase = stage + 1, schedule.fade_images > 0, 0
  return rows


@pytest.mark.parametrize("batch_sizes,fade,stable", [
    ((16, 16, 8), 32, 32), ((4, 8, 8, 4), 20, 12), ((8, 8), 0, 24)])
def test_stage_alpha_and_images_match_counting_images(batch_sizes, fade, stable):
  schedule = growth.Schedule(batch_sizes, fade_images=fade, stable_images=stable)
  steps = schedule.steps_to_finish() + 5
  rows = _simulated(schedule, steps)
  assert [schedule.stage_at(t) for t in range(steps)] == [r[0] for r in rows]
  np.testing.assert_allclose([float(schedule.alpha(schedule.stage_at(t), t))
                              for t in range(steps)], [r[1] for r in rows], atol=1e-6)
  for n in (0, 1, steps // 2, steps):
    assert schedule.images(n) == sum(r[2] for r in rows[:n])
  # The last stage reaches alpha 1 and stabilises for stable_images.
  last = schedule.num_stages - 1
  assert rows[schedule.steps_to_finish() - 1][:2] == (last, 1.0)


def test_the_preset_schedule_is_the_papers():
  config = progan128.get_config()
  batch_sizes = growth.parse_batch_sizes(config.growth.batch_sizes, 128, 16)
  schedule = growth.Schedule(batch_sizes, config.growth.fade_images, config.growth.stable_images)
  assert batch_sizes == (16,) * 6 and schedule.num_stages == 6  # 4 .. 128
  assert schedule.start(1) == 800_000 // 16
  assert config.train.num_steps == schedule.steps_to_finish()
  assert schedule.images(config.train.num_steps) == 800_000 * 11
  tiny = progan128.get_config("tiny")
  tiny_schedule = growth.Schedule(
      growth.parse_batch_sizes(tiny.growth.batch_sizes, 16, tiny.train.batch_size),
      tiny.growth.fade_images, tiny.growth.stable_images)
  assert tiny.train.num_steps == tiny_schedule.steps_to_finish()


def test_batch_sizes_are_parsed_per_resolution_and_bad_ones_named():
  assert growth.parse_batch_sizes("", 32, 8) == (8, 8, 8, 8)
  assert growth.parse_batch_sizes("4:32, 16:16", 32, 8) == (32, 8, 16, 8)
  for text in ("64:16", "8:12", "8:0", "8", "x:8"):
    with pytest.raises(ValueError, match=r"growth.batch_sizes item .*multiple of "
                                         r"train.batch_size 8"):
      growth.parse_batch_sizes(text, 32, 8)


def test_real_images_fade_like_the_generator():
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  box8 = x.reshape(2, 8, 2, 8, 2, 3).mean(axis=(2, 4))
  box4 = x.reshape(2, 4, 4, 4, 4, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(growth.fade_images(x, 8, 0, 1.0), box8, atol=1e-6)
  np.testing.assert_array_equal(growth.fade_images(x, 8, 1, 1.0),
                                growth.fade_images(x, 8, 0, 1.0))
  previous = box4.repeat(2, axis=1).repeat(2, axis=2)
  np.testing.assert_allclose(growth.fade_images(x, 8, 1, 0.0), previous, atol=1e-6)
  np.testing.assert_allclose(growth.fade_images(x, 8, 1, 0.25), 0.75 * previous + 0.25 * box8,
                             atol=1e-6)
  np.testing.assert_array_equal(growth.fade_images(x, 16, 2, 1.0), x)


def test_combinations_a_growing_run_cannot_have_are_one_line_errors():
  config = progan128.get_config("tiny")
  config.model.condition = "attributes"
  with pytest.raises(ValueError, match="model.arch=progan has no conditional networks"):
    variants.variant_from_config(config, ("Smiling",))
  config = progan128.get_config("tiny")
  config.model.d_norm = "batch"
  with pytest.raises(ValueError, match="model.arch=progan has no model.d_norm=batch"):
    variants.variant_from_config(config)
  config = progan128.get_config("tiny")
  config.growth.batch_sizes = "16:12"
  with pytest.raises(ValueError, match="growth.batch_sizes item '16:12'"):
    variants.variant_from_config(config)
