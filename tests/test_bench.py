"""The benchmark command prints one JSON line whose numbers agree with each other."""

import json

import pytest

from tests.cli import run_module


@pytest.mark.slow
def test_bench_prints_consistent_json_line():
  result = run_module("experiments.bench", "--batch_size", 8, "--resolution", 16, "--nf", 8,
                      "--steps", 3, "--rounds", 2, "--warmup", 0, "--compare_torch",
                      env={"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1, result.stdout
  report = json.loads(lines[0])
  assert (report["batch_size"], report["resolution"], report["nf"]) == (8, 16, 8)
  assert report["device_kind"] == "cpu" and report["device_count"] == 1
  assert report["torch_device"] == "cpu"
  assert report["glibc_tunables"] == "glibc.malloc.hugetlb=1"
  assert report["compile_s"] > 0 and report["images_per_s"] > 0 and report["torch_images_per_s"] > 0
  # The ratio is of times over the same steps, so it matches the two rates (up to rounding).
  expected = report["images_per_s"] / report["torch_images_per_s"]
  assert abs(report["jax_over_torch"] - expected) <= 0.011 + 0.01 * expected
