"""The report command on a trained run: every figure, the progress GIF, the index page,
metrics read as training writes them, and a neighbour search that finds the true nearest."""

import json
import re
import shutil

import jax
import numpy as np
import pytest
from PIL import Image, ImageSequence

from dcgan_jax import generate, losses, summaries, variants
from dcgan_jax.data import sources
from dcgan_jax.models import layers
from dcgan_jax.report import assemble, figures, neighbours, page
from tests.cli import run_module

REPORT_IMAGES = ("losses.png", "metrics.png", "samples.png", "progress.gif", "real_vs_fake.png",
                 "interpolation.png", "discriminator_features.png", "nearest_neighbours.png")


@pytest.fixture(scope="module")
def workdir(tiny_run, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("reported") / "run"
  shutil.copytree(tiny_run, workdir)
  with open(workdir / "metrics.jsonl", "a", encoding="utf-8") as metrics:
    metrics.write(json.dumps({"step": 8, "eval_fid": 123.4}) + "\n")
  assemble.write_report(workdir, num_neighbours=3)
  return workdir


@pytest.mark.slow
def test_report_writes_every_image_and_an_index_linking_each(workdir):
  report_dir = workdir / "report"
  for name in REPORT_IMAGES:
    with Image.open(report_dir / name) as image:
      image.load()
      assert 60 <= min(image.size) and max(image.size) <= 4000, (name, image.size)
  links = re.findall(r'src="([^"]+)"', (report_dir / "index.html").read_text())
  assert sorted(links) == sorted(REPORT_IMAGES)
  assert (report_dir / "samples.png").read_bytes() == (
      workdir / "samples" / "step_0000008.png").read_bytes()


@pytest.mark.slow
def test_index_states_wall_time_speed_and_the_last_and_best_evaluations(workdir):
  index = (workdir / "report" / "index.html").read_text()
  final = json.loads((workdir / "final.json").read_text())
  facts = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]+)</td></tr>", index))
  assert facts["wall time"] == summaries.format_duration(final["total_seconds"])
  assert facts["img/s (last log)"] == f"{final['metrics']['img_per_s']:,.0f}"
  assert facts["last evaluation (step 8)"] == facts["best evaluation (step 8)"] == "fid 123.4"


@pytest.mark.slow
def test_progress_gif_has_one_frame_per_sample_grid_in_step_order(workdir):
  grids = [np.asarray(Image.open(workdir / "samples" / f"step_{step:07d}.png").convert("RGB"))
           for step in (4, 8)]
  with Image.open(workdir / "report" / "progress.gif") as gif:
    frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
  assert len(frames) == len(grids)
  for frame, grid in zip(frames, grids):
    h, w, _ = grid.shape
    assert frame.shape[1] == w and frame.shape[0] > h  # the step label goes beneath
    # GIF keeps 256 colours per frame, so the grid comes back close, not bit-exact.
    assert np.abs(frame[:h].astype(int) - grid).mean() < 3


def test_metrics_are_read_as_a_resumed_run_leaves_them(tmp_path):
  path = tmp_path / "metrics.jsonl"
  rows = [{"step": 2, "d_loss": 1.0}, {"step": 4, "d_loss": 0.9},
          {"step": 4, "eval_kid": 0.5, "eval_kid_std": 0.1, "eval_swd": 7.0},
          {"step": 4, "d_loss": 0.8}]  # step 4 again, after resuming from step 2
  path.write_text("".join(json.dumps(row) + "\n" for row in rows) + '{"step": 6, "d_lo')
  read = summaries.read_metrics(path)
  steps, values = figures.series(read, "d_loss")
  assert steps.tolist() == [2, 4] and values.tolist() == [1.0, 0.8]
  assert figures.eval_metric_names(read) == ["kid", "swd"]
  assert figures.training_metric_names(read) == ["d_loss"]


@pytest.mark.parametrize("damaged", ['{"step": 4, "d_lo', '[1, 2]'])
def test_a_damaged_metrics_row_is_one_line_naming_the_file_and_line(tmp_path, damaged):
  path = tmp_path / "metrics.jsonl"
  path.write_text(json.dumps({"step": 2, "d_loss": 1.0}) + "\n" + damaged + "\n")
  with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} line 2 is not a "):
    summaries.read_metrics(path)


