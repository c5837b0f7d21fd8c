"""Beam's local runner against the plain predict command, on the same photos: throughput and overhead.

    python benchmarks/beam_runner.py MODEL_DIR [DATA] [--per-class 500] [--runs 1] [--beam-args '...']

Runs, each as its own process from start to exit (Python, TensorFlow import, model load included):

- `python -m classifier.predict MODEL_DIR FOLDER`: one process, one image at a time;
- `python -m classifier.batch_predict MODEL_DIR 'FOLDER/**' --out results.csv` on the DirectRunner
  (in-memory, one worker; `--beam-args` adds options, e.g. `--direct_num_workers=2
  --direct_running_mode=multi_processing`).

FOLDER holds the first `--per-class` images of each class of DATA's `train/` (symlinks; default
DATA: ../shared/data/cats_dogs). Printed per run: wall seconds, CPU seconds of the process and its
children, images per second of wall time; then Beam's overhead against the plain command
(wall and CPU, in total and per image) and whether both gave the same top class for every image.
The load average is printed beside the figures: other work on the machine slows both.

MODEL_DIR: a model trained on the bundled MobileNetV2 0.35 weights, e.g.
`python -m classifier.train --data ../shared/data/cats_dogs --backbone mobilenet_v2 --alpha 0.35 --out m`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CODE, ROOT, machine, subset, uptime_load


def timed_run(argv: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the process and its children, stdout) of one command run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(CODE)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # predict exits 1 when some file could not be used
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("data", nargs="?", type=Path, default=ROOT.parent / "shared" / "data" / "cats_dogs")
    parser.add_argument("--per-class", type=int, default=500, help="images per class (default 500)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each command (default 1)")
    parser.add_argument("--beam-args", default="", help="more Beam options for the Beam runs, one string")
    parser.add_argument("--code", help="run another checkout's classifier package (see _common.py)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = subset(args.data, Path(scratch) / "photos", args.per_class) / "train"
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        out = Path(scratch) / "results.csv"
        plain = [sys.executable, "-m", "classifier.predict", str(args.model_dir), str(folder), "--json", "--top-k", "1"]
        beam = [sys.executable, "-m", "classifier.batch_predict", str(args.model_dir), f"{folder}/**"]
        beam += ["--out", str(out), "--top-k", "1", *shlex.split(args.beam_args)]
        print(f"{machine()}; {count} images from {args.data}; model {args.model_dir}")
        figures = {"plain": [], "beam": []}
        for _ in range(args.runs):
            for name, argv in (("plain", plain), ("beam", beam)):
                load = uptime_load()
                wall, cpu, stdout = timed_run(argv)
                figures[name].append((wall, cpu))
                print(f"{name:7s} {wall:7.1f} s wall  {cpu:7.1f} s CPU  {count / wall:6.1f} images/s  ({load})")
                if name == "plain":
                    plain_top = {row["image"]: row["predictions"][0]["label"] for row in json.loads(stdout)}
        with open(out, newline="") as file:
            beam_top = {row["path"]: row["class_1"] for row in csv.DictReader(file)}

    def best(name: str) -> tuple[float, float]:
        return min(figures[name])  # the least disturbed run

    (plain_wall, plain_cpu), (beam_wall, beam_cpu) = best("plain"), best("beam")
    print(
        f"Beam overhead: {beam_wall - plain_wall:+.1f} s wall ({(beam_wall - plain_wall) / count * 1000:+.1f} "
        f"ms/image), {beam_cpu - plain_cpu:+.1f} s CPU ({(beam_cpu - plain_cpu) / count * 1000:+.1f} ms/image)"
    )
    same = sum(beam_top.get(path) == label for path, label in plain_top.items())
    print(f"same top class: {same} of {len(plain_top)} images")


if __name__ == "__main__":
    main()
