"""What keeping the Train tab's draft costs the server: a save (at every change of the tab), and a restore (on load).

    python benchmarks/drafts.py [--per-class 100] [--classes 6]

`Drafts.save` runs at each change of a field of the Train tab (the latest only), `Drafts.restore` when a page with a
draft loads. Timed on --classes classes of --per-class TrashNet photos (drawn shapes without ../shared), uploaded
into Gradio's upload folder as the page would: the first save (every photo kept: a hard link when the models folder
is on the uploads' filesystem, else a copy, both measured: /dev/shm is another filesystem), a save with nothing new
(a keystroke in a name), a save with one photo more (a webcam photo), and a restore (every photo put back as an
upload). The median of 20 for the repeated ones.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine, uptime_load

TRASHNET = ROOT.parent / "shared" / "data" / "trashnet" / "train"


def uploads(upload_root: Path, classes: int, per_class: int) -> list[list[str]]:
    """Photos copied into the upload folder, each in a folder of its own (as Gradio stores uploads)."""
    from classifier.shapes import make_shapes_dataset

    source = TRASHNET if TRASHNET.is_dir() else make_shapes_dataset(upload_root / "drawn", per_class=per_class)
    folders = sorted(path for path in source.iterdir() if path.is_dir())[:classes]
    files = []
    for folder in folders:
        paths = []
        for photo in sorted(folder.iterdir())[:per_class]:
            paths.append(shutil.copy(photo, tempfile.mkdtemp(dir=upload_root)))
        files.append(paths)
    return files


def timed(action, repeats: int = 1) -> float:
    """The median seconds of `repeats` runs of `action`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(models: Path, files: list[list[str]], upload_root: Path) -> str:
    """One table row: the save and restore times of a draft of `files` kept in `models`."""
    from classifier.serving.drafts import Drafts, Form
    from classifier.serving.limits import Limits

    drafts = Drafts(models, Limits(training=True))
    labels = [f"class{i}" for i in range(len(files))]

    def form(extra: list[str]) -> Form:
        return Form("bench", None, 224, 10, len(files), labels, [files[0] + extra, *files[1:]])

    start = time.perf_counter()
    token, _ = drafts.save("", form([]))
    first = time.perf_counter() - start
    same = timed(lambda: drafts.save(token, form([])), 20)
    extra = shutil.copy(files[0][0], tempfile.mkdtemp(dir=upload_root))
    more = timed(lambda: drafts.save(token, form([extra])))
    restore = timed(lambda: drafts.restore(token), 5)
    return f"{first:.2f} s | {same * 1000:.1f} ms | {more * 1000:.1f} ms | {restore:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--classes", type=int, default=6)
    args = parser.parse_args()
    upload_root = Path(tempfile.mkdtemp(prefix="bench-drafts-uploads-"))
    os.environ["GRADIO_TEMP_DIR"] = str(upload_root)  # Gradio's upload folder: restores land there too
    try:
        files = uploads(upload_root, args.classes, args.per_class)
        count, mb = sum(map(len, files)), sum(Path(p).stat().st_size for paths in files for p in paths) / 2**20
        print(f"{machine()}; {uptime_load()}")
        print(f"{args.classes} classes x {args.per_class} photos: {count} files, {mb:.1f} MiB")
        print("| models folder | first save | save, nothing new | save, one photo more | restore |")
        print("|---|---|---|---|---|")
        for where, parent in (("uploads' filesystem (hard links)", upload_root), ("/dev/shm (copies)", "/dev/shm")):
            models = Path(tempfile.mkdtemp(prefix="bench-drafts-models-", dir=parent))
            try:
                print(f"| {where} | {row(models, files, upload_root)} |")
            finally:
                shutil.rmtree(models, ignore_errors=True)
    finally:
        shutil.rmtree(upload_root, ignore_errors=True)


if __name__ == "__main__":
    main()