def test_nearest_neighbours_are_the_brute_force_nearest():
  """At a realistic count, with near-copies of the queries among the candidates: their
  distance (1 grey level in one pixel) is 1e-4 of the images' norms, which the expanded
  |q|^2 - 2 q.c + |c|^2 keeps only when summed in float64."""
  rng = np.random.default_rng(0)
  queries = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
  source = rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8)
  source[:5] = queries
  source[:5, 0, 0, 0] += 1
  images = [{"image": image, "label": np.zeros(0, np.int8)} for image in source]
  candidates = np.concatenate([np.arange(5), sources.sample_indices(4995, 3995, rng) + 5])
  chunks = neighbours.embedded_chunks(images, candidates, neighbours.PIXEL_SPACE, chunk_size=700)
  indices, distances = neighbours.nearest_neighbours(neighbours.pixel_features(queries), chunks,
                                                     k=4)

  brute = np.stack([np.sqrt(((source[candidates].astype(np.float64) - query) ** 2)
                            .sum(axis=(1, 2, 3))) for query in queries])
  nearest = np.argsort(brute, axis=1, kind="stable")[:, :4]
  np.testing.assert_array_equal(indices, candidates[nearest])
  np.testing.assert_allclose(distances, np.take_along_axis(brute, nearest, axis=1), rtol=1e-9)
  np.testing.assert_allclose(distances[:, 0], 1.0, rtol=1e-9)
  found, _ = neighbours.nearest_training_images(images, queries, candidates, 4,
                                                neighbours.PIXEL_SPACE)
  np.testing.assert_array_equal(found, source[candidates[nearest]])


def test_report_on_a_directory_without_a_run(tmp_path):
  result = run_module("experiments.report", "--workdir", tmp_path, check=False)
  assert result.returncode != 0
  assert result.stderr.strip().startswith("error: ") and "\n" not in result.stderr.strip()
  assert not (tmp_path / "report").exists()


def test_loss_figure_plots_whatever_the_step_logged():
  rows = [{"step": s, "d_loss": 1.0 / s, "g_loss": 2.0 / s, "critic_gap": float(s),
           "img_per_s": 10.0, "elapsed_s": float(s)} for s in (1, 2, 3)]
  loss = losses.Loss(discriminator=None, generator=None)
  figure = figures.loss_figure(rows, loss)
  labels = [sorted(line.get_label() for line in ax.get_lines()) for ax in figure.axes]
  assert labels == [["d_loss", "g_loss"], ["critic_gap"]]


def test_discriminator_features_are_its_first_maps_at_each_resolution(tiny_run):
  run = generate.load_run(tiny_run)
  images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), np.uint8)
  (first_path, first), (second_path, second) = figures.discriminator_activations(run, images)
  assert first.shape[1:3] == (8, 8) and second.shape[1:3] == (4, 4)
  # Independently: the first strided convolution of the input, with the reference layer.
  kernel = run.state.d_params[first_path]["kernel"]
  x = jax.numpy.asarray(images, jax.numpy.float32) / 127.5 - 1.0
  np.testing.assert_allclose(first, layers.downsample_2x(x, kernel, "reference"),
                             rtol=1e-4, atol=1e-5)
  assert second_path != first_path and second.shape[-1] == 2 * first.shape[-1]


def test_loss_caption_names_an_equilibrium_only_where_the_loss_has_one():
  ns, hinge = variants.LOSSES["non_saturating"], variants.LOSSES["hinge"]
  assert "D(x), real batch" in figures.loss_caption(ns) and "at 0.5" in figures.loss_caption(ns)
  assert "mean D(x), real batch" in figures.loss_caption(hinge)
  assert "at " not in figures.loss_caption(hinge) and "None" not in figures.loss_caption(hinge)


def test_wall_time_counts_every_session_of_a_resumed_run():
  facts = dict(page.run_facts({"seconds": 4.0, "total_seconds": 118.0, "metrics": {}}, {}))
  assert facts["wall time"] == summaries.format_duration(118.0)
  # final.json written before sessions were summed has only the last session's time.
  assert dict(page.run_facts({"seconds": 4.0, "metrics": {}}, {}))["wall time"] == \
      summaries.format_duration(4.0)
