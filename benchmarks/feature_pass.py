"""The backbone feature pass against the backbone's own throughput on this machine, in TensorFlow and in LiteRT.

    python benchmarks/feature_pass.py ../shared/data/cats_dogs \
        --weights ../shared/weights/inception_v3_no_top_to_mixed8.h5
    python benchmarks/feature_pass.py DATA --weights FILE --backbone mobilenet_v2 --alpha 0.35 [--images 600]
    python benchmarks/feature_pass.py DATA --weights FILE --engines tensorflow,litert --passes "training photos" \
        --images 300 [--litert-threads 1,2]
    python benchmarks/feature_pass.py DATA --backbone efficientnet_lite2 \
        --weights ../shared/weights/efficientnet_lite2_imagenet_notop.keras --image-size 260 \
        --engines tensorflow,litert --passes "training photos" --images 300

For each engine of --engines (training/engine.py; default tensorflow):
0. litert only: the conversion on a cold machine (an empty LiteRT cache): its seconds, as training's first
   LiteRT pass pays them (litert.litert_features: SavedModel, converter, the check, the cache write).
1. The floor: the extractor in that engine called on batches already in memory (random pixels at the model's
   size), no input pipeline: images/s.
2. The feature pass as training runs it (`features.cached_features`, empty cache): decode, resize,
   augmentation, the extractor and the cache writes, for --images training photos as they are,
   as an augmented copy, and --images validation photos: images/s each, and as a share of the floor.
3. A training run's whole pass, as `train` makes it (one input pipeline): the --images training photos
   as they are and as each of the default run's augmented copies, then the validation photos.
With --litert-threads, LiteRT's floor and passes are timed at each XNNPACK thread count (training uses every core
this process may run on) to see whether XNNPACK and tf.data's decoding threads fight. Then, from the two engines'
"training photos" rates and the conversion's time: the pass size from which converting pays
(engine.CONVERT_FROM_IMAGES is set from it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from _common import machine, uptime_load

from classifier._tf import tf
from classifier.config import TrainConfig
from classifier.console import silent
from classifier.data.pipeline import load_image_data
from classifier.model import litert
from classifier.model.backbones import resolve
from classifier.model.network import build_model, feature_extractor
from classifier.model.tflite import LiteRTModel
from classifier.training.engine import backbone_pass
from classifier.training.features import FeatureCache, cached_features

PASSES = ("training photos", "augmented copy", "validation photos", "whole run")


def floor(extract, batch: int, images: int, size: tuple[int, int]) -> tuple[float, float]:
    """Images/s of `extract` on a ready batch, over about `images` images (after two warm-up calls), and the
    process's CPU milliseconds an image (all threads: on a shared machine, the figure the load inflates least)."""
    pixels = tf.random.uniform([batch, *size, 3], 0, 255, seed=0).numpy()
    for _ in range(2):
        extract(pixels)
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while done < images:
        extract(pixels)
        done += batch
    return done / (time.perf_counter() - started), 1000 * (time.process_time() - cpu) / done


def engine_calls(
    extractor, config: TrainConfig, engine: str, threads: list[int], warm: bool = False
) -> tuple[dict[str, object], float]:
    """The batch calls to time for `engine`, by label (for litert, one per XNNPACK thread count, on the conversion
    made here in an empty LiteRT cache, or the user's cache when `warm`), and the conversion's seconds (0 for
    tensorflow)."""
    pinned = TrainConfig(**{**config.to_dict(), "feature_engine": engine})
    if engine == "tensorflow":
        return {"tensorflow": backbone_pass(extractor, config.image_shape, pinned, silent)}, 0.0
    if not warm:
        os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="litert-cold-")  # a cold machine: nothing converted
    started, cpu = time.perf_counter(), time.process_time()
    extract = backbone_pass(extractor, config.image_shape, pinned, print)
    extract.start(0)
    seconds = time.perf_counter() - started
    what = (
        "the LiteRT call made (--warm: converted only if the cache lacked it)"
        if warm
        else "conversion on a cold machine"
    )
    print(f"{what}, checked and cached: {seconds:.1f} s ({time.process_time() - cpu:.1f} s CPU)")
    if extract.engine != "litert":
        return {}, seconds
    calls = {f"litert, {litert.cpu_count()} threads": extract}
    converted = litert.cache_dir() / f"{litert.cache_key(extractor, config.image_shape)}.tflite"
    for count in threads:
        if count != litert.cpu_count():
            model = LiteRTModel(path=converted, threads=count)
            calls[f"litert, {count} thread(s)"] = pinned_call(model, extract.shape)
    return calls, seconds


