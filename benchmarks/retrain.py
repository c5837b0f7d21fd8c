"""Retrain after adding photos, feature cache warm: the whole `train()` call, step by step.

    python benchmarks/retrain.py ../shared/data/cats_dogs \
        --weights ../shared/weights/inception_v3_no_top_to_mixed8.h5
    python benchmarks/retrain.py DATA --weights FILE --new 20 --cache-dir DIR --code ../main   # main's code: "before"

Links every photo of DATA into a working folder, then in one process: trains the default recipe on
it (this fills the feature cache unless --cache-dir already holds it: minutes, not timed), adds
--new photos to train/ (mirror images of the last training photos of each class, saved as new
JPEGs: content the cache has never seen) and times the retrain, as the browser's Train tab would
run it in its own process. Then adds --new other photos (the same, upside down) and times a
retrain in a fresh process (`train()` itself; the process start and imports are printed apart).
Each line splits the call into its steps as metadata.json records them (scan: listing, hashing
and checking files; build: the model; features: hashing and the backbone pass on the new photos;
head: the head's epochs; score; the rest: saving model.keras, metadata and the report's plots).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CODE, machine, subset, uptime_load
from PIL import Image, ImageOps

STEPS = ("scan_seconds", "build_seconds", "features_seconds", "head_seconds", "score_seconds")


def timed_train(config: dict) -> dict:
    """One train() call: its wall time and metadata's timing."""
    from classifier.config import TrainConfig
    from classifier.train import train

    started = time.perf_counter()
    result = train(TrainConfig(**config), log=lambda line: None)
    seconds = time.perf_counter() - started
    meta = result.metadata
    return {"seconds": seconds, "timing": meta.timing, "val_accuracy": meta.val_accuracy}


def add_photos(data: Path, count: int, transform, prefix: str) -> None:
    """`count` new photos in train/, split over the classes: `transform` of each class's last photos."""
    classes = sorted(p for p in (data / "train").iterdir() if p.is_dir())
    for index, folder in enumerate(classes):
        share = count // len(classes) + (index < count % len(classes))
        originals = sorted(p for p in folder.iterdir() if not p.name.startswith(("new-", "newer-")))[-share:]
        for original in originals:
            transform(Image.open(original).convert("RGB")).save(folder / f"{prefix}-{original.stem}.jpg", quality=90)


def report(name: str, result: dict) -> None:
    timing = result["timing"]
    steps = "  ".join(f"{step.split('_')[0]} {timing[step]:.1f}" for step in STEPS if step in timing)
    rest = result["seconds"] - sum(timing.get(step, 0) for step in STEPS)
    print(
        f"{name:34} {result['seconds']:6.1f} s   ({steps}  rest {rest:.1f}; s)   val accuracy "
        f"{result['val_accuracy']:.4f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder with train/ and validation/ class folders")
    parser.add_argument("--weights", required=True, help="backbone weights file")
    parser.add_argument("--new", type=int, default=20, help="photos added before each retrain (default 20)")
    parser.add_argument("--cache-dir", help="feature cache to use (default: a new one, filled by the first run)")
    parser.add_argument("--code", help="run another checkout's classifier package (e.g. ../main)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a config as JSON: one timed train() in this process
    args = parser.parse_args()
    if args.child:
        print(json.dumps(timed_train(json.loads(args.child))))
        return 0

    print(f"machine: {machine()}\ncode: {CODE}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data = work / "data"
        for split in ("train", "validation"):
            subset(args.data, data, 10**9, split)
        config = dict(
            data=str(data),
            weights=args.weights,
            out=str(work / "model"),
            overwrite=True,
            cache_dir=args.cache_dir or str(work / "cache"),
        )
        first = timed_train(config)
        report("first run (fills the cache)", first)

        add_photos(data, args.new, ImageOps.mirror, "new")
        print(uptime_load())
        report(f"retrain, +{args.new} photos, same process", timed_train(config))

        add_photos(data, args.new, ImageOps.flip, "newer")
        print(uptime_load())
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, str(args.data), "--weights", args.weights, "--child", json.dumps(config)]
            + (["--code", str(CODE)] if args.code else []),
            capture_output=True,
            text=True,
            check=True,
        )
        process = time.perf_counter() - started
        result = json.loads(child.stdout.strip().splitlines()[-1])
        report(f"retrain, +{args.new} photos, new process", result)
        print(
            f"  (the new process took {process:.1f} s in all: {process - result['seconds']:.1f} s to start and import)"
        )
        print(uptime_load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
