"""Peak memory and time of `experiments.fid` on two folders of N synthetic faces.

  python -m experiments.bench_fid_memory --num 50000 [--resolution 64] [--metrics swd]
                                         [--dir /tmp/fid_bench]

Writes N faces of seed 0 and N of seed 1 as PNGs into --dir (kept there for reruns),
runs `python -m experiments.fid A B --metrics ...` in a child process and prints one JSON
line: the child's peak resident memory (`peak_rss_gb`), its wall time and its scores.
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from absl import flags
from PIL import Image

from dcgan_jax.data import synthetic_faces
from experiments import cli

_NUM = flags.DEFINE_integer("num", 50_000, "Faces per set.")
_RESOLUTION = flags.DEFINE_integer("resolution", 64, "Face size in pixels.")
_METRICS = flags.DEFINE_string("metrics", "swd", "Passed to experiments.fid --metrics.")
_DIR = flags.DEFINE_string("dir", "/tmp/fid_bench", "Where the two folders are written.")


def _write_faces(folder: Path, seed: int, num: int, resolution: int) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(num):
    path = folder / f"{i:06d}.png"
    if not path.exists():
      Image.fromarray(synthetic_faces.render_face(seed, i, resolution)).save(path)


def main(argv: list[str]) -> None:
  del argv
  root = Path(_DIR.value) / f"{_NUM.value}x{_RESOLUTION.value}"
  folders = [root / "a", root / "b"]
  for seed, folder in enumerate(folders):
    _write_faces(folder, seed, _NUM.value, _RESOLUTION.value)
  start = time.perf_counter()
  result = subprocess.run(
      [sys.executable, "-m", "experiments.fid", *map(str, folders), "--metrics",
       _METRICS.value, "--resolution", str(_RESOLUTION.value)],
      capture_output=True, text=True, check=False)
  seconds = time.perf_counter() - start
  if result.returncode != 0:
    sys.exit(f"experiments.fid failed: {result.stderr.strip().splitlines()[-1:]}")
  # Linux reports ru_maxrss in KiB.
  peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  print(json.dumps({"num": _NUM.value, "resolution": _RESOLUTION.value,
                    "metrics": _METRICS.value, "peak_rss_gb": round(peak_kib / 2**20, 3),
                    "seconds": round(seconds, 1),
                    "scores": json.loads(result.stdout.strip().splitlines()[-1])}))


if __name__ == "__main__":
  cli.run(main)
