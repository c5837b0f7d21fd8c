"""What a visitor can make the server keep on disk with training on: before and after each of the workbench's doors.

    python benchmarks/workbench_disk.py [--code ../main]

Starts `python app.py` (training on, `--max-train-queue 1`, `--max-model-data-mb 50` where the flag exists) in a
subprocess with a temp folder (TMPDIR) of its own, trains one small model from the page, then measures through
the API, as a visitor would, the bytes added to the models folder and the temp folder by:

- 6 Train calls with fresh names (about 7.7 MB of photos each) while the queue is full (one job training, one
  waiting): each is turned away;
- 10 corrections of 11 MB photos to the page-trained model;
- 30 downloads of the model as a zip, fetched; then 30 never fetched;
- and what is left in the temp folder after SIGTERM.

Figures of the checkout it runs (`--code ../main` for main's).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import CODE, ROOT, free_port, machine
from PIL import Image

BACKBONE = "MobileNetV2 0.35 (bundled weights, fastest)"
MIB = 2**20


def size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def noise(path: Path, side: int, seed: int) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    return path


def train_call(client, name: str, photos: dict[str, list[Path]], image_size: int = 32, epochs: int = 3):
    from gradio_client import handle_file

    labels = [*photos, *[""] * (6 - len(photos))]
    uploads = [[handle_file(str(p)) for p in files] for files in photos.values()] + [None] * (6 - len(photos))
    return client.predict(name, BACKBONE, image_size, epochs, None, "", *labels, *uploads, api_name="/train")


def finished(client, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        details = client.predict(api_name="/train_status")[2]
        if details["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return details
        time.sleep(0.5)


def main() -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from classifier.shapes import make_shapes_dataset

    sys.path.insert(0, str(ROOT / "tests"))
    from hostile import running_server  # the tests' way of starting a server and waiting for it

    print(f"machine: {machine()}\ncode: {CODE}")
    work = Path(tempfile.mkdtemp(prefix="workbench-disk-"))
    temp, models, client_dir = work / "tmp", work / "models", work / "client"
    for folder in (temp, client_dir):
        folder.mkdir()
    shapes = make_shapes_dataset(work / "shapes", per_class=12, size=48)
    small = {label: sorted((shapes / label).glob("*.png")) for label in ("circle", "square")}
    big = {label: [noise(work / f"{label}{i}.png", 256, seed=i + 100 * n) for i in range(20)] for n, label in
           enumerate(("cat", "dog"))}  # fmt: skip
    long_job = {label: [noise(work / f"long-{label}{i}.png", 64, seed=i + 1000 * n) for i in range(150)] for n, label in
                enumerate(("left", "right"))}  # fmt: skip
    print(f"one job's photos: {sum(p.stat().st_size for files in big.values() for p in files) / MIB:.1f} MiB")

    port = free_port()
    argv = [sys.executable, "app.py", "--models-dir", str(models), "--port", str(port), "--max-train-queue", "1"]
    if "max-model-data-mb" in (CODE / "app.py").read_text():
        argv += ["--max-model-data-mb", "50"]
    os.environ["TMPDIR"] = str(temp)  # the app's (inherited); this script's own temp files are under `work`
    with running_server(argv, port, work / "app.log", cwd=CODE) as (server, url):
        client = Client(url, verbose=False, download_files=str(client_dir))
        train_call(client, "base", small)
        assert finished(client)["state"] == "done"

        # The queue full: one job training (150 photos a class at 320 px, 100 epochs), one waiting.
        running, waiting, visitor = (Client(url, verbose=False) for _ in range(3))
        train_call(running, "long", long_job, image_size=320, epochs=100)
        train_call(waiting, "waits", small, image_size=320, epochs=100)
        before = size(models)
        refused = 0
        for i in range(6):
            try:
                train_call(visitor, f"fresh{i}", big)
            except AppError as error:
                refused += "--max-train-queue" in str(error)
        print(f"6 Train calls, {refused} turned away: models folder +{(size(models) - before) / MIB:.1f} MiB")
        for session in (waiting, running):
            job = session.predict(api_name="/train_status")[2]["id"]
            session.predict(job, api_name="/train_cancel")
            finished(session)

        photos = [noise(work / f"correction{i}.png", 1900, seed=5000 + i) for i in range(10)]
        before, saved = size(models), 0
        for photo in photos:
            try:
                client.predict(handle_file(str(photo)), "base", "circle", api_name="/correct")
                saved += 1
            except AppError:
                pass
        each = photos[0].stat().st_size / MIB
        print(
            f"10 corrections of {each:.1f} MiB, {saved} saved: models folder +{(size(models) - before) / MIB:.1f} MiB"
        )

        for fetched in (True, False):
            session = Client(url, verbose=False, download_files=str(client_dir) if fetched else False)
            before = size(temp)
            for _ in range(30):
                session.predict("base", "zip", api_name="/download")
            time.sleep(1)
            what = "fetched" if fetched else "never fetched"
            print(f"30 zip downloads, {what}: temp folder +{(size(temp) - before) / MIB:.1f} MiB")
        in_use = size(temp)
    # running_server stops the app with SIGTERM
    print(f"temp folder after SIGTERM: {size(temp) / MIB:.1f} MiB (while serving: {in_use / MIB:.1f} MiB)")
    print(f"(work folder {work}: delete it when done)")


if __name__ == "__main__":
    main()