def pinned_call(model: LiteRTModel, shape: tuple):
    """`model` as a batch call with the interface `features.compute` takes (its engine is chosen already)."""

    def call(batch):
        return model(batch.numpy() if hasattr(batch, "numpy") else batch)

    call.shape, call.start = shape, lambda images: "litert"
    return call


def time_passes(extract, config: TrainConfig, data, images: int, names: list[str]) -> dict[str, float]:
    """Images/s of each named pass over subsets of `data` of about `images` photos, each in an empty cache."""
    train, validation = (
        split.subset(range(0, len(split), max(1, len(split) // images))) for split in (data.train, data.validation)
    )
    train_hashes, validation_hashes = train.content_hashes(), validation.content_hashes()
    whole = [(train, train_hashes, copy) for copy in range(1 + config.augment_copies)]
    passes = {
        "training photos": [(train, train_hashes, 0)],
        "augmented copy": [(train, train_hashes, 1)],
        "validation photos": [(validation, validation_hashes, 0)],
        "whole run": [*whole, (validation, validation_hashes, 0)],
    }
    with tempfile.TemporaryDirectory() as folder:  # untimed: the pipeline's one-off tracing, whichever engine is first
        cache = FeatureCache.for_config(resolve(TrainConfig(**{**config.to_dict(), "cache_dir": folder})))
        warm_up = validation.subset(range(min(len(validation), config.batch_size)))
        hashes = warm_up.content_hashes()
        cached_features(extract, [(warm_up, hashes, 0), (warm_up, hashes, 1)], cache, config, silent)
    rates = {}
    for name in names:
        with tempfile.TemporaryDirectory() as folder:
            cache = FeatureCache.for_config(resolve(TrainConfig(**{**config.to_dict(), "cache_dir": folder})))
            count = sum(len(hashes) for _, hashes, _ in passes[name])
            started, cpu = time.perf_counter(), time.process_time()
            cached_features(extract, passes[name], cache, config, silent)
            rates[name] = count / (time.perf_counter() - started)
            cpu_ms = 1000 * (time.process_time() - cpu) / count
            print(f"  feature pass, {name:18}: {rates[name]:6.1f} images/s, {cpu_ms:5.1f} ms of CPU an image ({count})")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="folder with train/ and validation/ class folders")
    parser.add_argument("--weights", default="imagenet", help="backbone weights file")
    parser.add_argument("--backbone", default="inception_v3")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, help="the model's size (default: the backbone's)")
    parser.add_argument("--images", type=int, default=600, help="images per pass (default 600)")
    parser.add_argument("--engines", default="tensorflow", help="comma-separated: tensorflow, litert")
    parser.add_argument("--passes", default=",".join(PASSES), help=f"comma-separated, of: {', '.join(PASSES)}")
    parser.add_argument("--litert-threads", default="", help="comma-separated XNNPACK thread counts to time too")
    parser.add_argument("--warm", action="store_true", help="use the user's LiteRT cache (converting only if needed)")
    parser.add_argument("--code", help="run another checkout's classifier package (e.g. ../main)")
    args = parser.parse_args()

    options = dict(data=args.data, backbone=args.backbone, alpha=args.alpha, image_size=args.image_size)
    config = resolve(TrainConfig(**options, weights=args.weights))
    print(f"machine: {machine()}; {uptime_load()}")
    data = load_image_data(args.data, log=silent)
    extractor = feature_extractor(build_model(config, len(data.class_names)))
    threads = [int(count) for count in args.litert_threads.split(",") if count]
    names = [name.strip() for name in args.passes.split(",")]
    rates, conversion = {}, 0.0
    for engine in args.engines.split(","):
        calls, seconds = engine_calls(extractor, config, engine.strip(), threads, args.warm)
        conversion = max(conversion, seconds)
        for label, extract in calls.items():
            rate, cpu_ms = max(
                floor(extract, batch, args.images, config.image_shape) for batch in (config.batch_size, 64)
            )
            print(f"{label}: extractor on ready batches {rate:6.1f} images/s, {cpu_ms:5.1f} ms of CPU an image")
            print(f"  {uptime_load()}")
            rates.setdefault(engine.strip(), time_passes(extract, config, data, args.images, names))
    if not args.warm:  # a warm run's conversion time is a cache load's
        crossover(rates, conversion, names[0])
    print(uptime_load())


def crossover(rates: dict, conversion: float, name: str) -> None:
    """The pass size from which converting first pays: conversion seconds / seconds saved per image."""
    if {"tensorflow", "litert"} <= rates.keys():
        saved = 1 / rates["tensorflow"][name] - 1 / rates["litert"][name]
        pays = f"from about {conversion / saved:.0f} images" if saved > 0 else "never: LiteRT is not faster here"
        print(f"converting pays ({name}, {conversion:.1f} s conversion): {pays}")


if __name__ == "__main__":
    main()
