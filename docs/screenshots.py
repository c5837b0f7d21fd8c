"""Screenshots of the Train tab for the README, from a real Chromium: docs/train-tab.png (1280 px wide, the whole
page) and docs/train-tab-phone.png (390 px wide, a phone: the Train tab's first two screens).

    python docs/screenshots.py                                    # drawn shapes (no download, any clone)
    python docs/screenshots.py --photos ../shared/data/trashnet/train --classes glass paper metal

The app runs in this process on a loopback port with training on and an empty models folder; Chromium fills one
card per class (12 photos each), takes two photos from its fake camera into the first class, trains the bundled
MobileNetV2 0.35 for 10 epochs, drops a held-out photo of the last class into the live preview, and takes both
screenshots. Needs the playwright Python package and a Chromium (`--chromium`, Debian's by default). About a
minute on 2 cores.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifier.serving.app_ui import launch  # noqa: E402
from classifier.serving.library import ModelLibrary  # noqa: E402
from classifier.serving.limits import Limits  # noqa: E402
from classifier.shapes import make_shapes_dataset  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream"]
CHROMIUM_ARGS += ["--use-fake-ui-for-media-stream"]  # the fake camera, allowed without asking
PER_CLASS = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def photos(folder: Path | None, classes: list[str], scratch: Path) -> dict[str, list[Path]]:
    """Class -> photos (PER_CLASS to train on, then one held out): from `folder`'s class folders, else drawn."""
    if folder is None:
        folder = make_shapes_dataset(scratch / "shapes", per_class=PER_CLASS + 1, size=96)
    found = {label: sorted(p for p in (folder / label).iterdir() if p.is_file())[: PER_CLASS + 1] for label in classes}
    for label, files in found.items():
        if len(files) < PER_CLASS + 1:
            raise SystemExit(f"error: {folder / label} has {len(files)} files; the screenshots need {PER_CLASS + 1}")
    return found


def fill_and_train(page, name: str, images: dict[str, list[Path]]) -> None:
    """Name the model, fill a card per class, two webcam photos into the first, Train, and wait until it is done."""
    page.get_by_role("tab", name="Train").click()
    page.get_by_label("Model name").fill(name)
    for slot, (label, files) in enumerate(images.items(), start=1):
        if slot > 2:
            page.get_by_role("button", name="Add a class").click()
        page.get_by_label(f"Class {slot}").fill(label)
        page.locator(f"#class-{slot}-images input[type=file]").set_input_files([str(p) for p in files[:PER_CLASS]])
        page.locator(f"#class-{slot}-card").get_by_text(f"{PER_CLASS} photos").wait_for(timeout=60_000)
    webcam = page.locator("#class-1-webcam")
    page.locator("#class-1-webcam-open").get_by_text("Webcam").first.click()  # unfolded
    webcam.get_by_text("Click to Access Webcam").click()
    for taken in (PER_CLASS + 1, PER_CLASS + 2):
        page.wait_for_function(
            "() => { const v = document.querySelector('#class-1-webcam video:not(.hide)');"
            " return v !== null && v.readyState >= 2 && v.videoWidth > 0; }",
            timeout=30_000,
        )
        webcam.get_by_role("button", name="capture photo").click()
        page.locator("#class-1-card").get_by_text(f"{taken} photos").wait_for(timeout=30_000)
    page.get_by_label("Image size (px)").fill("96")
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text(f"done: model '{name}' saved").wait_for(timeout=600_000)
    page.wait_for_timeout(1500)  # the curve's last redraw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, help="a folder of class folders (default: drawn shapes)")
    parser.add_argument("--classes", nargs="+", default=["circle", "square", "triangle"])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="classifier-screenshots-") as scratch:
        images = photos(args.photos, args.classes, Path(scratch))
        models = Path(scratch) / "models"
        limits = Limits(training=True, local=True)
        demo = launch(ModelLibrary({}, models_dir=models), models, "127.0.0.1", free_port(), limits, block=False)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(demo.local_url)
                fill_and_train(page, "workbench", images)
                held_out = next(iter(reversed(images.values())))[PER_CLASS]
                page.locator("#live-image input[type=file]").set_input_files(str(held_out))
                page.locator("#live-label").get_by_text("%").first.wait_for(timeout=60_000)
                page.screenshot(path=str(args.out / "train-tab.png"), full_page=True)
                page.set_viewport_size({"width": 390, "height": 844})
                page.wait_for_timeout(1000)  # the layout settles
                page.evaluate("window.scrollTo(0, 0)")  # so that the box's y is the page's
                top = page.get_by_role("tabpanel").bounding_box()["y"]  # two phone screens from the tab's top
                clip = {"x": 0, "y": top, "width": 390, "height": 2 * 844}
                page.screenshot(path=str(args.out / "train-tab-phone.png"), full_page=True, clip=clip)
                browser.close()
        finally:
            demo.close()
    print(f"wrote {args.out / 'train-tab.png'} and {args.out / 'train-tab-phone.png'}")


if __name__ == "__main__":
    main()
