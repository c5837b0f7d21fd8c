"""Peak memory of a training run on N images and on 10 x N: does memory grow with the data?

    python benchmarks/memory.py ../shared/data/cats_dogs --n 100 --weights FILE

Each run is a fresh `python -m classifier.train` process (feature cache on, the default; a fresh
cache folder each) on the first N (then 10 x N) training images per class of DATA, with the same
validation images; peak RSS comes from the kernel's accounting of the child process. Without
--weights, a random-init InceptionV3 file is saved and used: memory and time are what real weights
cost, accuracy is meaningless.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, machine, subset


def peak_rss_mb(argv: list[str]) -> float:
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training failed: {process.stderr.read()[-2000:]}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def random_weights(path: Path) -> Path:
    from classifier._tf import keras

    keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(150, 150, 3)).save_weights(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder with train/ and validation/ class folders")
    parser.add_argument("--n", type=int, default=100, help="training images per class for the small run (default 100)")
    parser.add_argument("--weights", help="backbone weights file (default: a random-init one)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}\ndata: {args.data}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        weights = args.weights or random_weights(work / "inception_v3_random.weights.h5")
        peaks = {}
        for n in (args.n, 10 * args.n):
            data = subset(args.data, work / f"data{n}", n)
            subset(args.data, data, args.n, split="validation")
            argv = [
                sys.executable,
                "-m",
                "classifier.train",
                "--data",
                str(data),
                "--out",
                str(work / f"model{n}"),
                "--weights",
                str(weights),
                "--epochs",
                str(args.epochs),
                "--cache-dir",
                str(work / f"cache{n}"),
            ]
            peaks[n] = peak_rss_mb(argv)
            print(f"N = {n:5d} training images per class: peak RSS {peaks[n]:7.0f} MB")
    small, large = peaks.values()
    print(f"ratio 10xN / N: {large / small:.2f}")


if __name__ == "__main__":
    main()
