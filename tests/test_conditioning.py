"""Conditioning on attributes: the generator's input, the projection discriminator, label
rows drawn from the data, the sample CLI's --attributes and the report's attribute grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dcgan_jax import generate, steps, summaries, train
from dcgan_jax.data import sources, synthetic_faces
from dcgan_jax.models import layers
from dcgan_jax.report import figures
from dcgan_jax.variants import variant_from_config
from experiments.configs import cdcgan
from tests.cli import run_module
from tests.runs import tiny_config

NAMES = synthetic_faces.ATTRIBUTE_NAMES


def conditional_config(arch: str = "dcgan", attributes: str = "", d_norm: str = "none"):
  config = tiny_config({"model.condition": "attributes", "model.attributes": attributes,
                        "model.arch": arch, "model.d_norm": d_norm})
  if arch == "resnet":
    config.data.resolution = 32
  return config


def _random_labels(key: jax.Array, num: int, width: int) -> jax.Array:
  return jnp.where(jax.random.bernoulli(key, shape=(num, width)), 1, -1).astype(jnp.int8)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["dcgan", "mlp", "resnet"])
def test_projection_is_the_inner_product_of_embedded_attributes_with_the_final_features(arch):
  """With the embedding's every row set to the final layer's weights w, the projection
  term is sum(y) <w, h>, so D(x, y) - b = (1 + sum(y)) (D(x, no labels) - b): it holds
  only if the head reads exactly the features the final layer reads."""
  variant = variant_from_config(conditional_config(arch), NAMES)
  g_vars, d_vars = variant.init_variables(jax.random.PRNGKey(0), jax.random.PRNGKey(1))
  del g_vars
  params = d_vars["params"]
  final = {"dcgan": f"Conv_{len([k for k in params if k.startswith('Conv_')]) - 1}",
           "mlp": f"Dense_{len([k for k in params if k.startswith('Dense_')]) - 1}",
           "resnet": "Dense_0"}[arch]
  w = params[final]["kernel"].reshape(-1)
  bias = params[final].get("bias", jnp.zeros(1))[0]
  num_attributes = len(NAMES)
  params = {**params, "Projection": {"kernel": jnp.tile(w, (num_attributes, 1))}}
  x = jax.random.uniform(jax.random.PRNGKey(2), (5, variant.resolution, variant.resolution, 3),
                         minval=-1, maxval=1)
  labels = _random_labels(jax.random.PRNGKey(3), 5, num_attributes)
  with_labels, _ = variant.discriminate(params, d_vars["batch_stats"],
                                        {"image": x, "label": labels}, train=False)
  plain = variant.discriminator.apply({"params": params, "batch_stats": d_vars["batch_stats"]},
                                      x, train=False)
  expected = (1 + labels.sum(axis=1)) * (plain - bias) + bias
  np.testing.assert_allclose(with_labels, expected, rtol=1e-4, atol=1e-4)
  assert np.ptp(np.asarray(labels.sum(axis=1))) > 0  # the rows differ, so the test can fail


@pytest.mark.slow
def test_only_the_chosen_attributes_reach_the_networks():
  variant = variant_from_config(conditional_config(attributes="Smiling,Eyeglasses"), NAMES)
  assert variant.attributes == ("Smiling", "Eyeglasses")
  assert variant.label_columns == (NAMES.index("Smiling"), NAMES.index("Eyeglasses"))
  g_vars, d_vars = variant.init_variables(jax.random.PRNGKey(0), jax.random.PRNGKey(1))
  z = variant.sample_latents(jax.random.PRNGKey(2), 4)
  x = jax.random.uniform(jax.random.PRNGKey(3), (4, 16, 16, 3), minval=-1, maxval=1)
  labels = _random_labels(jax.random.PRNGKey(4), 4, len(NAMES))

  def outputs(labels):
    images, _ = variant.generate(g_vars["params"], g_vars["batch_stats"], z, labels,
                                 train=False)
    logits, _ = variant.discriminate(d_vars["params"], d_vars["batch_stats"],
                                     {"image": x, "label": labels}, train=False)
    return np.asarray(images), np.asarray(logits)

  base = outputs(labels)
  for name in NAMES:
    flipped = outputs(labels.at[:, NAMES.index(name)].multiply(-1))
    chosen = name in variant.attributes
    assert (not np.allclose(base[0], flipped[0])) == chosen, name
    assert (not np.allclose(base[1], flipped[1])) == chosen, name


def test_all_attributes_of_the_data_by_default_and_bad_names_refused():
  assert variant_from_config(conditional_config(), NAMES).attributes == NAMES
  with pytest.raises(ValueError, match=r"^model.attributes: attribute 'Male' is unknown; "
                                       r"expected one of: Bald, Bangs"):
    variant_from_config(conditional_config(attributes="Smiling,Male"), NAMES)
  with pytest.raises(ValueError, match=r"^model.condition 'classes' is unknown"):
    variant_from_config(tiny_config({"model.condition": "classes"}), NAMES)
  with pytest.raises(ValueError, match="^model.condition=attributes needs images with "
                                       "attributes, but data.dir /faces has none"):
    variant_from_config(tiny_config({"model.condition": "attributes", "data.source": "celeba",
                                     "data.dir": "/faces"}), [])


def test_label_rows_are_rows_of_the_training_data_drawn_by_seed():
  config = conditional_config()
  variant = variant_from_config(config, NAMES)
  source = sources.create_source(config.data, config.seed)
  z, labels = generate.fixed_inputs(variant, source, seed=3, num=40, stream=1)
  all_rows = {row.tobytes() for row in sources.read_batch(source, np.arange(len(source)))["label"]}
  assert labels.shape == (40, len(NAMES)) and z.shape == (40, config.model.z_dim)
  assert all(row.tobytes() in all_rows for row in labels)
  assert len({row.tobytes() for row in labels}) > 1
  again = generate.fixed_inputs(variant, source, seed=3, num=40, stream=1)[1]
  other = generate.fixed_inputs(variant, source, seed=3, num=40, stream=2)[1]
  np.testing.assert_array_equal(labels, again)
  assert not np.array_equal(labels, other)
  unconditional = variant_from_config(tiny_config(), NAMES)
  assert generate.fixed_inputs(unconditional, source, seed=3, num=40, stream=1)[1] is None


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
  """A tiny conditional DCGAN (the cdcgan preset) trained on the synthetic faces."""
  config = cdcgan.get_config("tiny")
  config.data.source = "synthetic"
  workdir = tmp_path_factory.mktemp("cdcgan")
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.mark.slow
def test_sample_cli_sets_the_named_attributes_and_keeps_the_others(conditional_run, tmp_path):
  run_module("experiments.sample", "--workdir", conditional_run, "--num", 6, "--out_dir",
             tmp_path / "glasses", "--seed", 5, "--attributes", "Eyeglasses=1,Smiling=-1")
  written = np.stack([np.asarray(Image.open(tmp_path / "glasses" / f"{i:06d}.png"))
                      for i in range(6)])
  run = generate.load_run(conditional_run)
  z, drawn = run.inputs(5, 6)
  expected_labels = drawn.copy()
  expected_labels[:, NAMES.index("Eyeglasses")] = 1
  expected_labels[:, NAMES.index("Smiling")] = -1
  np.testing.assert_array_equal(written, generate.generate(run.variant, run.state, z,
                                                           expected_labels))
  assert not np.array_equal(written, generate.generate(run.variant, run.state, z, drawn))


@pytest.mark.slow
def test_a_conditional_face_depends_on_its_own_latent_and_attributes_alone(conditional_run):
  """Drawn alone, among other faces or among faces all asked for what it is asked, a face
  is the same: BatchNorm by the running averages, not by the batch's statistics, which
  would subtract what a whole batch is asked alike (`sample --attributes Male=1`)."""
  run = generate.load_run(conditional_run)
  z, rows = run.inputs(5, 8)

  def faces(z_BZ, rows_BA):
    return np.asarray(steps.generate_in_model_range(run.variant, run.state, z_BZ, rows_BA))

  among_others = faces(z, rows)
  np.testing.assert_allclose(faces(z[:1], rows[:1])[0], among_others[0], atol=1e-5)
  np.testing.assert_allclose(faces(z, np.repeat(rows[:1], len(rows), axis=0))[0],
                             among_others[0], atol=1e-5)
  running_averages, _ = run.variant.generate(run.state.sampling_params, run.state.g_batch_stats,
                                             jnp.asarray(z), jnp.asarray(rows), train=False)
  np.testing.assert_allclose(among_others, running_averages, atol=1e-6)


@pytest.mark.parametrize("flag, message", [
    ("Male=1", "--attributes: attribute 'Male' is unknown; expected one of: Bald"),
    ("Eyeglasses=2", "--attributes: expected NAME=1 or NAME=-1, got 'Eyeglasses=2'"),
    ("Eyeglases=1", "--attributes: attribute 'Eyeglases' is unknown; expected one of: Bald"),
])
@pytest.mark.slow
def test_sample_cli_refuses_bad_attributes_before_writing(conditional_run, tmp_path, flag,
                                                          message):
  result = run_module("experiments.sample", "--workdir", conditional_run, "--out_dir",
                      tmp_path / "out", "--attributes", flag, check=False)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
  assert result.stderr.strip().endswith("did you mean 'Eyeglasses'?") == ("Eyeglases" in flag)
  assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_attribute_grid_draws_each_latent_under_every_setting_of_the_named_attributes(
    conditional_run, tmp_path):
  run = generate.load_run(conditional_run)
  grid, titles = generate.attribute_settings_grid(run, 3, 2, ["Eyeglasses", "Smiling"])
  assert titles == ["+Eyeglasses +Smiling", "+Eyeglasses -Smiling", "-Eyeglasses +Smiling",
                    "-Eyeglasses -Smiling"]
  z, drawn = run.inputs(3, 2)
  expected = []
  for r in range(2):
    for glasses, smiling in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
      row = drawn[r].copy()
      row[NAMES.index("Eyeglasses")], row[NAMES.index("Smiling")] = glasses, smiling
      expected.append(row)
  images = generate.generate(run.variant, run.state, np.repeat(z, 4, axis=0), np.stack(expected))
  np.testing.assert_array_equal(grid, summaries.image_grid(images, num_cols=4))

  run_module("experiments.sample", "--workdir", conditional_run, "--out_dir", tmp_path / "grid",
             "--attribute_grid", "Eyeglasses,Smiling", "--rows", 2, "--seed", 3)
  assert Image.open(tmp_path / "grid" / "attribute_grid.png").size[0] > grid.shape[1]
  refused = run_module("experiments.sample", "--workdir", conditional_run, "--out_dir",
                       tmp_path / "never", "--attribute_grid", "Smiling,Male", check=False)
  assert refused.stderr.strip().splitlines()[-1].startswith(
      "error: --attribute_grid: attribute 'Male' is unknown")
  assert not (tmp_path / "never").exists()


def test_attributes_of_an_unconditional_run_are_refused(tiny_run):
  run = generate.load_run(tiny_run)
  with pytest.raises(ValueError, match=r"^--attributes: this run is not conditional"):
    generate.write_samples(run, tiny_run / "never", 2, 0, {"Smiling": 1})


@pytest.mark.slow
def test_attribute_grid_toggles_one_attribute_per_column(conditional_run):
  run = generate.load_run(conditional_run)
  rows = 3
  grid = generate.attribute_grid(run, seed=1, num_rows=rows)
  z, labels = run.inputs(1, rows)
  expected = []
  for r in range(rows):
    expected.append(labels[r])
    for column in range(len(NAMES)):
      toggled = labels[r].copy()
      toggled[column] *= -1
      expected.append(toggled)
  images = generate.generate(run.variant, run.state, np.repeat(z, len(NAMES) + 1, axis=0),
                             np.stack(expected))
  np.testing.assert_array_equal(grid, summaries.image_grid(images, num_cols=len(NAMES) + 1))


@pytest.mark.slow
def test_the_reports_attribute_figure_names_each_column_above_it(conditional_run):
  run = generate.load_run(conditional_run)
  grid = generate.attribute_grid(run, seed=1, num_rows=2)
  titles = ["as drawn", *(f"{name} toggled" for name in NAMES)]
  ax = figures.attribute_figure(grid, titles).axes[0]
  assert [tick.get_text() for tick in ax.get_xticklabels()] == titles
  resolution, pad = run.variant.resolution, 2  # summaries.image_grid's layout
  face_centres = pad + np.arange(len(NAMES) + 1) * (resolution + pad) + resolution / 2
  np.testing.assert_allclose(ax.get_xticks(), face_centres, atol=pad)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["dcgan", "mlp", "resnet"])
@pytest.mark.parametrize("num_attributes", [4, 40])
def test_attribute_term_starts_at_the_scale_of_the_logit_for_any_number_of_attributes(
    arch, num_attributes):
  names = [f"attribute_{i}" for i in range(num_attributes)]
  variant = variant_from_config(conditional_config(arch), names)
  _, d_vars = variant.init_variables(jax.random.PRNGKey(0), jax.random.PRNGKey(1))
  x = jax.random.uniform(jax.random.PRNGKey(2), (64, variant.resolution, variant.resolution, 3),
                         minval=-1, maxval=1)
  labels = _random_labels(jax.random.PRNGKey(3), 64, num_attributes)
  variables = {"params": d_vars["params"], "batch_stats": d_vars["batch_stats"]}
  plain = variant.discriminator.apply(variables, x, train=False)
  term = variant.discriminator.apply(variables, x, variant.condition(labels), train=False) - plain
  ratio = float(jnp.sqrt(jnp.mean(term**2) / jnp.mean(plain**2)))
  assert 0.1 < ratio < 10, ratio


def test_conditional_batch_norm_is_batch_norm_with_a_scale_and_bias_per_sample():
  """Against numpy: x_hat (scale + y W_scale) + (bias + y W_bias), x_hat by the batch's
  statistics in training and by the running ones (updated by that batch) after."""
  rng = np.random.default_rng(0)
  x = rng.normal(2.0, 3.0, (6, 4, 4, 5)).astype(np.float32)
  y = rng.choice([-1.0, 1.0], (6, 3)).astype(np.float32)
  norm = layers.ConditionalBatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  variables = norm.init(jax.random.PRNGKey(0), x, y)
  params = {name: rng.normal(size=value.shape).astype(np.float32)
            for name, value in variables["params"].items()}
  out, updates = norm.apply({**variables, "params": params}, x, y, mutable=["batch_stats"])
  mean, var = x.mean(axis=(0, 1, 2), dtype=np.float64), x.var(axis=(0, 1, 2), dtype=np.float64)
  gamma = params["scale"] + y @ params["scale_of_labels"]
  beta = params["bias"] + y @ params["bias_of_labels"]

  def expected(mean, var):
    x_hat = (x - mean) / np.sqrt(var + 1e-5)
    return x_hat * gamma[:, None, None, :] + beta[:, None, None, :]

  np.testing.assert_allclose(out, expected(mean, var), rtol=1e-4, atol=1e-4)
  running = updates["batch_stats"]["BatchNorm_0"]
  running_mean, running_var = 0.1 * mean, 0.9 + 0.1 * var  # from 0 and 1, momentum 0.9
  frozen = layers.ConditionalBatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5)
  out = frozen.apply({"params": params, "batch_stats": updates["batch_stats"]}, x, y)
  np.testing.assert_allclose(running["mean"], running_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(running["var"], running_var, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out, expected(running["mean"], running["var"]), rtol=1e-4,
                             atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_cbn_generator_takes_the_attributes_through_its_batch_norms_alone(arch, tmp_path):
  config = conditional_config(arch, attributes="Smiling,Eyeglasses")
  config.model.g_condition = "cbn"
  variant = variant_from_config(config, NAMES)
  g_vars, _ = variant.init_variables(jax.random.PRNGKey(0), jax.random.PRNGKey(1))
  z = variant.sample_latents(jax.random.PRNGKey(2), 4)
  labels = _random_labels(jax.random.PRNGKey(4), 4, len(NAMES))

  def flips(g_params, g_state):
    """Per attribute of the data, whether flipping it changes the images."""
    def images(labels):
      return np.asarray(variant.generate(g_params, g_state, z, labels, train=False)[0])
    return {name: not np.allclose(images(labels), images(labels.at[:, NAMES.index(name)]
                                                          .multiply(-1))) for name in NAMES}

  # z alone enters the first layer; at initialisation the attributes change nothing.
  params = g_vars["params"]
  inputs = {"dcgan": lambda: params["ConvTranspose_0"]["kernel"].shape[2],
            "resnet": lambda: params["Dense_0"]["kernel"].shape[0]}[arch]()
  assert inputs == config.model.z_dim
  assert not any(flips(g_vars["params"], g_vars["batch_stats"]).values())
  # Trained, the chosen attributes (and only they) steer the generator.
  train.train_and_evaluate(config, tmp_path)
  state = generate.load_run(tmp_path).state
  assert flips(state.g_params, state.g_batch_stats) == {
      name: name in ("Smiling", "Eyeglasses") for name in NAMES}


def test_cbn_needs_attributes_and_a_generator_with_batch_norm():
  with pytest.raises(ValueError, match="^model.g_condition=cbn conditions the generator's "
                                       "BatchNorms on attributes: set model.condition"):
    variant_from_config(tiny_config({"model.g_condition": "cbn"}), NAMES)
  with pytest.raises(ValueError, match="^model.g_condition=cbn needs BatchNorm in the "
                                       "generator, which model.arch=mlp has not"):
    variant_from_config(_with(conditional_config("mlp"), g_condition="cbn"), NAMES)
  with pytest.raises(ValueError, match=r"^model.g_condition 'film' is unknown"):
    variant_from_config(_with(conditional_config(), g_condition="film"), NAMES)


def _with(config, **model_keys):
  config.model.update(model_keys)
  return config


def test_forced_attribute_rate_forces_one_conditioned_attribute_of_that_share_of_fakes():
  """Counted over 40,000 rows: a `rate` share of the rows is forced, the forced column is
  each conditioned one alike and never another, its value +1 or -1 alike, and a forced row
  keeps every other column."""
  attributes = ("Black_Hair", "Eyeglasses", "Smiling")
  variant = variant_from_config(conditional_config(attributes=",".join(attributes)), NAMES)
  columns = [NAMES.index(name) for name in attributes]
  num, rate = 40_000, 0.3
  rows = np.asarray(_random_labels(jax.random.PRNGKey(0), num, len(NAMES)))
  forced = np.asarray(steps.fake_labels(variant, jnp.asarray(rows), rate,
                                        jax.random.PRNGKey(1)))
  changed = forced != rows
  assert changed.sum(axis=1).max() == 1
  assert not changed[:, [c for c in range(len(NAMES)) if c not in columns]].any()
  # A forced value equals the random row's own half the time: rate / 2 of the rows change.
  np.testing.assert_allclose(changed.any(axis=1).mean(), rate / 2, atol=0.01)
  per_column = changed[:, columns].sum(axis=0) / changed.sum()
  np.testing.assert_allclose(per_column, 1 / len(columns), atol=0.02)
  new_values = forced[changed]
  np.testing.assert_allclose((new_values > 0).mean(), 0.5, atol=0.02)
  unforced = steps.fake_labels(variant, jnp.asarray(rows), 0.0, jax.random.PRNGKey(1))
  np.testing.assert_array_equal(unforced, rows)


def test_forced_attribute_rate_needs_attributes():
  with pytest.raises(ValueError, match="^train.forced_attribute_rate forces attributes of the "
                                       "fakes: set model.condition=attributes"):
    variant_from_config(tiny_config({"train.forced_attribute_rate": 0.5}), NAMES)
