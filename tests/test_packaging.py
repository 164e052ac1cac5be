"""The installed package: its licence, and the test extra's metric tools, which researchers
cross-check scores with."""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import run_module


@pytest.mark.slow
def test_pytorch_fid_and_torch_fidelity_commands_start():
  assert "usage:" in run_module("pytorch_fid", "--help").stdout
  fidelity = Path(sys.executable).parent / "fidelity"
  result = subprocess.run([str(fidelity), "--help"], capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "--input1" in result.stdout


def test_the_installed_package_declares_its_licence_and_ships_its_text():
  metadata = importlib.metadata.metadata("dcgan-jax")
  assert metadata["License-Expression"] == "Apache-2.0"
  assert metadata["License-File"] == "LICENSE"
  licence = Path(__file__).resolve().parents[1] / "LICENSE"
  assert "Apache License" in licence.read_text() and "Version 2.0" in licence.read_text()
