"""Populations through the training loop: each member written as its solo run,
resumed bit-identically, spread over devices; and what cannot be a member's setting is
refused in one line."""

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from dcgan_jax import generate, parallel, train
from dcgan_jax.train_state import state_fingerprint
from tests import population_runs
from tests.cli import REPO, SYNTHETIC_TINY, free_port, run_module, with_xla_flags
from tests.runs import assert_trained_alike, tiny_config


# Four members, each evaluated (SWD on 64 images) every 4 of its 8 steps.
_POPULATION_OVERRIDES = {"population.seeds": "0,1", "population.sweep": "train.d_lr=1e-4,2e-4",
                         "eval.every_steps": 4, "eval.download_weights": False}


def _population_config(overrides=None) -> ml_collections.ConfigDict:
  return tiny_config({**_POPULATION_OVERRIDES, **(overrides or {})})


@pytest.fixture(scope="module")
def trained_population(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("population")
  return workdir, train.train_and_evaluate(_population_config(), workdir)


def test_a_trained_population_writes_each_member_as_its_solo_run(trained_population,
                                                                 tmp_path):
  workdir, final = trained_population
  assert [(entry["member"], entry["seed"], entry["settings"]) for entry in final] == [
      (0, 0, {"train.d_lr": 1e-4}), (1, 1, {"train.d_lr": 1e-4}),
      (2, 0, {"train.d_lr": 2e-4}), (3, 1, {"train.d_lr": 2e-4})]
  assert json.loads((workdir / "final.json").read_text()) == final
  solo = train.train_and_evaluate(tiny_config({"seed": 1, "train.d_lr": 1e-4,
                                               "eval.every_steps": 4,
                                               "eval.download_weights": False}), tmp_path)
  member = final[1]
  member_dir = workdir / "members" / "1"
  # The data pipeline, noise and step of the solo run, logged the same way.
  for name, value in solo["metrics"].items():
    if name not in ("img_per_s", "elapsed_s"):
      assert member["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
  rows = [json.loads(line) for line in (member_dir / "metrics.jsonl").read_text().splitlines()]
  solo_rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [row["step"] for row in rows] == [row["step"] for row in solo_rows]
  assert {row["member"] for row in rows} == {1}
  assert sorted(path.name for path in (member_dir / "samples").iterdir()) == sorted(
      path.name for path in (tmp_path / "samples").iterdir())
  assert list(member_dir.glob("events.out.tfevents.*"))  # a TensorBoard run per member
  # Its evaluations score what the solo run's scored, and keep its own best checkpoint.
  assert member["eval"]["last"]["swd"] == pytest.approx(solo["eval"]["last"]["swd"], rel=1e-3)
  assert (member_dir / "checkpoints_best").is_dir()
  saved_config = json.loads((member_dir / "config.json").read_text())
  assert (saved_config["seed"], saved_config["train"]["d_lr"]) == (1, 1e-4)
  assert saved_config["population"]["seeds"] == ""
  # A member restored from the population's checkpoint is what final.json fingerprinted.
  run = generate.load_run(workdir, member=1)
  assert state_fingerprint(run.state) == member["state_fingerprint"]
  assert (run.config.seed, run.config.train.d_lr) == (1, 1e-4)


def test_the_population_table_gives_each_settings_mean_and_spread_over_seeds(trained_population):
  workdir, final = trained_population
  rows = (workdir / "population.md").read_text().splitlines()
  assert rows[0].startswith("| settings | SWD (mean ± std over 2 seeds) |")
  for row, d_lr in zip(rows[2:], (1e-4, 2e-4)):
    swd = [entry["eval"]["last"]["swd"] for entry in final
           if entry["settings"] == {"train.d_lr": d_lr}]
    assert row.split(" | ")[:2] == [
        f"| train.d_lr={d_lr:g}", f"{np.mean(swd):.4g} ± {np.std(swd, ddof=1):.2g}"]
  assert len(rows) == 4


def test_the_population_report_shows_the_spread_and_every_members_samples(trained_population):
  from dcgan_jax.report import assemble  # pylint: disable=g-import-not-at-top  (matplotlib)
  workdir, final = trained_population
  page = (assemble.write_report(workdir) / "index.html").read_text()
  table = (workdir / "population.md").read_text().splitlines()
  for row in table[2:]:
    assert "<tr><td>" + "</td><td>".join(cell.strip() for cell in row.strip("|").split("|")) in page
  for entry in final:
    grid = f"../members/{entry['member']}/samples/step_0000008.png"
    assert f'<img src="{grid}"' in page
    assert (workdir / "report" / grid).exists()


def test_a_population_stopped_and_resumed_is_bit_identical(trained_population, tmp_path):
  workdir, final = trained_population
  train.train_and_evaluate(_population_config({"train.num_steps": 4}), tmp_path)
  resumed = train.train_and_evaluate(_population_config(), tmp_path)
  assert [entry["state_fingerprint"] for entry in resumed] == [
      entry["state_fingerprint"] for entry in final]


@pytest.mark.slow
def test_two_processes_of_two_devices_train_the_population_of_one(trained_population,
                                                                   tmp_path):
  workdir, final = trained_population
  port = free_port()
  overrides = [f"--config.{key}={value}" for key, value in _POPULATION_OVERRIDES.items()]
  processes = [
      subprocess.Popen(
          [sys.executable, "-m", "experiments.celeba", "--workdir", str(tmp_path), "--config",
           SYNTHETIC_TINY, *overrides, f"--coordinator_address=127.0.0.1:{port}",
           "--num_processes=2", f"--process_id={i}"],
          cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu",
                         **with_xla_flags("--xla_force_host_platform_device_count=2")},
          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outputs = [p.communicate(timeout=300)[0] for p in processes]
  assert [p.returncode for p in processes] == [0, 0], outputs
  spread = json.loads((tmp_path / "final.json").read_text())
  assert [(entry["num_devices"], entry["num_processes"]) for entry in spread] == [(4, 2)] * 4
  for member in range(len(final)):
    one, two = (generate.load_run(run, member=member) for run in (workdir, tmp_path))
    assert_trained_alike(one.state, two.state, max(one.config.train.g_lr, one.config.train.d_lr),
                         one.config.train.num_steps, member)


@pytest.mark.slow
def test_commands_read_the_member_they_are_given(trained_population, tmp_path):
  workdir, final = trained_population
  scores = json.loads(run_module("experiments.evaluate", "--workdir", workdir, "--member", 2,
                                 "--metrics", "swd").stdout)
  # Training's evaluation noise and real images of member 2, at its last step.
  assert scores["swd"] == pytest.approx(final[2]["eval"]["last"]["swd"], rel=1e-6)
  assert (workdir / "members" / "2" / "eval_step0000008.json").exists()
  run_module("experiments.sample", "--workdir", workdir, "--member", 3, "--best",
             "--out_dir", tmp_path / "best", "--num", 2)
  assert len(list((tmp_path / "best").glob("*.png"))) == 2
  refused = run_module("experiments.export", "--workdir", workdir, "--out",
                       tmp_path / "g.safetensors", check=False)
  assert refused.returncode != 0
  assert refused.stderr.strip().splitlines()[-1] == (
      f"error: --member: {workdir} holds a population of 4 members; choose one with --member K, "
      f"K from 0 to 3")


def test_a_member_that_diverges_stops_the_population_naming_it(tmp_path):
  config = tiny_config({"population.seeds": "0", "population.sweep": "train.d_lr=2e-4,1e30"})
  with pytest.raises(train.TrainingStopped,
                     match=r"^training diverged: non-finite parameters or metrics at step \d+ "
                           r"in member 1 \(seed=0, train.d_lr=1e\+30\); ") as stopped:
    train.train_and_evaluate(config, tmp_path)
  assert "\n" not in str(stopped.value)


def test_member_flag_is_checked_against_the_run(trained_population, tmp_path):
  workdir, _ = trained_population
  with pytest.raises(ValueError, match="holds a population of 4 members; choose one with "
                                       "--member K, K from 0 to 3"):
    generate.load_run(workdir)
  with pytest.raises(ValueError, match=r"\(got 4\)"):
    generate.load_run(workdir, member=4)
  train.train_and_evaluate(tiny_config({"train.num_steps": 2}), tmp_path)
  with pytest.raises(ValueError, match="is one run, not a population"):
    generate.load_run(tmp_path, member=0)


@pytest.mark.parametrize("overrides, message", [
    ({"population.sweep": "model.nf=8,16"},
     "population.sweep cannot vary model.nf: it changes the networks' shapes or the code"),
    ({"population.sweep": "train.batch_size=8,16"}, "cannot vary train.batch_size"),
    ({"population.sweep": "train.d_lr"}, "expected KEY=V1,V2"),
    ({"population.sweep": "train.d_lr=1e-4,fast"}, "expected comma-separated numbers"),
    ({"population.sweep": "train.g_beta1=0.5,1.5"},
     r"population.sweep train.g_beta1=1.5: expected a number in \[0, 1\)"),
    ({"population.sweep": "train.d_lr=1e-4;train.d_lr=2e-4"}, "names train.d_lr twice"),
    ({"population.seeds": "0,1,0"}, "repeats a seed"),
    ({"population.seeds": "0,one"}, "expected comma-separated integers"),
    ({"population.seeds": "0,-1"}, "population.seeds: seed -1: expected an integer from 0"),
    ({"population.seeds": "0,1", "model.arch": "progan", "data.resolution": 16},
     "model.arch=progan grows them"),
    ({"population.sweep": "loss.aux_classifier_weight=0,1"}, "mixes 0 and non-zero"),
])
def test_what_a_population_cannot_train_is_refused_in_one_line(overrides, message, tmp_path):
  with pytest.raises(ValueError, match=message) as error:
    train.train_and_evaluate(tiny_config(overrides), tmp_path / "run")
  assert "\n" not in str(error.value)
  assert not (tmp_path / "run").exists()


def test_mesh_spreads_members_over_devices_when_they_divide():
  assert parallel.population_mesh_shape(4, 4) == (4, 1)
  assert parallel.population_mesh_shape(8, 4) == (4, 1)
  assert parallel.population_mesh_shape(2, 4) == (2, 2)
  assert parallel.population_mesh_shape(3, 4) == (1, 4)
  assert parallel.population_mesh_shape(5, 1) == (1, 1)
  # Over processes, each reads its part of every member's batch, as a solo run's.
  assert parallel.population_mesh_shape(4, 4, num_processes=2) == (1, 4)


_FOUR_DEVICE_SCRIPT = """
import sys
import numpy as np
import jax
from tests import population_runs
np.savez(sys.argv[1], **population_runs.population_leaves(sys.argv[2]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("seeds", ["0,1,2,3", "0,1"])
def test_four_devices_train_the_population_of_one(seeds, tmp_path):
  """Four members: one per device, no gradient crossing devices; two: each member's
  batch split over two devices."""
  subprocess.run([sys.executable, "-c", _FOUR_DEVICE_SCRIPT, tmp_path / "four.npz", seeds],
                 cwd=REPO, check=True, env=with_xla_flags(
                     "--xla_force_host_platform_device_count=4"))
  four = dict(np.load(tmp_path / "four.npz"))
  one = population_runs.population_leaves(seeds)
  # Spread members share nothing; split batches share their BatchNorm statistics.
  assert (four.pop("collectives") == 0) == (seeds == "0,1,2,3")
  assert one.pop("collectives") == 0
  assert four.keys() == one.keys()
  for index, leaf in one.items():
    np.testing.assert_allclose(four[index], leaf, rtol=1e-4, atol=1e-5)
