"""The whole loop on the real app: train from the page, predict, correct, retrain, download, load the download.

The app runs on a loopback port with training on, jobs train the bundled MobileNetV2 0.35 at 32 px
on two classes of drawn shapes. `SCREENSHOT=1` also saves the Train tab to docs/train-tab.png.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, free_port
from gradio_client import Client, handle_file
from test_app import ARTIFACTS, CHROMIUM, browser_page

from classifier.predict import Predictor
from classifier.serving.app_ui import launch
from classifier.serving.limits import Limits
from classifier.serving.serving import ModelLibrary
from classifier.shapes import make_shapes_dataset

LIMITS = Limits(training=True, local=True)
SIZE, EPOCHS = "32", "10"  # the tab's fields; ten epochs on cached vectors cost about as little as one


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> dict[str, list[Path]]:
    """Circles and squares: the first 12 of each to train on, the rest held out."""
    root = make_shapes_dataset(tmp_path_factory.mktemp("drawn") / "shapes", per_class=14, size=48)
    return {label: sorted((root / label).glob("*.png")) for label in ("circle", "square")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, models folder) of an app with no model yet and training on."""
    models = tmp_path_factory.mktemp("served") / "models"
    cache = str(tmp_path_factory.mktemp("feature-cache"))
    demo = launch(ModelLibrary({}), models, "127.0.0.1", free_port(), LIMITS, block=False, train_cache=cache)
    yield demo.local_url, models
    demo.close()


def wait_until_finished(client: Client, timeout: float = 600) -> dict:
    """Poll /train_status (as the page's timer does) until the session's job has finished: its details."""
    deadline = time.monotonic() + timeout
    while True:
        status, curve, details, *_ = client.predict(api_name="/train_status")
        if details["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return details
        time.sleep(0.5)


def test_api_trains_reports_progress_and_predicts(server, drawn):
    url, models = server
    client = Client(url, verbose=False)
    slots = ["circle", "square", "", "", "", ""]
    uploads = [[handle_file(str(p)) for p in drawn[label][:12]] for label in ("circle", "square")] + [None] * 4
    status, _, details, _ = client.predict(  # the job's id stays in the session, for /train_status
        "api_shapes", "MobileNetV2 0.35 (bundled weights, fastest)", int(SIZE), int(EPOCHS), None, "", *slots, *uploads,
        api_name="/train",
    )  # fmt: skip
    assert details["state"] in ("queued", "running") and "api_shapes" in status
    details = wait_until_finished(client)
    assert details["state"] == "done", details
    assert [epoch["epoch"] for epoch in details["epochs"]] == list(range(1, 11))
    assert {"accuracy", "loss", "val_accuracy", "val_loss"} <= set(details["epochs"][-1])
    assert details["features"]["total"] == 24  # the backbone pass saw every image once, then epochs on vectors
    assert sorted(p.name for p in (models / "api_shapes.data").iterdir()) == ["circle", "square"]
    # The job loaded its model for predictions before it said done (with the backbone's LiteRT conversion, the
    # first time on a machine), so the first prediction does not wait for it.
    assert "model loaded for predictions, the backbone in litert" in details["log"], details["log"]
    # What a visitor reads of the job names no path of the server (issue 23, item 8).
    assert str(models.parent) not in json.dumps([status, details]) and "/tmp/" not in json.dumps(details["log"])
    for label in ("circle", "square"):
        result = client.predict(handle_file(str(drawn[label][-1])), "api_shapes", api_name="/predict")
        assert result["label"] == label


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_trains_predicts_corrects_retrains_and_downloads(server, drawn, tmp_path):
    url, models = server
    with browser_page(url, height=1100) as page:
        page.get_by_role("tab", name="Train").click()
        page.get_by_label("Model name").fill("shapes")
        for slot, label in enumerate(("circle", "square"), start=1):
            page.get_by_label(f"Class {slot}").fill(label)
            files = [str(p) for p in drawn[label][:12]]
            page.locator(f"#class-{slot}-images input[type=file]").set_input_files(files)
        page.get_by_label("Image size (px)").fill(SIZE)
        page.get_by_label("Epochs").fill(EPOCHS)
        page.get_by_role("button", name="Train", exact=True).click()
        status = page.get_by_text("done: model 'shapes' saved")
        status.wait_for(timeout=600_000)
        page.wait_for_timeout(1500)  # the curve's last redraw
        page.screenshot(path=str(ARTIFACTS / "train_tab.png"), full_page=True)
        if os.environ.get("SCREENSHOT") == "1":
            page.screenshot(path=str(ROOT / "docs" / "train-tab.png"), full_page=True)

        # The predict tab now offers the model: a held-out square is a square.
        page.get_by_role("tab", name="One image").click()
        page.locator("input[type=file]").first.set_input_files(str(drawn["square"][-1]))
        label = page.locator('[data-testid="label-output-value"]')
        label.wait_for(timeout=60_000)
        assert label.inner_text().splitlines()[0].strip() == "square"

        # Correct it (as if it were wrong, it is a circle now), then retrain on the training folder.
        before = len(list((models / "shapes.data").glob("*/*.png")))
        page.get_by_label("Wrong? It is:").click()
        page.get_by_role("option", name="circle").click()
        page.get_by_role("button", name="Add to this class").click()
        page.get_by_text("Saved to class circle").wait_for(timeout=60_000)
        assert len(list((models / "shapes.data" / "circle").glob("*.png"))) == 13
        assert len(list((models / "shapes.data").glob("*/*.png"))) == before + 1
        trained_at = Predictor(models / "shapes").metadata.trained_at
        page.get_by_role("button", name="Retrain").click()
        page.get_by_role("tab", name="Train").click()
        page.wait_for_function(
            "() => !document.body.innerText.includes(\"done: model 'shapes' saved\")", timeout=60_000
        )
        status.wait_for(timeout=600_000)
        retrained = Predictor(models / "shapes").metadata
        assert (
            retrained.trained_at != trained_at and retrained.data.train_images + retrained.data.validation_images == 25
        )

        # Download the model folder as a zip and load it as any model folder.
        page.get_by_text("Download the picked model").click()
        page.get_by_role("button", name="Prepare the download").click()
        link = page.locator('a[download="shapes.zip"]')  # the file's row: its size, linked
        link.wait_for(timeout=120_000)
        with page.expect_download() as download:
            link.click()
        archive = tmp_path / "shapes.zip"
        download.value.save_as(archive)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unzipped")
    predictor = Predictor(tmp_path / "unzipped" / "shapes")
    assert predictor.class_names == ["circle", "square"]
    assert predictor.predict(drawn["circle"][-1])[0][0] == "circle"
