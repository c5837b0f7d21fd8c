"""One request through the app's API against a do-nothing Gradio app: what the app adds on top of Gradio.

    python benchmarks/app_latency.py MODEL_DIR [IMAGE_FOLDER] [--n 100]

Starts two servers on loopback, each in its own process: the real app (`python app.py --model
MODEL_DIR`) and a do-nothing Gradio Blocks with the same input and output components (an Image
taken as a file path, the model Dropdown, a Label of the top 5), the same event settings
(`preprocess=False`, concurrency 4 in one group) and the same queue (`api_open=False`, at most 64
waiting), whose event returns a constant label. Then calls `/predict` on each through
`gradio_client`, one call at a time, alternating between the two so that both see the same
machine, `--n` times each (after 5 warm-up calls), each call uploading the photo as `handle_file`
does. Prints p50 and p90 of both and the difference of the p50s. Without a folder, the photos are
the cats_dogs validation photos from ../shared when present, else random pixels.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import CODE, ROOT, free_port, machine, percentile
from PIL import Image

PHOTOS = ROOT.parent / "shared" / "data" / "cats_dogs" / "validation" / "cats"


def null_app(port: int) -> None:
    """The do-nothing app: the page's predict event, components and queue, and no work."""
    import gradio as gr

    from classifier.serving.limits import DEFAULT_LIMITS as limits

    with gr.Blocks() as demo:
        model = gr.Dropdown(["model"], value="model", label="Model", visible=False)
        image = gr.Image(sources=["upload", "clipboard", "webcam"], type="filepath", image_mode=None, label="Image")
        button = gr.Button("Classify")
        label = gr.Label(num_top_classes=5, label="Prediction")
        button.click(
            lambda upload, name: {"cats": 0.97, "dogs": 0.03},
            [image, model],
            label,
            preprocess=False,
            api_name="predict",
            concurrency_limit=limits.concurrency,
            concurrency_id="predict",
        )
    demo.queue(api_open=False, default_concurrency_limit=limits.concurrency, max_size=limits.max_queue)
    demo.launch(server_name="127.0.0.1", server_port=port, max_file_size=limits.max_upload, quiet=True)


def photos(folder: Path | None, work: Path, count: int = 20) -> list[Path]:
    from classifier.data.images import image_files

    source = folder or (PHOTOS if PHOTOS.is_dir() else None)
    if source:
        return image_files(source)[:count]
    rng = np.random.default_rng(0)
    paths = [work / f"{i}.jpg" for i in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("images", nargs="?", type=Path, help="folder of photos to send (default: see above)")
    parser.add_argument("--n", type=int, default=100, help="timed calls to each app (default 100)")
    parser.add_argument("--null-app-port", type=int, help=argparse.SUPPRESS)  # how the do-nothing app is started
    args = parser.parse_args()
    if args.null_app_port:
        return null_app(args.null_app_port)

    from gradio_client import Client, handle_file

    print(f"machine: {machine()}\nmodel: {args.model_dir}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        files = photos(args.images, work)
        app_port, null_port = free_port(), free_port()
        app = [sys.executable, "app.py", "--model", str(args.model_dir), "--port", str(app_port)]
        null = [sys.executable, str(Path(__file__).resolve()), str(args.model_dir), "--null-app-port", str(null_port)]
        sys.path.insert(0, str(ROOT / "tests"))
        from hostile import running_server  # the tests' way of starting a server and waiting for it

        app_server = running_server(app, app_port, work / "app.log", cwd=CODE)
        with app_server, running_server(null, null_port, work / "null.log", cwd=CODE):
            clients = {
                "the app": Client(f"http://127.0.0.1:{app_port}/", verbose=False),
                "do-nothing Gradio app": Client(f"http://127.0.0.1:{null_port}/", verbose=False),
            }
            samples: dict[str, list[float]] = {name: [] for name in clients}
            for i in range(5 + args.n):
                for name, client in clients.items():
                    started = time.perf_counter()
                    client.predict(handle_file(str(files[i % len(files)])), api_name="/predict")
                    if i >= 5:  # the first calls trace the model and warm Gradio up
                        samples[name].append((time.perf_counter() - started) * 1000)
    for name, values in samples.items():
        print(f"{name:24} p50 {percentile(values, 50):6.1f} ms   p90 {percentile(values, 90):6.1f} ms")
    app_p50, null_p50 = (percentile(values, 50) for values in samples.values())
    print(f"the app adds {app_p50 - null_p50:.1f} ms at p50 ({args.n} calls each, {len(files)} photos)")


if __name__ == "__main__":
    main()
