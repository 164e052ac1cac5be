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


@pytest.mark.slow
def test_population_bench_reports_both_aggregates_and_their_ratio():
  result = run_module("experiments.bench", "--batch_size", 8, "--resolution", 16, "--nf", 8,
                      "--steps", 3, "--rounds", 2, "--warmup", 0, "--population", 3,
                      "--vmap_members", 2)
  report = json.loads(result.stdout.strip())
  assert (report["population"], report["vmap_members"]) == (3, 2)
  assert report["mesh"] == {"members": 1, "data": 1}
  assert report["images_per_s"] > 0 and report["population_images_per_s"] > 0
  # Both count 3 runs' images over the same steps: the ratio is that of the two rates.
  expected = report["population_images_per_s"] / report["images_per_s"]
  assert abs(report["speedup"] - expected) <= 0.011 + 0.01 * expected


@pytest.mark.slow
def test_growth_bench_prints_each_stage_and_the_schedule_time_from_their_rates():
  result = run_module("experiments.bench_growth", "--config", "progan128:tiny", "--steps", 2,
                      "--warmup", 0, "--config.train.num_steps=12")
  *stages, total = [json.loads(line) for line in result.stdout.strip().splitlines()]
  assert [(s["resolution"], s["batch_size"]) for s in stages] == [(4, 16), (8, 16), (16, 8)]
  # 4x4: 2 steps of 16; 8x8: 4 of 16; 16x16: the 6 steps left of the 12, of 8.
  assert [s["schedule_images"] for s in stages] == [32, 64, 48]
  assert total["images"] == 144 and total["num_steps"] == 12
  assert all(s["images_per_s"] > 0 and s["compile_s"] > 0 for s in stages)
  hours = sum(s["schedule_images"] / s["images_per_s"] for s in stages) / 3600
  assert total["schedule_hours"] == pytest.approx(hours, abs=0.006)
