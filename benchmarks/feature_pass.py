"""The backbone feature pass against the backbone's own throughput on this machine.

    python benchmarks/feature_pass.py ../shared/data/cats_dogs \
        --weights ../shared/weights/inception_v3_no_top_to_mixed8.h5
    python benchmarks/feature_pass.py DATA --weights FILE --backbone mobilenet_v2 --alpha 0.35 [--images 600]

1. The floor: the traced feature extractor (the same tf.function the pass runs) called on batches
   already in memory (random pixels at the model's size), no input pipeline: images/s.
2. The feature pass as training runs it (`features.cached_features`, empty cache): decode, resize,
   augmentation, the extractor and the cache writes, for --images training photos as they are,
   as an augmented copy, and --images validation photos: images/s each, and as a share of the floor.
3. A training run's whole pass, as `train` makes it (one input pipeline): the --images training photos
   as they are and as each of the default run's augmented copies, then the validation photos.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import machine, uptime_load

from classifier._tf import tf
from classifier.config import TrainConfig
from classifier.console import silent
from classifier.data.pipeline import load_image_data
from classifier.model.backbones import resolve
from classifier.model.network import build_model, feature_extractor
from classifier.training.features import FeatureCache, cached_features, traced


def floor(extract, batch: int, images: int, size: tuple[int, int]) -> float:
    """Images/s of `extract` on a ready batch, over about `images` images (after two warm-up calls)."""
    pixels = tf.random.uniform([batch, *size, 3], 0, 255, seed=0)
    for _ in range(2):
        extract(pixels).numpy()
    done, started = 0, time.perf_counter()
    while done < images:
        extract(pixels).numpy()
        done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="folder with train/ and validation/ class folders")
    parser.add_argument("--weights", required=True, help="backbone weights file")
    parser.add_argument("--backbone", default="inception_v3")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=600, help="images per pass (default 600)")
    parser.add_argument("--code", help="run another checkout's classifier package (e.g. ../main)")
    args = parser.parse_args()

    config = resolve(TrainConfig(data=args.data, weights=args.weights, backbone=args.backbone, alpha=args.alpha))
    print(f"machine: {machine()}; {uptime_load()}")
    data = load_image_data(args.data, log=silent)
    extract = traced(feature_extractor(build_model(config, len(data.class_names))), config.image_shape)
    ready = {batch: floor(extract, batch, args.images, config.image_shape) for batch in (config.batch_size, 64)}
    best = max(ready.values())
    for batch, rate in ready.items():
        print(f"extractor on ready batches of {batch:3d}: {rate:6.1f} images/s")
    train, validation = (
        split.subset(range(0, len(split), max(1, len(split) // args.images))) for split in (data.train, data.validation)
    )
    train_hashes, validation_hashes = train.content_hashes(), validation.content_hashes()
    whole = [(train, train_hashes, copy) for copy in range(1 + config.augment_copies)]
    passes = {
        "training photos": [(train, train_hashes, 0)],
        "augmented copy": [(train, train_hashes, 1)],
        "validation photos": [(validation, validation_hashes, 0)],
        "whole run": [*whole, (validation, validation_hashes, 0)],
    }
    for name, run in passes.items():
        with tempfile.TemporaryDirectory() as folder:
            cache = FeatureCache.for_config(resolve(TrainConfig(**{**config.to_dict(), "cache_dir": folder})))
            images = sum(len(hashes) for _, hashes, _ in run)
            started = time.perf_counter()
            cached_features(extract, run, cache, config, silent)
            rate = images / (time.perf_counter() - started)
        print(f"feature pass, {name:18}: {rate:6.1f} images/s ({images} images), {rate / best:.0%} of the floor")
    print(uptime_load())


if __name__ == "__main__":
    main()
