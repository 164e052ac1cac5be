"""The attribute classifier, the yardstick of conditioning: its score, and how well it reads
the faces' attributes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dcgan_jax import compare, summaries, train
from dcgan_jax.data import celeba_prepare, synthetic_faces
from dcgan_jax.eval import attribute_classifier
from experiments.configs import cdcgan, dcgan
from tests.cli import run_module
from tests.runs import tiny_config

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba_sample"


def test_balanced_accuracy_is_the_mean_of_the_accuracies_on_either_value():
  labels = np.array([[1, 1, -1], [1, -1, -1], [-1, -1, -1], [-1, -1, -1]])
  logits = np.array([[2.0, -1.0, -3.0], [-0.5, -2.0, 1.0], [-1.0, -1.0, -1.0],
                     [-2.0, 0.5, -1.0]])
  accuracy = attribute_classifier.balanced_accuracy(logits, labels)
  # The first: 1 of 2 faces with it, 2 of 2 without; the second: 0 of 1 and 2 of 3; the
  # third is on no face, so it has no balanced accuracy.
  np.testing.assert_allclose(accuracy[:2], [(1 / 2 + 2 / 2) / 2, (0 / 1 + 2 / 3) / 2])
  assert np.isnan(accuracy[2])
  always_no = attribute_classifier.balanced_accuracy(-np.ones((4, 3)), labels)
  np.testing.assert_allclose(always_no[:2], 0.5)  # whatever the attribute's frequency


def test_the_held_out_part_is_seeded_and_disjoint():
  train, held = attribute_classifier.held_out(1000, 0.1, seed=3)
  assert len(held) == 100 and len(train) == 900
  np.testing.assert_array_equal(np.sort(np.concatenate([train, held])), np.arange(1000))
  np.testing.assert_array_equal(held, attribute_classifier.held_out(1000, 0.1, seed=3)[1])
  assert not np.array_equal(held, attribute_classifier.held_out(1000, 0.1, seed=4)[1])


def test_requests_are_combinations_the_label_rows_have():
  """Asked for blond hair, no row also asks for black hair when no face has both; each
  request is a given row having the asked value, every such row asked in turn."""
  rng = np.random.default_rng(0)
  hair = rng.choice([-1, 0, 1], size=60)  # blond (column 0), black (1) or neither
  rows = np.stack([np.where(hair == 0, 1, -1), np.where(hair == 1, 1, -1),
                   rng.choice([-1, 1], size=60)], axis=1).astype(np.int8)
  for value in (1, -1):
    asked = attribute_classifier.asking_rows(rows, 0, value)
    assert asked.shape == rows.shape and (asked[:, 0] == value).all()
    having = rows[rows[:, 0] == value]
    np.testing.assert_array_equal(asked[:len(having)], having)
    np.testing.assert_array_equal(asked[len(having):2 * len(having)], having[:60 - len(having)])
  assert not ((attribute_classifier.asking_rows(rows, 0, 1)[:, 1] == 1).any())
  none_have = rows.copy()
  none_have[:, 2] = -1
  asked = attribute_classifier.asking_rows(none_have, 2, 1)
  np.testing.assert_array_equal(asked[:, :2], none_have[:, :2])
  assert (asked[:, 2] == 1).all()


NAMES = synthetic_faces.ATTRIBUTE_NAMES


@pytest.fixture(scope="module")
def synthetic():
  """A classifier of the synthetic faces at 16 px, and the faces held out from it."""
  drawn = synthetic_faces.SyntheticFaces(seed=0, num_images=3000, resolution=16)
  faces = [drawn[i] for i in range(len(drawn))]  # drawn once, not at every batch
  train, held = attribute_classifier.held_out(len(faces), 0.1, seed=0)
  classifier = attribute_classifier.train_classifier(faces, NAMES, train, steps=400, seed=0)
  return classifier, [faces[i] for i in held]


@pytest.mark.slow
def test_it_reads_the_synthetic_faces_attributes_and_saves_what_it_learned(synthetic,
                                                                           tmp_path):
  classifier, held = synthetic
  images = np.stack([face["image"] for face in held])
  labels = np.stack([face["label"] for face in held])
  accuracy = attribute_classifier.balanced_accuracy(classifier.logits(images), labels)
  assert np.nanmean(accuracy) > 0.8, accuracy  # measured 0.87
  attribute_classifier.save(classifier, tmp_path / "c.msgpack", {})
  loaded = attribute_classifier.load(tmp_path / "c.msgpack")
  np.testing.assert_array_equal(loaded.logits(images), classifier.logits(images))
  (tmp_path / "c.msgpack").write_bytes(b"garbage")
  with pytest.raises(ValueError, match=f"^{tmp_path / 'c.msgpack'}: not an attribute "):
    attribute_classifier.load(tmp_path / "c.msgpack")


@pytest.mark.slow
def test_cli_trains_on_celeba_scores_a_held_out_tenth_and_reuses_what_it_wrote(tmp_path):
  if not (SAMPLE / "img_align_celeba.zip").exists():
    pytest.skip(f"no CelebA sample at {SAMPLE}")
  src = tmp_path / "src"
  src.mkdir()
  for name in ("img_align_celeba.zip", "list_attr_celeba.txt"):
    shutil.copy(SAMPLE / name, src / name)
  shards = tmp_path / "shards"
  celeba_prepare.prepare(src, shards, celeba_prepare.PrepareConfig(resolution=32,
                                                                  num_shards=2))
  args = ("--data_dir", shards, "--resolution", 16, "--steps", 300)
  first = json.loads(run_module("experiments.attribute_classifier", *args).stdout)
  assert first["held_out"] == "a tenth of the train split held out (466 faces)"
  accuracy = first["balanced_accuracy"]
  # Measured: Male 0.91, Eyeglasses 0.95, Smiling 0.87, the mean of all 40 0.80.
  assert len(accuracy) == 40 and accuracy["Male"] > 0.8 and first["mean"] > 0.7, accuracy
  written = Path(first["classifier"])
  assert written.parent == shards and written.with_suffix(".json").exists()
  before = written.stat().st_mtime_ns
  assert json.loads(run_module("experiments.attribute_classifier", *args).stdout) == first
  assert written.stat().st_mtime_ns == before
  result = run_module("experiments.attribute_classifier", "--data_dir", tmp_path / "none",
                      check=False)
  assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
  assert "no prepared shards" in result.stderr


@pytest.mark.slow
def test_faces_that_have_what_is_asked_score_the_classifiers_own_accuracy(synthetic):
  """attr_accuracy of a 'generator' that returns held-out faces having the asked values
  is the classifier's balanced accuracy on those faces with their true labels."""
  classifier, held = synthetic
  columns = {"Eyeglasses": NAMES.index("Eyeglasses"), "Smiling": NAMES.index("Smiling")}
  labels = np.stack([face["label"] for face in held])
  rng = np.random.default_rng(0)
  given = []

  def faces_asked(rows):
    picked = []
    for row in rows:
      (having,) = np.nonzero((labels[:, list(columns.values())] == row[list(columns.values())])
                             .all(axis=1))
      picked.append(rng.choice(having))
    given.append(np.array(picked))
    return np.stack([held[i]["image"] for i in picked])

  scores = attribute_classifier.attribute_accuracy(faces_asked, labels[:200], columns,
                                                   classifier)
  for (name, column), picked in zip(columns.items(), given):
    own = attribute_classifier.balanced_accuracy(
        classifier.logits(np.stack([held[i]["image"] for i in picked])), labels[picked])
    assert scores[f"attr_accuracy/{name}"] == pytest.approx(own[column])
  assert scores["attr_accuracy"] == pytest.approx(
      np.mean([scores[f"attr_accuracy/{name}"] for name in columns]))
  assert 0.6 < scores["attr_accuracy"] <= 1


