"""The test extra's metric tools run: researchers cross-check scores with them."""

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
