"""Test accuracy of each recipe on real photos, with the test split held out, against the default's wall time.

    python benchmarks/accuracy.py --weights-dir ../shared/weights
    python benchmarks/accuracy.py --weights-dir ../shared/weights --sets trashnet --recipes default,accurate --seeds 3

For each photo set (`--data-root`/NAME with `train/` and `validation/`), the set's `validation/` folder is the
TEST split (a `test/` folder beside `train/`, through symlinks in a temporary folder) and never reaches training:
the recipe's own validation is 20% of `train/`, drawn by the seed. Each recipe is a `--preset` (or `default`,
the course's InceptionV3 `mixed7` recipe) trained by `classifier.train.train`:

- seed 0 runs COLD: an empty feature cache and an empty LiteRT conversion cache (both in a fresh temporary
  folder), so its wall time is what a first run costs; the ratio to the default recipe's cold time is printed;
- seeds 1.. run warm (the same caches: other validation draws, other head initialisations), for the spread.

Prints, per set and recipe: test accuracy of seed 0, the mean over seeds with its standard error (the spread of
the seeds' figures / sqrt(seeds)), the binomial standard error of one run on that many test photos, validation
accuracy, and wall time. Model Maker's published figures are printed beside them, labelled as theirs: they are on
other photo sets (Model Maker publishes none for these two), so they are a bar, not a same-set comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, uptime_load

from classifier.config import TrainConfig
from classifier.train import train

SETS = ("cats_dogs", "trashnet")
RECIPES = ("default", "accurate")
# Published by Google for MediaPipe / TFLite Model Maker's image classifier (their figures, their photo sets),
# as issue 24 quotes them: EfficientNet-Lite0, the tf_flowers photos (5 classes), test split.
MODEL_MAKER = "Model Maker, EfficientNet-Lite0 on tf_flowers (published, not run here): test accuracy 0.913-0.915"


def held_out_layout(photos: Path, work: Path) -> Path:
    """A data folder whose train/ is the set's train/ and whose test/ is the set's validation/ (symlinks)."""
    data = work / photos.name
    data.mkdir()
    (data / "train").symlink_to((photos / "train").resolve())
    (data / "test").symlink_to((photos / "validation").resolve())
    return data


def run(data: Path, recipe: str, seed: int, weights_dir: str, caches: Path, work: Path) -> dict:
    """One training run of `recipe` at `seed`, with its feature and LiteRT caches under `caches`."""
    os.environ["XDG_CACHE_HOME"] = str(caches)  # LiteRT's conversion cache (and anything else user-cached)
    config = TrainConfig(
        data=str(data),
        out=str(work / f"model-{recipe}-{seed}"),
        cache_dir=str(caches / "features"),
        seed=seed,
        weights_dir=weights_dir,
        preset=None if recipe == "default" else recipe,
    )
    print(f"  {recipe}, seed {seed}: {uptime_load()}", flush=True)
    started = time.time()
    result = train(config, log=lambda line: print("    " + line, flush=True))
    seconds = time.time() - started
    meta = result.metadata
    test = meta.test or {}
    return {
        "recipe": recipe,
        "seed": seed,
        "backbone": meta.config["backbone"],
        "test_accuracy": test.get("accuracy"),
        "test_images": test.get("count"),
        "val_accuracy": meta.val_accuracy,
        "seconds": seconds,
    }


def summarise(runs: list[dict]) -> dict:
    accuracies = [r["test_accuracy"] for r in runs]
    mean = sum(accuracies) / len(accuracies)
    spread = math.sqrt(sum((a - mean) ** 2 for a in accuracies) / (len(accuracies) - 1)) if len(runs) > 1 else None
    first = runs[0]
    n = first["test_images"]
    return {
        "recipe": first["recipe"],
        "backbone": first["backbone"],
        "cold_test_accuracy": first["test_accuracy"],
        "mean_test_accuracy": mean,
        "seeds_standard_error": spread / math.sqrt(len(runs)) if spread is not None else None,
        "binomial_standard_error": math.sqrt(first["test_accuracy"] * (1 - first["test_accuracy"]) / n),
        "test_images": n,
        "val_accuracy": first["val_accuracy"],
        "cold_seconds": first["seconds"],
        "seeds": len(runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights-dir", required=True, help="the backbones' weights files (../shared/weights)")
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated sets under --data-root ({SETS})")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated: default and preset names")
    parser.add_argument("--seeds", type=int, default=3, help="runs per recipe: the first cold, the others warm")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    recipes = args.recipes.split(",")
    report = {"machine": machine(), "weights_dir": args.weights_dir, "sets": {}}
    for name in args.sets.split(","):
        with tempfile.TemporaryDirectory(prefix="accuracy-") as folder:
            work = Path(folder)
            data = held_out_layout(Path(args.data_root) / name, work)
            rows = []
            for recipe in recipes:
                caches = work / f"caches-{recipe}"
                print(f"{name}: {recipe}", flush=True)
                runs = [run(data, recipe, seed, args.weights_dir, caches, work) for seed in range(args.seeds)]
                rows.append(summarise(runs))
            report["sets"][name] = rows
            print_table(name, rows)
    print(f"\nmachine: {report['machine']}\n{MODEL_MAKER}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def print_table(name: str, rows: list[dict]) -> None:
    default = next((r for r in rows if r["recipe"] == "default"), rows[0])
    print(f"\n{name}: test split = its validation/ folder ({rows[0]['test_images']} photos), never trained on")
    header = f"{'recipe':10} {'backbone':34} {'test (seed 0)':>13} {'mean ± s.e. (seeds)':>22} {'val':>6}"
    print(f"{header} {'cold':>7} {'x':>5}")
    for r in rows:
        spread = f"± {r['seeds_standard_error']:.4f}" if r["seeds_standard_error"] is not None else ""
        print(
            f"{r['recipe']:10} {r['backbone']:34} {r['cold_test_accuracy']:13.4f} "
            f"{r['mean_test_accuracy']:>13.4f} {spread:8} ({r['seeds']}) {r['val_accuracy']:6.3f} "
            f"{r['cold_seconds']:6.0f}s {r['cold_seconds'] / default['cold_seconds']:4.1f}x"
        )
    print(
        f"(binomial standard error of one run on {rows[0]['test_images']} photos: "
        + ", ".join(f"{r['recipe']} {r['binomial_standard_error']:.4f}" for r in rows)
        + ")"
    )


if __name__ == "__main__":
    sys.exit(main())
