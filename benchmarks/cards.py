"""What a Train-tab class card costs the server: its count and thumbnails for a box of photos, first and again.

    python benchmarks/cards.py [--photos 40] [--phone 4]

A card is made each time a class box's files change (a drop, each webcam photo), so its cost is paid first for
every new file (the training scan's check and a 72 px thumbnail) and then only for the HTML (made thumbnails are
kept). Timed: `Thumbnails.card` for --photos TrashNet photos (drawn shapes without ../shared) plus --phone 12 MP
phone-sized JPEGs (a photo scaled up to 4000 x 3000), cold and warm, and the card's HTML size.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine
from PIL import Image

TRASHNET = ROOT.parent / "shared" / "data" / "trashnet" / "train" / "glass"


def photos(folder: Path, count: int, phone: int) -> list[Path]:
    """`count` photos (TrashNet's, else drawn) and `phone` 12 MP JPEGs, copied into `folder`."""
    from classifier.shapes import make_shapes_dataset

    source = TRASHNET if TRASHNET.is_dir() else make_shapes_dataset(folder / "drawn", per_class=count) / "circle"
    found = [Path(shutil.copy(path, folder)) for path in sorted(source.iterdir())[:count]]
    for i in range(phone):
        big = folder / f"phone{i}.jpg"
        Image.open(found[i]).convert("RGB").resize((4000, 3000), Image.BICUBIC).save(big, quality=90)
        found.append(big)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--phone", type=int, default=4)
    args = parser.parse_args()
    from gradio.utils import get_upload_folder

    from classifier.serving.cards import Thumbnails

    Path(get_upload_folder()).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=get_upload_folder()) as folder:  # where Gradio keeps uploads
        files = [{"path": str(path), "orig_name": path.name} for path in photos(Path(folder), args.photos, args.phone)]
        thumbnails = Thumbnails()
        start = time.perf_counter()
        html = thumbnails.card(files)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        thumbnails.card(files)
        warm = time.perf_counter() - start
    print(machine())
    print(
        f"card of {len(files)} files ({args.phone} of them 12 MP JPEGs): first {cold:.2f} s, again {warm * 1000:.1f} ms"
    )
    print(f"card HTML: {len(html) / 1024:.0f} KiB ({len(html) / len(files) / 1024:.1f} KiB a photo)")


if __name__ == "__main__":
    main()
