"""Decoding cost: `Predictor.pixels` on big photos, and the app's peak memory under hostile uploads.

    python benchmarks/decode.py [--model DIR] [--load worst|phone] [--uploads 4] [--n 5]

1. The median time of `Predictor.pixels` on a 12 MP JPEG and a 12 MP PNG (4000 x 3000, RGB; a
   cats_dogs photo scaled up when ../shared is there, else smooth noise), over --n calls.
2. `python app.py --model DIR` in a subprocess, sent uploads all at once through gradio_client
   threads: its idle RSS and its peak RSS (VmHWM) while they are decoded. `--load worst`: --uploads
   copies of the costliest PNG the app accepts (16-bit RGBA just under the pixel limit) and every
   file of tests/hostile.py. `--load phone`: --uploads 12 MP RGBA PNGs, safe to run on code that
   keeps float copies of the whole image.

Without --model a throwaway model is trained first (simple_cnn from scratch, 224 px, one epoch).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import ROOT, machine
from PIL import Image

sys.path.insert(0, str(ROOT / "tests"))
PHOTOS = ROOT.parent / "shared" / "data" / "cats_dogs" / "train" / "cats"


def photo(size=(4000, 3000)) -> Image.Image:
    """A photo-like RGB image of `size`: a real photo scaled up when one is at hand, else smooth noise."""
    if PHOTOS.is_dir():
        return Image.open(sorted(PHOTOS.iterdir())[0]).convert("RGB").resize(size, Image.BICUBIC)
    noise = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    return Image.fromarray(noise).resize(size, Image.BICUBIC)


def throwaway_model(folder: Path) -> Path:
    from classifier.config import TrainConfig
    from classifier.shapes import make_shapes_dataset
    from classifier.train import train

    data = make_shapes_dataset(folder / "data", per_class=8, size=64)
    config = TrainConfig(
        data=str(data), out=str(folder / "model"), backbone="simple_cnn", weights="none", image_size=224, epochs=1
    )
    return train(config, log=lambda *_: None).model_dir


def time_pixels(model: Path, folder: Path, n: int) -> None:
    from classifier.predict import Predictor

    predictor = Predictor(model)
    image = photo()
    files = {"12 MP JPEG": folder / "photo.jpg", "12 MP PNG": folder / "photo.png"}
    image.save(files["12 MP JPEG"], quality=90)
    image.save(files["12 MP PNG"])
    for what, path in files.items():
        predictor.pixels(path)  # warm-up
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            predictor.pixels(path)
            samples.append(time.perf_counter() - started)
        median = statistics.median(samples) * 1000
        print(f"Predictor.pixels, {what} ({path.stat().st_size / 1e6:.1f} MB): median {median:.0f} ms")


def upload_files(load: str, uploads: int, folder: Path) -> list[Path]:
    if load == "phone":
        path = folder / "phone_rgba.png"
        image = photo()
        image.putalpha(200)
        image.save(path)
        return [path] * uploads
    import hostile

    largest = folder / "largest_accepted.png"
    largest.write_bytes(hostile.largest_accepted_png())
    corpus = []
    for name, (data, _) in hostile.corpus().items():
        (folder / name).write_bytes(data)
        corpus.append(folder / name)
    return [largest] * uploads + corpus


def peak_rss(model: Path, load: str, uploads: int, folder: Path) -> None:
    from conftest import free_port
    from gradio_client import Client, handle_file
    from hostile import running_app, status_kb

    files = upload_files(load, uploads, folder)
    with running_app(model, free_port(), folder / "app.log") as (app, url):
        client = Client(url, verbose=False)
        warm_up = folder / "warm_up.png"
        photo((400, 300)).save(warm_up)
        client.predict(handle_file(str(warm_up)), api_name="/predict")  # the first call traces the model
        idle = status_kb(app.pid, "VmRSS")
        outcomes: list[str] = []

        def send(path: Path) -> None:
            try:
                client.predict(handle_file(str(path)), api_name="/predict")
                outcomes.append("answered")
            except Exception as error:  # the app's refusal of a hostile file arrives as an AppError
                outcomes.append(type(error).__name__)

        started = time.perf_counter()
        threads = [threading.Thread(target=send, args=(path,)) for path in files]  # all at once
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        peak = status_kb(app.pid, "VmHWM")
        counts = {outcome: outcomes.count(outcome) for outcome in sorted(set(outcomes))}
        print(
            f"app under --load {load} ({len(files)} uploads at once): idle RSS {idle / 1024:.0f} MB, "
            f"peak {peak / 1024:.0f} MB (+{(peak - idle) / 1024:.0f} MB) in {elapsed:.1f} s; {counts}; "
            f"still serving: {app.poll() is None}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder (default: train a throwaway one)")
    parser.add_argument("--load", choices=("worst", "phone"), default="worst")
    parser.add_argument(
        "--uploads", type=int, default=4, help="uploads sent at once (default 4, the app's --concurrency)"
    )
    parser.add_argument("--n", type=int, default=5, help="timed calls per image (default 5)")
    parser.add_argument("--skip-app", action="store_true", help="time Predictor.pixels only")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        model = args.model or throwaway_model(work)
        time_pixels(model, work, args.n)
        if not args.skip_app:
            peak_rss(model, args.load, args.uploads, work)


if __name__ == "__main__":
    main()
