"""The report's index.html: the run's config, then each figure with its caption."""

import html
from pathlib import Path
import re

import ml_collections
from PIL import Image

from dcgan_jax import population, run_dir, summaries

# Small pixel grids are shown enlarged by a whole factor up to this width, so stay crisp.
DISPLAY_WIDTH = 640
_SUMMARY_KEYS = ("data.source", "data.dir", "data.resolution", "data.num_images", "model.arch",
                 "loss.name", "model.nf", "model.z_dim", "train.batch_size", "train.num_steps",
                 "train.num_epochs", "train.d_steps", "train.g_lr", "train.d_lr")


def config_summary(config: ml_collections.ConfigDict) -> dict[str, object]:
  flat = run_dir.flatten(run_dir.config_as_dict(config))
  return {key: flat[key] for key in _SUMMARY_KEYS if flat.get(key) not in (None, "")}


def run_facts(final: dict | None, evaluations: dict[str, dict[str, float]]
              ) -> list[tuple[str, str]]:
  """The run at a glance: wall time and speed (from final.json, once training ended) and
  the last and best evaluation scores (from metrics.jsonl)."""
  facts = []
  if final:
    facts.append(("wall time", summaries.format_duration(summaries.training_seconds(final))))
    if "img_per_s" in final.get("metrics", {}):
      facts.append(("img/s (last log)", f"{final['metrics']['img_per_s']:,.0f}"))
  for which in ("last", "best"):
    if which in evaluations:
      scores = dict(evaluations[which])
      step = scores.pop("step")
      facts.append((f"{which} evaluation (step {step:,})",
                    ", ".join(f"{name} {value:.4g}" for name, value in sorted(scores.items()))))
  return facts


def display_width(image_path: Path) -> int:
  with Image.open(image_path) as image:
    width = image.width
  return width * max(1, DISPLAY_WIDTH // width)


def index_html(workdir: Path, report_dir: Path, step: int, config: ml_collections.ConfigDict,
               images: list[tuple[str, str]], notes: list[str],
               facts: list[tuple[str, str]]) -> str:
  """The report page: a header, the run's `facts` as a table, then each (file name,
  caption) image in `report_dir`, linked relatively."""
  title = html.escape(f"DCGAN report: {workdir.resolve()}")
  summary = " &middot; ".join(f"{html.escape(k)} = {html.escape(str(v))}"
                              for k, v in config_summary(config).items())
  full_config = "\n".join(
      f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
      for k, v in run_dir.flatten(run_dir.config_as_dict(config)).items())
  figures = "\n".join(
      f'<figure><a href="{name}"><img src="{name}" alt="{name}" '
      f'width="{display_width(report_dir / name)}"></a>'
      f"<figcaption>{html.escape(caption)}</figcaption></figure>" for name, caption in images)
  facts_html = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                         for k, v in facts)
  notes_html = "".join(f"<p class=note>{html.escape(note)}</p>\n" for note in notes)
  return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; }}
figure {{ margin: 2em 0; }}
img {{ max-width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #ddd; }}
figcaption {{ color: #444; margin-top: .4em; }}
.note {{ color: #a40; }}
td {{ padding: 0 1em 0 0; font-family: monospace; }}
th {{ text-align: left; padding: 0 1em 0 0; font-weight: normal; color: #444; }}
</style></head>
<body>
<h1>{title}</h1>
<p>Checkpoint step {step}. {summary}</p>
<table class=facts>
{facts_html}
</table>
<details><summary>Full config</summary><table>
{full_config}
</table></details>
{notes_html}{figures}
</body></html>
"""


def report_step(report_dir: Path) -> int | None:
  """The checkpoint step the report in `report_dir` describes (None without one). Its
  index.html is written last: a report cut short leaves the earlier report's step."""
  index = report_dir / "index.html"
  if not index.exists():
    return None
  found = re.search(r"<p>Checkpoint step (\d+)\.", index.read_text())
  return int(found.group(1)) if found else None


def _table_html(markdown: str) -> str:
  """A markdown table (as `spread.markdown_table` writes one) as an HTML table."""
  rows = [[html.escape(cell.strip()) for cell in line.strip().strip("|").split("|")]
          for line in markdown.strip().splitlines() if not line.startswith("| ---")
          and not line.startswith("|---")]
  header, *body = rows
  return ("<table class=spread><tr>" + "".join(f"<th>{cell}</th>" for cell in header)
          + "</tr>\n" + "\n".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row)
                                  + "</tr>" for row in body) + "</table>")


def population_html(workdir: Path, finals: list[dict], spread_table: str,
                    members: list[tuple[int, Path | None, Path | None]]) -> str:
  """A population's page: each setting's spread over seeds (`spread_table`), then a row
  per member (final.json's entry) with its last sample grid and a link to its report,
  given as (member, grid, report) paths relative to the page."""
  title = html.escape(f"DCGAN population: {workdir.resolve()}")
  rows = []
  for final, (index, grid, report) in zip(finals, members):
    settings = population.settings_text(final["settings"])
    scores = dict(final["eval"].get("last", {}))
    scores.pop("step", None)
    cells = [str(index), str(final["seed"]), html.escape(settings or "-"),
             html.escape(", ".join(f"{name} {value:.4g}" for name, value in sorted(scores.items())
                                   if "/" not in name) or "-"),
             f'<a href="{report}">report</a>' if report else "-",
             f'<img src="{grid}" alt="member {index}" width="256">' if grid else "-"]
    rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
  return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; }}
img {{ image-rendering: pixelated; border: 1px solid #ddd; }}
td, th {{ padding: .2em 1em .2em 0; text-align: left; vertical-align: top; }}
td {{ font-family: monospace; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{len(finals)} members at step {finals[0]["step"]:,}. Each setting's scores at the last
evaluation, mean &plusmn; std over its seeds:</p>
{_table_html(spread_table)}
<h2>Members</h2>
<table class=members>
<tr><th>member</th><th>seed</th><th>settings</th><th>last evaluation</th><th>report</th>
<th>samples</th></tr>
{chr(10).join(rows)}
</table>
</body></html>
"""
