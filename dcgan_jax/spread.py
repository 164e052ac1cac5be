"""Scores over seeds: per group of runs (a preset, a population's setting), the mean and
standard deviation of each score over its seeds, and the table of them."""

import dataclasses
from typing import Any

import numpy as np

from dcgan_jax import population, summaries


@dataclasses.dataclass(frozen=True)
class RunResult:
  """One run's scores, wall time and rate; `preset` names its group (a population
  member's settings)."""

  preset: str
  seed: int
  scores: dict[str, float]
  seconds: float
  images_per_s: float


def wall_time_and_rate(final: dict[str, Any], batch_size: int,
                       num_members: int = 1) -> tuple[float, float]:
  """A run's training seconds over all its sessions, and its img/s over them, from its
  final.json (`summaries.training_seconds`); a population member's (its entry in the
  population's final.json) are its share, the population's time divided among its
  `num_members`."""
  seconds = summaries.training_seconds(final) / num_members
  return seconds, final["step"] * batch_size / max(seconds, 1e-9)


def summarise(results: list[RunResult]) -> dict[str, dict[str, Any]]:
  """Per group: mean, standard deviation (over seeds, ddof 1) and values of each score."""
  summary: dict[str, dict[str, Any]] = {}
  for name in dict.fromkeys(r.preset for r in results):
    runs = [r for r in results if r.preset == name]
    columns = {key: [r.scores[key] for r in runs] for key in runs[0].scores}
    columns |= {"seconds": [r.seconds for r in runs], "img_per_s": [r.images_per_s for r in runs]}
    summary[name] = {key: {"mean": float(np.mean(v)),
                           "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                           "values": [float(x) for x in v]} for key, v in columns.items()}
  return summary


# The scores the tables show, by their column titles.
_SCORE_TITLES = {"swd": "SWD", "fid": "FID", "kid": "KID", "attr_accuracy": "attr_accuracy"}


def markdown_table(summary: dict[str, dict[str, Any]], seeds: list[int],
                   group_title: str = "preset") -> str:
  """Each score's mean ± std per group ("-" where a group has none: attr_accuracy is
  only a conditional run's), wall time and img/s."""
  score_keys = [k for k in _SCORE_TITLES if any(k in columns for columns in summary.values())]
  header = ([group_title] + [f"{_SCORE_TITLES[k]} (mean ± std over {len(seeds)} seeds)"
                             for k in score_keys]
            + ["wall time (s)", "img/s"])
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  for name, columns in summary.items():
    cells = [name] + [f"{columns[k]['mean']:.4g} ± {columns[k]['std']:.2g}" if k in columns
                      else "-" for k in score_keys]
    cells += [f"{columns['seconds']['mean']:.0f}", f"{columns['img_per_s']['mean']:.0f}"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def population_table(finals: list[dict[str, Any]], batch_size: int) -> str:
  """A trained population's table (its final.json entries): per swept setting, each score
  of the members' last evaluations over their seeds; a member's wall time is the
  population's divided among the members."""
  results = []
  for final in finals:
    settings = population.settings_text(final["settings"])
    scores = {key: value for key, value in final["eval"].get("last", {}).items()
              if key in _SCORE_TITLES}
    results.append(RunResult(settings or "every seed", final["seed"], scores,
                             *wall_time_and_rate(final, batch_size, len(finals))))
  seeds = sorted({final["seed"] for final in finals})
  return markdown_table(summarise(results), seeds, group_title="settings")
