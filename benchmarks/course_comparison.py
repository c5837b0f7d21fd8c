"""Real transfer learning, measured: this project's default recipe against the course's, same data and weights.

    python benchmarks/course_comparison.py ../shared/data/cats_dogs \
        --weights ../shared/weights/inception_v3_no_top_to_mixed8.h5
    python benchmarks/course_comparison.py DATA --weights FILE --backbone mobilenet_v2 --alpha 0.35

Prints validation accuracy, wall time split into the backbone feature pass and head training,
and images/s, for a cold feature cache and a warm one; then runs the course recipe (tf_keras
ImageDataGenerator, see course_recipe.py) and prints both side by side with the ratio of wall
times. `--course-epochs` (default 20, the course's) trades faithfulness for time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, uptime_load

from classifier.config import TrainConfig
from classifier.train import train


def run_ours(data: str, weights: str, overrides: dict, cache_dir: str) -> dict:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise SystemExit(f"error: this version of classifier has no option {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(data=data, weights=weights, out=f"{out}/model", cache_dir=cache_dir, **overrides)
        print(f"  {uptime_load()}")
        started = time.time()
        result = train(config, log=lambda line: print("  " + line))
        seconds = time.time() - started
        print(f"  {uptime_load()}")
    meta = result.metadata
    timing = meta.timing
    passes = timing.get("cached_training_vectors", 0) + meta.data.validation_images
    return {
        "config": {
            **{
                k: v
                for k, v in meta.config.items()
                if k
                in ("backbone", "alpha", "head_pooling", "dense_units", "epochs", "augment_copies", "learning_rate")
            },
            "image_size": meta.image_size[0],
        },
        "val_accuracy": meta.val_accuracy,
        "best_val_accuracy": meta.best_val_accuracy,
        "seconds": seconds,
        "features_seconds": timing.get("features_seconds"),
        "head_seconds": timing.get("head_seconds"),
        "backbone_passes": passes,
        "train_images": meta.data.train_images,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="folder with train/ and validation/ class folders (e.g. ../shared/data/cats_dogs)")
    parser.add_argument(
        "--weights", required=True, help="Keras weights file of the backbone (e.g. ../shared/weights/...)"
    )
    parser.add_argument("--backbone", default="inception_v3")
    parser.add_argument("--alpha", type=float, help="MobileNetV2 width")
    parser.add_argument("--image-size", type=int, help="our recipe's image size (default: the backbone's)")
    parser.add_argument(
        "--augment-copies", type=int, help="our recipe's cached augmented copies (default: the backbone's)"
    )
    parser.add_argument("--epochs", type=int, help="our recipe's head epochs (default: the project's)")
    parser.add_argument(
        "--course-epochs", type=int, default=20, help="epochs of the course recipe (default 20, as the course)"
    )
    parser.add_argument("--no-course", action="store_true", help="skip the course recipe")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    overrides = {"backbone": args.backbone}
    for name in ("alpha", "image_size", "augment_copies", "epochs"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    report = {
        "machine": machine(),
        "data": args.data,
        "weights": args.weights,
        "backbone": args.backbone,
        "alpha": args.alpha,
    }

    with tempfile.TemporaryDirectory() as cache_dir:
        print(f"this project, cold feature cache ({args.backbone}, weights {args.weights}):")
        report["ours_cold"] = run_ours(args.data, args.weights, overrides, cache_dir)
        print("this project, warm feature cache (same settings, second run):")
        report["ours_warm"] = run_ours(args.data, args.weights, overrides, cache_dir)

    if not args.no_course:
        import course_recipe

        print(f"course recipe ({args.course_epochs} epochs):")
        report["course"] = course_recipe.run(
            args.data, args.weights, args.course_epochs, args.backbone, args.alpha or 1.0
        )

    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def print_report(report: dict) -> None:
    cold, warm = report["ours_cold"], report["ours_warm"]
    print(f"\nmachine: {report['machine']}")
    print(f"data: {report['data']}   weights: {report['weights']}")
    print(f"this project: {cold['config']}")
    rate = cold["backbone_passes"] / cold["features_seconds"] if cold["features_seconds"] else float("nan")
    rows = [
        (
            "this project, cold cache",
            cold["val_accuracy"],
            cold["seconds"],
            f"features {cold['features_seconds']:.0f} s ({cold['backbone_passes']} images, {rate:.1f} img/s) + head "
            f"{cold['head_seconds']:.1f} s",
        ),
        (
            "this project, warm cache",
            warm["val_accuracy"],
            warm["seconds"],
            f"features {warm['features_seconds']:.1f} s + head {warm['head_seconds']:.1f} s",
        ),
    ]
    course = report.get("course")
    if course:
        accs = ", ".join(f"{a:.3f}" for a in course["val_accuracy"])
        mean_epoch = sum(course["epoch_seconds"]) / len(course["epoch_seconds"])
        rows.append(
            (
                f"course recipe, {len(course['val_accuracy'])} epochs",
                course["val_accuracy"][-1],
                course["seconds"],
                f"{mean_epoch:.0f} s/epoch; val_accuracy by epoch: {accs}",
            )
        )
    print(f"\n{'run':32} {'val acc':>8} {'wall time':>10}   detail")
    for name, acc, seconds, detail in rows:
        print(f"{name:32} {acc:8.4f} {seconds:9.0f}s   {detail}")
    if course:
        print(f"\nwall-time ratio course / this project (cold cache): {course['seconds'] / cold['seconds']:.1f}x")
        projected = 20 * sum(course["epoch_seconds"]) / len(course["epoch_seconds"])
        if len(course["val_accuracy"]) != 20:
            print(
                f"(course run shortened to {len(course['val_accuracy'])} epochs; its 20 epochs would take about "
                f"{projected:.0f} s, "
                f"{projected / cold['seconds']:.1f}x this project's cold run)"
            )


if __name__ == "__main__":
    sys.exit(main())
