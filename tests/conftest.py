"""Fixtures shared across test modules."""

import pytest

from tests.cli import train


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """A run of the tiny synthetic config (8 steps), trained once through the CLI; read it,
  never write into it."""
  workdir = tmp_path_factory.mktemp("tiny_run")
  train(workdir)
  return workdir
