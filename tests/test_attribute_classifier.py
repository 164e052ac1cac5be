"""The attribute classifier, the yardstick of conditioning: its score, and how well it reads
the faces' attributes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dcgan_jax.data import celeba_prepare, synthetic_faces
from dcgan_jax.eval import attribute_classifier
from tests.cli import run_module

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


@pytest.mark.slow
def test_it_reads_the_synthetic_faces_attributes_and_saves_what_it_learned(tmp_path):
  drawn = synthetic_faces.SyntheticFaces(seed=0, num_images=3000, resolution=16)
  faces = [drawn[i] for i in range(len(drawn))]  # drawn once, not at every batch
  train, held = attribute_classifier.held_out(len(faces), 0.1, seed=0)
  classifier = attribute_classifier.train_classifier(faces, drawn.attribute_names, train,
                                                     steps=400, seed=0)
  images = np.stack([faces[i]["image"] for i in held])
  labels = np.stack([faces[i]["label"] for i in held])
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
