"""Predict latency through the Predictor, per engine: one image at a time (p50/p99) and batches (images/s).

    python benchmarks/predict_latency.py MODEL_DIR [IMAGE_FOLDER] [--n 200] [--engines litert,tensorflow]

For each engine (inference/runtime.py), in one run: the load, the model call alone on pixels already at
the model's size, and the whole `Predictor.predict(path)` (read, decode, EXIF, resize, call). The
litert load converts the backbone when ~/.cache/classifier/litert lacks it (its line says so; set
XDG_CACHE_HOME to an empty folder to time that). Without a folder the images are random pixels of 375x500.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine, percentile
from PIL import Image

from classifier.data.images import image_files
from classifier.model.artifacts import ENGINES
from classifier.predict import Predictor


def timed(function, n: int) -> list[float]:
    function()  # warm-up: tracing happens here, not in the figures
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("images", nargs="?", type=Path, help="folder of images to predict (default: random pixels)")
    parser.add_argument("--n", type=int, default=200, help="single-image calls to time (default 200)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--engines", default="litert,tensorflow", help=f"engines to time, in order, of {', '.join(ENGINES)}"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for engine in args.engines.split(","):
        bench(args, engine)


def bench(args, engine: str) -> None:
    lines: list[str] = []
    started = time.perf_counter()
    predictor = Predictor(args.model_dir, engine=engine, log=lines.append)
    loaded = time.perf_counter() - started
    rng = np.random.default_rng(0)
    if args.images:
        files = image_files(args.images)[: args.n]
    else:
        folder = Path(tempfile.mkdtemp())
        files = []
        for i in range(20):
            path = folder / f"{i}.png"
            Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(path)
            files.append(path)
    pixels = predictor.pixels(files[0])[None]
    batch = np.repeat(pixels, args.batch_size, axis=0)

    print(
        f"\nengine {engine} (running: {predictor.engine}); model: {args.model_dir} ({predictor.metadata.backbone}, "
        f"{predictor.image_size[0]} px); load {loaded:.1f} s{''.join(f'; {line}' for line in lines)}"
    )
    call = timed(lambda: predictor.probabilities_of_pixels(pixels), args.n)
    counter = iter(range(10**9))
    whole = timed(lambda: predictor.predict(files[next(counter) % len(files)]), args.n)
    for name, samples in (("model call, 1 image", call), ("Predictor.predict(path)", whole)):
        print(f"{name:26} p50 {percentile(samples, 50):6.1f} ms   p99 {percentile(samples, 99):6.1f} ms")
    batches = timed(lambda: predictor.probabilities_of_pixels(batch), max(5, args.n // 20))
    print(
        f"batches of {args.batch_size:<3}              {args.batch_size / (np.median(batches) / 1000):6.1f} images/s "
        f"(median batch {np.median(batches):.0f} ms)"
    )


if __name__ == "__main__":
    main()
