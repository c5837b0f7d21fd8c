"""The Train tab's loop on real photos: a cold train with the tab's defaults, then a retrain after corrections.

    python benchmarks/workbench.py ../shared/data/cats_dogs [--new 20] [--per-class N]

In one process, as the app runs it (classifier/serving/app_train.py): imports the photos of DATA (train/
and validation/ merged, as the tab merges a zip's) into a training folder (`trainset.build`:
checked and deduplicated), trains the tab's default model on it as a `Workbench` job with an empty
feature cache (the cold train), then adds --new corrections (`trainset.add` of new photos: the
last training photos of each class, mirrored and saved as new JPEGs, content the cache has never
seen) and times the retrain job. Each job's line splits it into the steps metadata.json records.
`--per-class N` takes the first N photos of each class (a quick check that the script runs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import CODE, machine, uptime_load
from PIL import ImageOps

STEPS = ("scan_seconds", "build_seconds", "features_seconds", "head_seconds", "score_seconds")


def timed_job(bench, name: str, config) -> None:
    """Run one job to its end and print its wall time, steps and validation accuracy."""
    from classifier.model.artifacts import read_metadata

    started = time.perf_counter()
    job = bench.wait(bench.submit(name, config).id)
    seconds = time.perf_counter() - started
    if job.state != "done":
        raise SystemExit(f"{name}: {job.state}: {job.message}")
    meta = read_metadata(config.out)
    steps = "  ".join(f"{step.split('_')[0]} {meta.timing[step]:.1f}" for step in STEPS if step in meta.timing)
    print(f"{name:32} {seconds:6.1f} s   ({steps}; s)   val accuracy {meta.val_accuracy:.4f}   {uptime_load()}")


def corrections(data: Path, count: int, work: Path) -> list[tuple[str, Path]]:
    """`count` new photos, split over the classes: each class's last photos mirrored, as (class, file)."""
    from PIL import Image

    classes = sorted(p for p in data.iterdir() if p.is_dir())
    made = []
    for index, folder in enumerate(classes):
        share = count // len(classes) + (index < count % len(classes))
        for original in sorted(folder.iterdir())[-share:]:
            path = work / f"new-{folder.name}-{original.stem}.jpg"
            ImageOps.mirror(Image.open(original).convert("RGB")).save(path, quality=90)
            made.append((folder.name, path))
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder of class folders (or train/ and validation/ holding them)")
    parser.add_argument("--new", type=int, default=20, help="corrections added before the retrain (default 20)")
    parser.add_argument("--per-class", type=int, help="only the first N photos of each class")
    parser.add_argument("--image-size", type=int, help="the tab's image size field (default: the tab's default)")
    parser.add_argument("--code", help="run another checkout's classifier package (e.g. ../main)")
    args = parser.parse_args()

    from classifier.data import trainset
    from classifier.serving.limits import Limits
    from classifier.serving.workbench import DEFAULT_BACKBONE, EPOCHS, IMAGE_SIZE, Workbench, tab_config

    print(f"machine: {machine()}\ncode: {CODE}")
    size = args.image_size or IMAGE_SIZE
    print(f"the tab's defaults: {DEFAULT_BACKBONE}, {size} px, {EPOCHS} epochs")
    limits = Limits(training=True, max_class_images=10**6, max_train_mb=10**6)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        images = {label: files[: args.per_class] for label, files in trainset.folder_images(args.data).items()}
        started = time.perf_counter()
        folder = trainset.build(work / "models", "photos", images, limits)
        count = sum(trainset.class_counts(folder).values())
        print(f"import {count} photos into the training folder: {time.perf_counter() - started:.1f} s")
        config = tab_config(folder, work / "models" / "photos", image_size=size, cache_dir=str(work / "cache"))
        bench = Workbench(limits)
        timed_job(bench, "cold train (empty cache)", config)

        started = time.perf_counter()
        for label, path in corrections(
            args.data / "train" if (args.data / "train").is_dir() else args.data, args.new, work
        ):
            trainset.add(folder, label, path, path.name)
        print(f"add {args.new} corrections: {time.perf_counter() - started:.1f} s")
        timed_job(bench, f"retrain, +{args.new} corrections", config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