@pytest.mark.slow
def test_training_and_evaluate_score_a_conditional_run_by_its_attributes_alike(synthetic,
                                                                              tmp_path):
  """Training's evaluation (eval.attribute_classifier) logs attr_accuracy and each
  attribute's; experiments.evaluate, with the run's classifier, scores the same step with
  the same noise to the same numbers (the compare test below names it by the flag)."""
  classifier, _ = synthetic
  attribute_classifier.save(classifier, tmp_path / "reader.msgpack", {})
  config = tiny_config({"model.condition": "attributes", "model.attributes": "Eyeglasses,Smiling",
                        "train.num_steps": 4, "eval.every_steps": 4, "eval.num_samples": 32,
                        "eval.attribute_classifier": str(tmp_path / "reader.msgpack")})
  train.train_and_evaluate(config, tmp_path / "run")
  logged = summaries.evaluation_scores(summaries.read_metrics(tmp_path / "run" / "metrics.jsonl"))
  during = {k: v for k, v in logged["last"].items() if k.startswith("attr_accuracy")}
  assert set(during) == {"attr_accuracy", "attr_accuracy/Eyeglasses", "attr_accuracy/Smiling"}
  # An untrained generator cannot follow its attributes: about chance.
  assert abs(during["attr_accuracy"] - 0.5) < 0.25
  result = json.loads(run_module("experiments.evaluate", "--workdir", tmp_path / "run",
                                 "--metrics", "swd").stdout.splitlines()[-1])
  assert {k: v for k, v in result.items() if k.startswith("attr_accuracy")} == pytest.approx(
      during)
  config.data.resolution = 32
  with pytest.raises(ValueError, match=r"^attribute classifier \S+reader.msgpack reads 16px "
                                       r"faces, the run makes 32px ones; train one with"):
    train.train_and_evaluate(config, tmp_path / "other")
  assert not (tmp_path / "other").exists()
  train.train_and_evaluate(tiny_config({"train.num_steps": 2}), tmp_path / "plain")
  refused = run_module("experiments.evaluate", "--workdir", tmp_path / "plain",
                       "--attribute_classifier", tmp_path / "reader.msgpack", check=False)
  assert refused.returncode == 2 and "is not a conditional run" in refused.stderr
  assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_compare_scores_the_conditional_preset_by_its_attributes_as_evaluate_does(synthetic,
                                                                                 tmp_path):
  """With eval.attribute_classifier set for every preset, compare adds attr_accuracy for
  the conditional one (the score experiments.evaluate gives with compare's noise) and a
  dash for the unconditional one."""
  classifier, _ = synthetic
  attribute_classifier.save(classifier, tmp_path / "reader.msgpack", {})
  configs = {"dcgan": dcgan.get_config("tiny"), "cdcgan": cdcgan.get_config("tiny")}
  for config in configs.values():
    config.data.source = "synthetic"
    config.train.num_steps = config.train.checkpoint_every = config.train.sample_every = 2
    config.eval.attribute_classifier = str(tmp_path / "reader.msgpack")
  configs["cdcgan"].model.attributes = "Eyeglasses,Smiling"
  report = compare.compare(tmp_path / "compared", configs, [0], num_samples=32)
  assert "attr_accuracy" not in report["presets"]["dcgan"]
  scored = report["runs"][1]["scores"]
  result = json.loads(run_module(
      "experiments.evaluate", "--workdir", tmp_path / "compared" / "cdcgan" / "seed0",
      "--metrics", "swd", "--num_samples", 32, "--seed", compare.NOISE_SEED,
      "--attribute_classifier", tmp_path / "reader.msgpack").stdout.splitlines()[-1])
  assert {k: v for k, v in scored.items() if k.startswith("attr_accuracy")} == pytest.approx(
      {k: v for k, v in result.items() if k.startswith("attr_accuracy")})
  table = (tmp_path / "compared" / "compare.md").read_text().splitlines()
  assert "attr_accuracy (mean ± std over 1 seeds)" in table[0]
  assert table[2].startswith("| dcgan |") and table[2].split(" | ")[2] == "-"
  assert table[3].split(" | ")[2] == f"{scored['attr_accuracy']:.4g} ± 0"
