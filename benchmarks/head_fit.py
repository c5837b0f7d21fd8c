"""The head's epochs on cached features: seconds and validation accuracy, per backbone.

    python benchmarks/head_fit.py ../shared/data/cats_dogs --weights-dir ../shared/weights
    python benchmarks/head_fit.py DATA --weights-dir DIR --only inception_v3 --seeds 0 1 2 --code ../main

For each backbone (InceptionV3 to mixed7, MobileNetV2 0.35 and 1.0, each with its shared weights
file and every other option at its default), a first `train()` fills the feature cache unless
--cache-dir already holds it (minutes, not timed), then a second one on the warm cache is timed:
`head_seconds` from its metadata.json (compiling the head, its epochs with their validation and
per-epoch checkpoints, and saving the finished stage), and the saved model's validation accuracy.
Each seed (--seeds) has its own augmented copies, so a new seed computes them first.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import CODE, machine, uptime_load

RUNS = {
    "inception_v3": dict(backbone="inception_v3", weights="inception_v3_no_top_to_mixed8.h5"),
    "mobilenet_v2_0.35": dict(backbone="mobilenet_v2", alpha=0.35, weights="mobilenet_v2_0.35_224_no_top.h5"),
    "mobilenet_v2_1.0": dict(backbone="mobilenet_v2", alpha=1.0, weights="mobilenet_v2_1.0_224_no_top.h5"),
}


def main() -> None:
    from classifier.config import TrainConfig
    from classifier.train import train
    from classifier.training.features import default_cache_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="folder with train/ and validation/ class folders")
    parser.add_argument("--weights-dir", type=Path, required=True, help="folder of the shared weight files")
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), help="these backbones only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="--seed values to time (default 0)")
    parser.add_argument("--batch-size", type=int, help="--batch-size (default: the project's)")
    parser.add_argument("--feature-batch-size", type=int, help="--feature-batch-size (default: the project's)")
    parser.add_argument("--cache-dir", default=str(default_cache_dir()), help="feature cache (default: the user's)")
    parser.add_argument("--code", help="run another checkout's classifier package (e.g. ../main)")
    args = parser.parse_args()
    print(f"machine: {machine()}\ncode: {CODE}")
    extra = {name: getattr(args, name) for name in ("batch_size", "feature_batch_size") if getattr(args, name)}
    with tempfile.TemporaryDirectory() as work:
        for name in args.only or RUNS:
            options = {**RUNS[name], "weights": str(args.weights_dir / RUNS[name]["weights"])}
            for seed in args.seeds:
                config = TrainConfig(
                    data=args.data, out=f"{work}/model", overwrite=True, cache_dir=args.cache_dir, seed=seed,
                    **options, **extra,
                )  # fmt: skip
                train(config, log=lambda line: None)  # fills the cache if it must
                load = uptime_load()
                meta = train(config, log=lambda line: None).metadata
                print(
                    f"{name:18} seed {seed}: head {meta.timing['head_seconds']:5.1f} s for "
                    f"{meta.timing['cached_training_vectors']} vectors x {meta.epochs_run} epochs, "
                    f"batch {meta.config.get('feature_batch_size', meta.config['batch_size'])}; "
                    f"val accuracy {meta.val_accuracy:.4f}   "
                    f"({load}; after: {uptime_load()})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
