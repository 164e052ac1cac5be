"""Which config changes a resumed run accepts."""

from dcgan_jax import run_dir


def test_only_keys_that_change_what_is_trained_are_incompatible():
  saved = {"seed": 0, "model": {"nf": 8}, "train": {"num_steps": 8, "log_every": 2}}
  current = {"seed": 0, "model": {"nf": 16}, "train": {"num_steps": 16, "log_every": 4},
             "data": {"random_flip": False}}
  assert run_dir.incompatible_keys(saved, current) == ["data.random_flip", "model.nf"]
  assert run_dir.incompatible_keys(saved, saved) == []
