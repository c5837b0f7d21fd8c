"""A client's predictions on a loaded model while a stranger's request loads another one (with its conversion).

    python benchmarks/load_stall.py [--new tab-289|inception] [--n 20] [--code ../main]

Builds two model folders (weights as the Train tab has them, heads untrained: only time is measured):
`a_served`, the Train tab's default (MobileNetV2 0.35, bundled ImageNet weights, 160 px), and `b_new`,
one whose backbone no cache holds: `--new tab-289` the same backbone at 289 px (a Train-tab job at a
new image size), `--new inception` InceptionV3 to mixed7 at 299 px, random weights (the course's
backbone, the slowest conversion). Starts the real app (`python app.py --models-dir`, which loads
`a_served` before it serves) with an empty LiteRT cache (XDG_CACHE_HOME), times `--n` predictions
of one photo on `a_served` through `gradio_client`, then sends one prediction for `b_new` from
another client and keeps predicting on `a_served` until it is answered. Prints the client's p50
and worst latency alone and during the load, and how long the stranger waited. `--code ../main`
runs another checkout's app (the figure before the change).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import CODE, ROOT, free_port, machine, percentile, uptime_load

NEW = {
    "tab-289": dict(backbone="mobilenet_v2", alpha=0.35, weights="imagenet", image_size=289),
    "inception": dict(backbone="inception_v3", weights="none", cut_layer="mixed7", image_size=299),
}
SERVED = dict(backbone="mobilenet_v2", alpha=0.35, weights="imagenet", image_size=160)


def model_folder(out: Path, options: dict) -> None:
    """A model folder of `options`' backbone with an untrained 2-class head (its answers are not looked at)."""
    from classifier.config import TrainConfig
    from classifier.model.artifacts import save_model_dir
    from classifier.model.backbones import resolve
    from classifier.model.metadata import ModelMetadata
    from classifier.model.network import build_model

    config = resolve(TrainConfig(data=str(out), out=str(out), **options))
    size = (options["image_size"],) * 2
    metadata = ModelMetadata(["cat", "dog"], size, backbone=config.backbone, cut_layer=config.cut_layer)
    save_model_dir(out, build_model(config, 2), metadata)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", choices=NEW, default="tab-289", help="the model loaded meanwhile (default tab-289)")
    parser.add_argument("--n", type=int, default=20, help="predictions timed before the load (default 20)")
    parser.add_argument("--code", help="run this checkout's app instead (e.g. ../main)")
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    sys.path.insert(0, str(ROOT / "tests"))
    from app_latency import photos
    from hostile import running_server  # the tests' way of starting a server and waiting for it

    print(f"machine: {machine()}\napp: {CODE}; loaded meanwhile: {args.new} {NEW[args.new]}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        model_folder(work / "models" / "a_served", SERVED)
        model_folder(work / "models" / "b_new", NEW[args.new])
        image = handle_file(str(photos(None, work, count=1)[0]))
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # empty: b_new's backbone is converted on its load
        port = free_port()
        argv = [sys.executable, "app.py", "--models-dir", str(work / "models"), "--port", str(port)]
        with running_server(argv, port, work / "app.log", cwd=CODE, timeout=600) as (_, url):
            client, stranger = Client(url, verbose=False), Client(url, verbose=False)

            def predict() -> float:
                started = time.perf_counter()
                client.predict(image, "a_served", api_name="/predict")
                return time.perf_counter() - started

            for _ in range(3):  # warm-up: Gradio's first calls
                predict()
            alone = [predict() for _ in range(args.n)]
            waited = []

            def load() -> None:
                started = time.perf_counter()
                stranger.predict(image, "b_new", api_name="/predict")
                waited.append(time.perf_counter() - started)

            thread = threading.Thread(target=load)
            thread.start()
            during = []
            while thread.is_alive():
                during.append(predict())
            thread.join()
        log = (work / "app.log").read_text()
    converted = [line for line in log.splitlines() if "converted in" in line or "predicting with TensorFlow" in line]
    for name, values in (("alone", alone), ("during b_new's load", during)):
        print(
            f"a_served, {name:20} p50 {percentile(values, 50) * 1000:7.0f} ms   worst {max(values) * 1000:7.0f} ms"
            f"   ({len(values)} predictions)"
        )
    print(f"the stranger's first prediction on b_new: {waited[0]:.1f} s; app log: {' | '.join(converted)}")
    print(uptime_load())


if __name__ == "__main__":
    main()
