"""The whole loop on the real app: train from the page, predict, correct, retrain, download, load the download.

The app runs on a loopback port with training on, jobs train the bundled MobileNetV2 0.35 at 32 px
on two classes of drawn shapes. docs/screenshots.py takes the README's screenshots.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import numpy as np
import pytest
from conftest import free_port, run_main
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from hostile import running_server
from PIL import Image
from test_app import ARTIFACTS, CHROMIUM, browser_page

import app as app_cli
from classifier.data import trainset
from classifier.errors import UsageError
from classifier.model.confidence import percent
from classifier.predict import Predictor
from classifier.serving import scratch
from classifier.serving.app_train import BURST, KEPT_DOWNLOADS, TrainPage
from classifier.serving.app_ui import App, launch
from classifier.serving.cards import PREVIEW_SECONDS
from classifier.serving.library import ModelLibrary
from classifier.serving.limits import Limits
from classifier.serving.workbench import DEFAULT_BACKBONE, JobWatch
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
    library = ModelLibrary({}, models_dir=models)  # the folder is watched, as app.py's library watches it
    demo = launch(library, models, "127.0.0.1", free_port(), LIMITS, block=False, train_cache=cache)
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
    _, curve, *_ = client.predict(api_name="/train_status")  # curves.png's figure, drawn once per epoch
    assert curve["type"] == "matplotlib" and curve["plot"].startswith("data:image/png;base64,")
    # What a visitor reads of the job names no path of the server (issue 23, item 8).
    assert str(models.parent) not in json.dumps([status, details]) and "/tmp/" not in json.dumps(details["log"])
    for label in ("circle", "square"):
        result = client.predict(handle_file(str(drawn[label][-1])), "api_shapes", api_name="/predict")
        assert result["label"] == label
    # Issue 26: a new client, without a restart, is offered the model (in the config's choices and /predict's
    # schema, as the job finished: no rescan needed), it answers by name, and the server's last job is its to see.
    fresh = Client(url, verbose=False)
    assert "api_shapes" in offered(fresh)
    assert fresh.predict(handle_file(str(drawn["circle"][-1])), "api_shapes", api_name="/predict")["label"] == "circle"
    assert fresh.predict(api_name="/train_status")[2]["model"] == "api_shapes"


def test_a_cancelled_new_model_keeps_nothing_and_its_name_is_free_again(server, drawn):
    url, models = server
    client = Client(url, verbose=False)
    uploads = [[handle_file(str(p)) for p in drawn[label][:4]] for label in ("circle", "square")]
    for _ in range(2):  # the second Train of the same name is not refused: the first left nothing
        _, _, details, _ = train_call(client, "dropped", uploads)
        assert details["state"] in ("queued", "running")
        client.predict(details["id"], api_name="/train_cancel")
        assert wait_until_finished(client)["state"] == "cancelled"
        assert not (models / "dropped.data").exists() and not (models / "dropped").exists()


def hold_after_first_epoch(monkeypatch) -> None:
    """Jobs wait after their first epoch until they are cancelled: slow enough to catch, however fast the machine."""
    first_epoch = JobWatch.on_epoch_end

    def held(watch, epoch, logs=None):
        first_epoch(watch, epoch, logs)
        watch.job.cancel_requested.wait(120)
        watch.job.check_cancelled()

    monkeypatch.setattr(JobWatch, "on_epoch_end", held)


def test_a_running_job_is_seen_and_cancelled_by_a_second_client(server, drawn, monkeypatch):
    """Issue 26: jobs are the server's. Another client (no job id) sees the running job's progress through
    /train_status and cancels it with /train_cancel; the client that started it hears it was cancelled."""
    url, models = server
    hold_after_first_epoch(monkeypatch)
    owner, other = Client(url, verbose=False), Client(url, verbose=False)
    uploads = [[handle_file(str(p)) for p in drawn[label][:4]] for label in ("circle", "square")]
    job = train_call(owner, "seen", uploads)[2]["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status, _, details, *_ = other.predict(api_name="/train_status")
        if details["id"] == job and details["epochs"]:
            break
        time.sleep(0.3)
    assert details["state"] == "running" and status.startswith("**seen:** epoch 1 of"), (status, details)
    assert other.predict(api_name="/train_cancel")[2]["id"] == job
    assert wait_until_finished(owner)["state"] == "cancelled"
    assert not (models / "seen").exists() and not (models / "seen.data").exists()


def test_models_come_and_go_with_the_models_folder_without_a_restart(server, drawn, model_dir):
    """Issue 26: a model folder copied in after start is served by name (the library rescans the folder when a
    request names a model it does not know), a removed one is refused naming it; half-written folders and
    training folders never are."""
    url, models = server
    client = Client(url, verbose=False)
    assert "copied" not in offered(client)
    shutil.copytree(model_dir, models / "copied")
    shutil.copytree(model_dir, models / ".copied2.partial-1234")  # a folder being written: dotted, skipped
    shutil.copytree(model_dir, models / "copied3.data")  # a training folder's name is never a model's
    time.sleep(1.1)  # RESCAN_SECONDS: a client connecting now reads the models folder as it is
    assert offered(Client(url, verbose=False)) >= {"copied"}
    assert not {".copied2.partial-1234", "copied3.data"} & offered(Client(url, verbose=False))
    circle = handle_file(str(drawn["circle"][-1]))
    assert client.predict(circle, "copied", api_name="/predict")["label"] in ("circle", "square", "triangle")
    for name in (".copied2.partial-1234", "copied3.data"):
        with pytest.raises(AppError, match=re.escape(f"unknown model '{name}'")):
            client.predict(circle, name, api_name="/predict")
    shutil.rmtree(models / ".copied2.partial-1234")
    shutil.rmtree(models / "copied3.data")
    shutil.rmtree(models / "copied")
    with pytest.raises(AppError, match=r"unknown model 'copied'; this app serves: "):
        client.predict(circle, "copied", api_name="/predict")
    assert "copied" not in offered(Client(url, verbose=False))
    # Still refused (with no model left at all, by saying how to train one; the file's other tests leave some).
    with pytest.raises(AppError, match=r"unknown model 'copied'|No trained model yet"):
        client.predict([handle_file(str(drawn["circle"][-1]))], "copied", api_name="/predict_batch")


def offered(client: Client) -> set[str]:
    """The models a gradio_client sees offered when it connects: the picker's choices in the app's config, which
    must be the model names /predict's schema lists."""
    picker = next(c for c in client.config["components"] if c["props"].get("label") == "Model")
    choices = {value for _, value in picker["props"]["choices"]}
    schema = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/predict"]
    assert set(next(p for p in schema["parameters"] if p["label"] == "Model")["type"]["enum"]) == choices
    return choices


def test_a_rescan_keeps_a_model_from_elsewhere_and_closes_a_removed_ones_predictor(model_dir, tmp_path):
    """--model's folder outside the models folder stays whatever the folder holds (a folder of its name there
    does not replace it); a removed folder's loaded predictor is closed."""
    models, outside = tmp_path / "models", tmp_path / "elsewhere" / "mine"
    shutil.copytree(model_dir, outside)
    shutil.copytree(model_dir, models / "gone")
    library = ModelLibrary({"mine": outside, "gone": models / "gone"}, models_dir=models)
    predictor = library.get("gone")
    shutil.copytree(model_dir, models / "mine")
    shutil.rmtree(models / "gone")
    assert library.refresh() == ["mine"] and library.paths["mine"] == outside
    with pytest.raises(RuntimeError, match="was replaced"):  # closed: its worker has ended
        predictor.predict_proba([str(_tiny_png_file(tmp_path))])
    with pytest.raises(KeyError, match="unknown model 'gone'; this app serves: mine"):
        library.get("gone")
    # The picker takes any value typed (a model added since the page loaded): one the library does not offer is
    # refused naming it, never looked up as a path (the card's copies of curves and examples included).
    app = App(library, models, LIMITS)
    for typed in ("gone", "../elsewhere/mine", "..", "mine/../mine"):
        with pytest.raises(gr.Error, match=re.escape(f"unknown model '{typed}'")):
            app.model_view(typed)
    assert app.page_load("gone")[1].startswith("### mine")  # a new page picks a model still offered: its card


def _tiny_png_file(folder: Path) -> Path:
    path = folder / "tiny.png"
    path.write_bytes(_tiny_png())
    return path


def take_webcam_photos(page, slot: int, count: int, before: int) -> None:
    """Switch on class `slot`'s webcam (Chromium's fake camera) and press its capture button `count` times, each
    press once the camera is live again; the card's count goes up by one each time."""
    webcam = page.locator(f"#class-{slot}-webcam")
    page.locator(f"#class-{slot}-webcam-open").get_by_text("Webcam").first.click()  # unfolded
    webcam.get_by_text("Click to Access Webcam").click()
    for taken in range(before + 1, before + count + 1):
        page.wait_for_function(  # live (again): the camera's frames are playing
            f"() => {{ const v = document.querySelector('#class-{slot}-webcam video:not(.hide)');"
            " return v !== null && v.readyState >= 2 && v.videoWidth > 0; }",
            timeout=30_000,
        )
        webcam.get_by_role("button", name="capture photo").click()
        page.locator(f"#class-{slot}-card").get_by_text(re.compile(rf"^{taken} photos?$")).wait_for(timeout=30_000)


HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)  # an iPhone photo's first bytes


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_class_cards_on_a_phone(server, drawn, tmp_path):
    """Issue 26: each class is a card with its count and thumbnails; a HEIC and a text file are one marked tile
    each, with their reasons, and the other photos stay shown; the webcam adds photos one press at a time. At
    390 px wide (a phone) the cards stack, and every button is within the screen."""
    url, _ = server
    (tmp_path / "IMG_0001.HEIC").write_bytes(HEIC)
    (tmp_path / "notes.txt").write_text("not a photo")
    with browser_page(url, height=900, width=390, camera=True) as page:
        page.get_by_role("tab", name="Train").click()
        files = [*map(str, drawn["circle"][:3]), str(tmp_path / "IMG_0001.HEIC"), str(tmp_path / "notes.txt")]
        page.locator("#class-1-images input[type=file]").set_input_files(files)
        card = page.locator("#class-1-card")
        card.get_by_text("3 photos, 2 unusable: remove them to train").wait_for(timeout=30_000)
        assert card.locator("img.class-card-thumb").count() == 3
        bad = card.locator(".class-card-bad").all_inner_texts()
        assert len(bad) == 2 and bad[0].startswith("✕ IMG_0001.HEIC: ") and bad[1].startswith("✕ notes.txt: "), bad
        src = card.locator("img.class-card-thumb").first.get_attribute("src")
        assert src.startswith("data:image/jpeg;base64,")  # made by the server, no file of it named or served
        take_webcam_photos(page, 2, 2, before=0)
        assert page.locator("#class-2-card img.class-card-thumb").count() == 2
        page.locator("#class-2-webcam-open").get_by_role("button", name=f"Take {BURST} photos").click()  # a burst
        page.locator("#class-2-card").get_by_text(f"{2 + BURST} photos").wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "train_tab_phone.png"), full_page=True)
        first, second = (page.locator(f"#class-{slot}-card").bounding_box() for slot in (1, 2))
        assert second["y"] > first["y"] + first["height"]  # stacked, not side by side
        for name in ("Add a class", "Remove the last class", "Train", "Cancel"):
            box = page.get_by_role("button", name=name, exact=True).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["width"] >= 100, (name, box)
        page.get_by_role("button", name="Remove the last class").click()  # below two: nothing removed
        page.get_by_role("button", name="Add a class").click()
        page.get_by_label("Class 3").wait_for()
        assert page.locator("#class-3-card").get_by_text("No photos yet").is_visible()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_trains_predicts_corrects_retrains_and_downloads(server, drawn, tmp_path):
    url, models = server
    with browser_page(url, height=1100, camera=True) as page:
        page.get_by_role("tab", name="Train").click()
        page.get_by_label("Model name").fill("shapes")
        for slot, label in enumerate(("circle", "square"), start=1):
            page.get_by_label(f"Class {slot}").fill(label)
            files = [str(p) for p in drawn[label][:12]]
            page.locator(f"#class-{slot}-images input[type=file]").set_input_files(files)
            page.locator(f"#class-{slot}-card").get_by_text("12 photos").wait_for(timeout=30_000)
        # Two photos from the (fake) webcam into the circles: its count goes up, and they are trained on.
        take_webcam_photos(page, 1, 2, before=12)
        page.get_by_label("Image size (px)").fill(SIZE)
        page.get_by_label("Epochs").fill(EPOCHS)
        # Issue 26: the backbone's label was cut off ("MobileNetV2 0.35 (bund") at 1280 px.
        assert page.get_by_label("Backbone").evaluate("el => el.value.length > 30 && el.scrollWidth <= el.clientWidth")
        # A third class named and left empty, then named as the first in other case: each refused naming it.
        page.get_by_role("button", name="Add a class").click()
        for name, words in (("triangle", "class 'triangle' has no photos"), ("Circle", "names 'circle' and 'Circle'")):
            page.get_by_label("Class 3").fill(name)
            page.get_by_role("button", name="Train", exact=True).click()
            page.get_by_text(words).first.wait_for(timeout=30_000)
        assert not (models / "shapes.data").exists()
        page.get_by_role("button", name="Remove the last class").click()  # its name goes with it
        page.get_by_label("Class 3").wait_for(state="hidden")
        page.get_by_role("button", name="Train", exact=True).click()
        status = page.get_by_text("done: model 'shapes' saved")
        status.wait_for(timeout=600_000)
        page.wait_for_timeout(1500)  # the curve's last redraw
        page.screenshot(path=str(ARTIFACTS / "train_tab.png"), full_page=True)

        # The live preview beside training classifies with the new model: a dropped image, and the webcam's stream.
        page.locator("#live-image input[type=file]").set_input_files(str(drawn["square"][-1]))
        live = page.locator("#live-label")
        live.get_by_text("square").first.wait_for(timeout=60_000)
        page.locator("#live-webcam").get_by_text("Click to Access Webcam").click()
        page.locator("#live-webcam").get_by_role("button", name="capture photo").click()  # its Record button
        page.wait_for_function(  # a frame of the fake camera classified: both classes' bars, no error
            "() => /circle/.test(document.querySelector('#live-label').innerText) && "
            "/square/.test(document.querySelector('#live-label').innerText)",
            timeout=60_000,
        )

        # The predict tab now offers the model: a held-out square is a square.
        page.get_by_role("tab", name="One image").click()
        page.locator("input[type=file]").first.set_input_files(str(drawn["square"][-1]))
        label = page.locator("#prediction .answer h2")
        label.wait_for(timeout=60_000)
        assert label.inner_text().strip() == "square"

        # Correct it (as if it were wrong, it is a circle now), then retrain on the training folder.
        # Choosing the class is the whole correction (issue 26): saved at once, and the page says so.
        before = len(list((models / "shapes.data").glob("*/*.png")))
        page.get_by_label("Wrong? It is:").click()
        page.get_by_role("option", name="circle").click()
        page.get_by_text("Saved to class circle").wait_for(timeout=60_000)
        page.mouse.click(5, 5)  # the list loses focus: nothing is sent again ("Already in class" would replace it)
        page.wait_for_timeout(1000)
        assert page.get_by_text("Saved to class circle").is_visible()
        assert len(list((models / "shapes.data" / "circle").glob("*.png"))) == 15  # 12, 2 webcam photos, this one
        assert len(list((models / "shapes.data").glob("*/*.png"))) == before + 1
        # "Add to <predicted class>" saves it under the prediction's class (here: back to square, the latest word).
        page.get_by_role("button", name="Add to square", exact=True).click()
        page.get_by_text("Saved to class square").wait_for(timeout=60_000)
        assert trainset.class_counts(models / "shapes.data") == {"circle": 14, "square": 13}
        trained_at = Predictor(models / "shapes").metadata.trained_at
        # Retrain shows its stages where it was pressed, then how it ended, and the card beside the prediction
        # turns to the new model (issue 26, item 5): no visit to the Train tab.
        before_card = page.locator("time[data-local]").first.get_attribute("datetime")
        page.get_by_role("button", name="Retrain").click()
        progress = page.locator("#retrain-progress")
        progress.get_by_text("Retraining").wait_for(timeout=60_000)
        progress.get_by_text("Retrained.").wait_for(timeout=600_000)
        line = progress.inner_text()
        assert "done: model 'shapes' saved, validation accuracy" in line and "images" in line, line
        retrained = Predictor(models / "shapes").metadata
        assert (
            retrained.trained_at != trained_at and retrained.data.train_images + retrained.data.validation_images == 27
        )
        page.wait_for_function(
            "before => document.querySelector('time[data-local]').getAttribute('datetime') !== before",
            arg=before_card,
            timeout=30_000,
        )
        validation = retrained.data.validation_images
        assert f"Validation accuracy {percent(retrained.val_accuracy)} on {validation} images" in page.inner_text(
            "body"
        )
        page.screenshot(path=str(ARTIFACTS / "retrained.png"), full_page=True)
        page.get_by_role("tab", name="Train").click()
        page.get_by_role("tabpanel").get_by_text("done: model 'shapes' saved").wait_for(timeout=30_000)  # the same job

        # Download the model folder as a zip and load it as any model folder.
        page.get_by_text("Download the picked model").click()
        page.get_by_role("button", name="Prepare the download").click()
        link = page.locator('a[download="shapes.zip"]')  # the file's row: its size, linked
        link.wait_for(timeout=120_000)
        page.get_by_text(re.compile(r"Ready, prepared in \d+ s")).wait_for(timeout=10_000)  # no guessed total
        with page.expect_download() as download:
            link.click()
        archive = tmp_path / "shapes.zip"
        download.value.save_as(archive)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unzipped")  # as an unzip into a folder, or one named after the zip, unpacks it
    predictor = Predictor(tmp_path / "unzipped")  # that folder is the model's, as it is
    assert predictor.class_names == ["circle", "square"]
    assert predictor.predict(drawn["circle"][-1])[0][0] == "circle"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_a_new_page_sees_the_servers_models_and_its_job(server, drawn, model_dir, monkeypatch):
    """Issue 26: state lives on the server. A model copied in after a first page opened is in a second page's
    picker (and gone from it once removed); a page reloaded during a job shows the job and cancels it."""
    url, models = server
    hold_after_first_epoch(monkeypatch)
    with browser_page(url, height=1100) as first:
        for name in ("late", "later", "latest"):  # two stay after one goes: the picker shows with two models or more
            shutil.copytree(model_dir, models / name)
        second = first.context.browser.new_page(viewport={"width": 1280, "height": 900})  # a second tab
        second.goto(url)
        second.get_by_label("Model").click()
        second.get_by_role("option", name="late", exact=True).wait_for(timeout=30_000)
        second.keyboard.press("Escape")
        shutil.rmtree(models / "late")
        second.reload()
        second.get_by_label("Model").click()
        second.get_by_role("option").first.wait_for(timeout=30_000)
        assert "late" not in [o.strip() for o in second.get_by_role("option").all_inner_texts()]
        second.keyboard.press("Escape")

        first.get_by_role("tab", name="Train").click()
        first.get_by_label("Model name").fill("held")
        for slot, label in enumerate(("circle", "square"), start=1):
            first.get_by_label(f"Class {slot}").fill(label)
            first.locator(f"#class-{slot}-images input[type=file]").set_input_files([str(p) for p in drawn[label][:6]])
        first.get_by_label("Image size (px)").fill(SIZE)
        first.get_by_role("button", name="Train", exact=True).click()
        first.get_by_text("held: epoch 1 of").wait_for(timeout=300_000)
        first.reload()  # the job id the page held is gone with it; the server still knows its job
        first.get_by_role("tab", name="Train").click()
        first.get_by_text("held: epoch 1 of").wait_for(timeout=30_000)
        # What the tab held is back too (its draft, on the server): the names, the photos as cards, the options.
        for slot, label in enumerate(("circle", "square"), start=1):
            first.locator(f"#class-{slot}-card").get_by_text("6 photos").wait_for(timeout=30_000)
            assert first.get_by_label(f"Class {slot}").input_value() == label
        assert first.get_by_label("Model name").input_value() == "held"
        assert first.get_by_label("Image size (px)").input_value() == SIZE
        first.get_by_role("button", name="Cancel").click()
        first.get_by_text("held: cancelled").wait_for(timeout=60_000)
        second.reload()  # another browser (its own context: no draft of its own) sees an empty tab
        second.get_by_role("tab", name="Train").click()
        second.get_by_text("held: cancelled").wait_for(timeout=30_000)
        assert second.get_by_label("Model name").input_value() == ""
        assert second.locator("#class-1-card").get_by_text("No photos yet").is_visible()
        first.get_by_role("button", name="Start over").click()  # the tab emptied, and its draft gone
        first.locator("#class-1-card").get_by_text("No photos yet").wait_for(timeout=30_000)
        first.reload()
        first.get_by_role("tab", name="Train").click()
        first.get_by_text("held: cancelled").wait_for(timeout=30_000)
        first.wait_for_timeout(1000)  # the page's load events have answered
        assert [first.get_by_label(field).input_value() for field in ("Model name", "Class 1")] == ["", ""]
    # A new API session with no job id hears of the server's current job, and nothing of the cancelled one is left.
    _, _, details, *_ = Client(url, verbose=False).predict(api_name="/train_status")
    assert details["model"] == "held" and details["state"] == "cancelled"
    for name in ("later", "latest"):
        shutil.rmtree(models / name)
    assert not (models / "held").exists() and not (models / "held.data").exists()


# --------------------------------------------------------------------------------------------
# A hostile visitor: no served model replaced, nothing kept beyond the caps (no training here)
# --------------------------------------------------------------------------------------------
TURNED_AWAY = Limits(
    training=True, local=True, max_train_queue=0, max_class_images=4, max_model_data_mb=1, max_page_models=3
)


def noise_png(path: Path, side: int, seed: int) -> Path:
    """A PNG of random pixels (incompressible: about 3 x side**2 bytes)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folders`: (size, mtime in ns), to show nothing was written."""
    return {
        str(path): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for folder in folders
        for path in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def workshop(model_dir, shapes_dir, tmp_path_factory):
    """(url, models folder, the outside model's folder) of an app that turns every training job away: it serves
    `shapes` from its models folder (with a training folder of 3 images a class), `cli` from it too (no training
    folder: trained from the command line) and `served` from elsewhere (as --model would), and its models folder also
    holds a stray file `junk` and a training folder `old.data`."""
    root = tmp_path_factory.mktemp("workshop")
    models, outside = root / "models", root / "elsewhere" / "served"
    shutil.copytree(model_dir, models / "shapes")
    shutil.copytree(model_dir, models / "cli")
    shutil.copytree(model_dir, outside)
    images = {label: files[:3] for label, files in trainset.folder_images(shapes_dir).items()}
    trainset.build(models, "shapes", images, TURNED_AWAY)
    (models / "junk").write_text("not a model")
    (models / "old.data").mkdir()
    library = ModelLibrary({"shapes": models / "shapes", "served": outside, "cli": models / "cli"})
    demo = launch(library, models, "127.0.0.1", free_port(), TURNED_AWAY, block=False)
    # The page's own downloads folder (the allowed path so named): the other test process's apps have theirs.
    (DOWNLOADS[demo.local_url],) = [Path(p) for p in demo.allowed_paths if Path(p).name.startswith("classifier-down")]
    yield demo.local_url, models, outside
    demo.close()


DOWNLOADS: dict[str, Path] = {}  # a workshop app's url -> its downloads folder


def download_bytes(url: str) -> int:
    """Bytes the app at `url` holds for downloads: its downloads folder, and any copy of a download ("shapes" zips)
    in Gradio's cache, which the other test process's apps share, so nothing else there counts."""
    copies = Path(tempfile.gettempdir(), "gradio").glob("*/shapes*.zip")
    return sum(p.stat().st_size for p in [*DOWNLOADS[url].rglob("*"), *copies] if p.is_file())


def train_call(client: Client, name: str, uploads: list | None = None):
    slots = ["circle", "square", "", "", "", ""] if uploads else [""] * 6
    files = (uploads or []) + [None] * (6 - len(uploads or []))
    return client.predict(name, DEFAULT_BACKBONE, 32, 1, None, "", *slots, *files, api_name="/train")


def test_no_visitor_can_replace_a_served_model(workshop, capsys):
    url, models, outside = workshop
    client = Client(url, verbose=False)
    before = snapshot(models, outside.parent)
    for name, words in [
        ("served", "model 'served' is served by this app"),  # from outside the models folder (--model)
        ("shapes", "model 'shapes' is served by this app"),  # from inside it
        ("junk", "'junk' exists in this app's models folder"),  # any file of that name
        ("old", "'old.data' exists in this app's models folder"),  # a training folder left without a model
    ]:
        with pytest.raises(AppError, match=re.escape(words)):
            train_call(client, name)
    with pytest.raises(AppError, match="model 'cli' was not trained on this page"):
        client.predict(None, "cli", "circle", api_name="/correct")
    outside_words = "model 'served' is served from outside this app's models folder: it cannot be retrained"
    with pytest.raises(AppError, match=outside_words):
        client.predict(None, "served", "circle", api_name="/correct")
    with pytest.raises(AppError, match=outside_words):
        client.predict("served", api_name="/retrain")
    assert snapshot(models, outside.parent) == before

    # A models folder that is a model folder, or inside one, is refused at start when training is on.
    for folder, words in [(outside, "is a model folder"), (outside / "sub", "is inside the model folder")]:
        with pytest.raises(UsageError, match=words):
            launch(ModelLibrary({}), folder, "127.0.0.1", free_port(), TURNED_AWAY, block=False)
        code, _, err = run_main(app_cli.main, ["--models-dir", folder, "--port", free_port()], capsys)
        assert code == 2 and err.startswith("error: --models-dir") and words in err and err.count("\n") == 1, err
    assert snapshot(models, outside.parent) == before


def test_an_empty_named_class_or_a_repeated_name_is_refused_naming_it(workshop, drawn):
    """Issue 26 item 3: a named class is never dropped silently, nor two of one name merged; refused before the
    queue (this app turns every job away) and before anything is written."""
    url, models, _ = workshop
    client = Client(url, verbose=False)
    circles, squares = ([handle_file(str(p)) for p in drawn[label][:3]] for label in ("circle", "square"))
    before = snapshot(models)
    for names, files, words in [
        (["circle", "square", "triangle"], [circles, squares], "class 'triangle' has no photos: drop photos into it"),
        (["circle", "circle"], [circles, squares], "two classes have the same name 'circle'"),
        (["circle", "square", "Circle"], [circles, squares, circles], "two classes have names 'circle' and 'Circle'"),
    ]:
        slots, uploads = names + [""] * (6 - len(names)), files + [None] * (6 - len(files))
        with pytest.raises(AppError, match=re.escape(words)):
            client.predict("fresh", DEFAULT_BACKBONE, 32, 1, None, "", *slots, *uploads, api_name="/train")
    assert snapshot(models) == before


def test_a_class_with_no_usable_photo_is_refused_naming_it_and_nothing_is_kept(server, drawn, tmp_path):
    url, models = server
    client = Client(url, verbose=False)
    junk = []
    for i in range(2):
        junk.append(tmp_path / f"photo{i}.png")
        junk[-1].write_bytes(b"not an image %d" % i)
    uploads = [[handle_file(str(p)) for p in drawn["circle"][:3]], [handle_file(str(p)) for p in junk]]
    with pytest.raises(AppError, match=re.escape("class 'square' has no usable photo (photo0.png: ")):
        train_call(client, "junky", uploads)
    assert not (models / "junky.data").exists() and not (models / "junky").exists()


def test_a_heic_photo_in_a_class_is_named_with_how_to_convert_it(server, drawn, tmp_path):
    """Issue 26 item 7: an iPhone's HEIC among a class's photos refuses the Train naming it and saying to convert
    it to JPEG (no decoder the project keeps reads it); nothing is kept."""
    url, models = server
    heic = tmp_path / "IMG_0001.HEIC"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200))
    uploads = [[handle_file(str(p)) for p in drawn["circle"][:3]], [handle_file(str(p)) for p in drawn["square"][:3]]]
    uploads[1].append(handle_file(str(heic)))
    with pytest.raises(AppError, match=re.escape("IMG_0001.HEIC: a HEIC/HEIF photo (the iPhone camera's format)")):
        train_call(Client(url, verbose=False), "iphone", uploads)
    assert not (models / "iphone.data").exists()  # on the predict tab: test_app.bad_uploads


def test_backbones_that_download_say_so_and_fail_offline_in_the_pages_words(server, drawn, monkeypatch):
    """Issue 26 item 7: the Train tab's backbones whose weights are not bundled say they download them (the /train
    value stays the label as it was), and offline such a job fails saying what to choose on the page, not which
    flag to pass."""
    url, _ = server
    config = httpx.get(url + "config").json()
    (choices,) = [c["props"]["choices"] for c in config["components"] if c["props"].get("label") == "Backbone"]
    assert choices[0] == [DEFAULT_BACKBONE, DEFAULT_BACKBONE]  # bundled: nothing to download
    assert ["EfficientNetB0 (downloads its weights)", "EfficientNetB0"] in choices
    assert all(shown.endswith("(downloads its weights)") for shown, _ in choices[1:])
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))  # where Keras keeps what it downloads
    if (keras_home / "models" / "efficientnetb0_notop.h5").exists():
        pytest.skip("EfficientNetB0's weights are in Keras' cache: no download to fail")
    # urlopen's opener, built on first use, keeps the proxies of that moment: the one Keras builds here (dead proxies)
    # goes with this test, or every later urlopen of this process (hostile.running_server's) would be refused.
    monkeypatch.setattr(urllib.request, "_opener", None)
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):  # offline: nothing answers there
        monkeypatch.setenv(variable, f"http://127.0.0.1:{free_port()}")
    for variable in ("NO_PROXY", "no_proxy"):  # the app itself is still reached
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    client = Client(url, verbose=False)
    uploads = [[handle_file(str(p)) for p in drawn[label][:3]] for label in ("circle", "square")]
    slots = ["circle", "square", "", "", "", ""]
    client.predict("offline", "EfficientNetB0", 32, 1, None, "", *slots, *uploads, *[None] * 4, api_name="/train")
    details = wait_until_finished(client, timeout=300)
    assert details["state"] == "failed", details
    assert "could not download the efficientnet_b0 ImageNet weights" in details["message"]
    assert f"Choose the backbone '{DEFAULT_BACKBONE}'" in details["message"] and "--weights" not in details["message"]


def test_a_refused_job_writes_nothing(workshop, drawn):
    url, models, _ = workshop
    client = Client(url, verbose=False)
    uploads = [[handle_file(str(p)) for p in drawn[label][:6]] for label in ("circle", "square")]
    before = snapshot(models)
    for name in ("fresh1", "fresh2", "fresh3"):  # fresh names, each turned away by the queue's cap
        with pytest.raises(AppError, match=r"--max-train-queue sets it"):
            train_call(client, name, uploads)
    assert snapshot(models) == before  # not a byte: the queue's room is checked before the images are copied


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_shows_the_correction_row_only_for_a_model_it_can_correct(workshop):
    """`shapes` has its training folder here; `cli` (trained from the command line) and `served` (from elsewhere)
    cannot be corrected from the page: their row is hidden, and shown again when `shapes` is picked again."""
    url, _, _ = workshop
    with browser_page(url) as page:
        wrong = page.get_by_label("Wrong? It is:")
        wrong.wait_for(timeout=60_000)
        for name, shown in (("cli", False), ("shapes", True), ("served", False)):
            page.get_by_label("Model", exact=True).click()
            page.get_by_role("option", name=name, exact=True).click()
            if shown:
                wrong.wait_for(state="visible", timeout=30_000)
                assert page.get_by_role("button", name="Retrain").is_visible()
            else:
                wrong.wait_for(state="hidden", timeout=30_000)
                assert not page.get_by_role("button", name="Retrain").is_visible()


def test_a_job_the_queue_turns_away_after_its_images_were_copied_keeps_nothing(workshop, drawn):
    """The race `check_room` cannot close: room when asked, none at submit (a retrain took the last place)."""
    url, models, _ = workshop
    page = TrainPage(App(ModelLibrary({}), models, TURNED_AWAY))
    asked, check_room = [], page.workbench.check_room

    def room_then_none(name):  # the queue had room when the Train call asked; at submit it has none
        asked.append(name)
        if len(asked) > 1:
            check_room(name)

    page.workbench.check_room = room_then_none
    uploads = [[upload_to(url, p) for p in drawn[label][:3]] for label in ("circle", "square")]
    with pytest.raises(gr.Error, match="--max-train-queue sets it"):
        page.train("racy", DEFAULT_BACKBONE, 32, 1, None, "", "circle", "square", *[""] * 4, *uploads, *[None] * 4)
    assert asked == ["racy", "racy"] and not (models / "racy.data").exists() and not (models / "racy").exists()


def test_the_models_folder_holds_at_most_max_page_models_trained_on_the_page(workshop):
    url, models, _ = workshop
    assert len(trainset.data_folders(models)) == 2  # shapes.data and old.data
    page = TrainPage(App(ModelLibrary({}), models, Limits(training=True, max_page_models=2)))
    with pytest.raises(gr.Error, match=r"2 models trained on this page: above .* \(--max-page-models sets it\)"):
        page.train("third", DEFAULT_BACKBONE, 32, 1, None, "", *[""] * 6, *[None] * 6)
    assert not (models / "third.data").exists()


def upload_to(url: str, path: Path) -> str:
    """The server-side path Gradio gives a file sent to /upload (what the page sends as the file's path)."""
    with open(path, "rb") as file:
        return httpx.post(url + "gradio_api/upload", files={"files": file}).json()[0]


def test_cards_and_webcam_photos_read_only_uploads_and_the_preview_is_paced(workshop, drawn, tmp_path):
    """A class card opens only files Gradio received (a server path is a tile saying so, never read); a webcam
    photo joins only a box of uploads, within --max-class-images; the live preview answers a visitor at most once
    every PREVIEW_SECONDS (another visitor meanwhile is answered), with the Train tab's model."""
    url, models, _ = workshop
    page = TrainPage(App(ModelLibrary({"shapes": models / "shapes"}, models_dir=models), models, TURNED_AWAY))
    (tmp_path / "photo.heic").write_bytes(HEIC)
    circle, heic = (upload_to(url, path) for path in (drawn["circle"][0], tmp_path / "photo.heic"))
    card = page.card([{"path": circle}, {"path": "/etc/passwd", "orig_name": "passwd"}, {"path": heic}])
    assert card.count('class="class-card-thumb"') == 1 and "1 photo, 2 unusable" in card
    assert "passwd: not a file uploaded to this app" in card and "root:" not in card
    assert "photo.heic: " in card and "/etc/" not in card.replace("passwd: not", "")
    assert page.card(None) == page.card([]) and "No photos yet" in page.card(None)
    named = page.card([{"path": circle, "orig_name": '<img src=x onerror="alert(1)">.png'}])  # shown, not run
    assert "<img src=x" not in named and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.png" in named
    # A webcam photo joins the box (the box's own files as they were); the webcam is cleared for the next one.
    photo = {"path": upload_to(url, drawn["square"][0]), "orig_name": "image.png"}
    files, webcam = page.capture(photo, [{"path": circle}])
    assert files == [circle, photo["path"]] and webcam is None
    with pytest.raises(gr.Error, match="not a file uploaded to this app"):
        page.capture({"path": "/etc/hostname"}, [])
    with pytest.raises(gr.Error, match="not a file uploaded to this app"):  # nor a box naming a server path
        page.capture(photo, [{"path": "/etc/hostname"}])
    full = [{"path": circle}] * TURNED_AWAY.max_class_images
    with pytest.warns(UserWarning, match=r"--max-class-images sets it"):  # on the page: a warning toast
        files, webcam = page.capture(photo, full)
    assert webcam is None and isinstance(files, type(gr.skip()))  # the box unchanged
    # The live preview: paced per visitor.
    visitor, other = (SimpleNamespace(session_hash=name) for name in ("one", "two"))
    assert page.preview(photo, "", "shapes", visitor)["confidences"]
    assert isinstance(page.preview(photo, "", "shapes", visitor), type(gr.skip()))  # too soon: skipped
    assert page.preview(photo, "", "shapes", other)["confidences"]
    time.sleep(PREVIEW_SECONDS)
    assert page.preview(photo, "", "shapes", visitor)["confidences"]
    assert page.preview(None, "", "shapes", visitor) == {}  # cleared: the label too


def test_corrections_have_a_byte_cap_and_class_cap_under_one_lock(workshop, tmp_path):
    url, models, _ = workshop
    client = Client(url, verbose=False)
    folder = models / "shapes.data"
    big = [noise_png(tmp_path / f"big{i}.png", 375, seed=i) for i in range(2)]  # about 420 KB each
    said = [
        client.predict(handle_file(str(path)), "shapes", label, api_name="/correct")
        for path, label in zip(big, ("square", "triangle"), strict=True)
    ]
    assert all("Saved to class" in line for line in said), said
    cap = TURNED_AWAY.max_model_data_mb * 2**20
    room = cap - trainset.folder_bytes(folder)
    over = noise_png(tmp_path / "over.png", int((room / 3) ** 0.5) + 20, seed=9)  # just above what is left
    with pytest.raises(AppError, match=r"training images would take .* MB: above .* \(--max-model-data-mb sets it\)"):
        client.predict(handle_file(str(over)), "shapes", "circle", api_name="/correct")
    assert trainset.folder_bytes(folder) <= cap

    assert trainset.class_counts(folder)["circle"] == 3  # the refused one was not written either


def test_two_corrections_at_once_cannot_both_take_a_class_last_place(workshop, model_dir, shapes_dir, tmp_path):
    """The class-count cap and the write are one step: four corrections released at the same instant for a class
    one short of --max-class-images, each image slow enough to check that an unlocked count would let several in."""
    url, _, _ = workshop
    models = tmp_path / "models"
    shutil.copytree(model_dir, models / "shapes")
    images = {label: files[:3] for label, files in trainset.folder_images(shapes_dir).items()}
    folder = trainset.build(models, "shapes", images, TURNED_AWAY)
    limits = Limits(training=True, max_class_images=4)
    page = TrainPage(App(ModelLibrary({"shapes": models / "shapes"}), models, limits))
    photos = [noise_png(tmp_path / f"photo{i}.png", 700, seed=200 + i) for i in range(4)]  # 1.5 MB, decoded to check
    uploads = [{"path": upload_to(url, path), "orig_name": path.name} for path in photos]
    start = threading.Barrier(len(uploads))

    def correct(upload) -> str:
        start.wait()
        try:
            return page.correct(upload, "shapes", "circle")
        except gr.Error as error:
            return str(error)

    with ThreadPoolExecutor(len(uploads)) as pool:
        said = list(pool.map(correct, uploads))
    assert sum(line.startswith("Saved to class **circle**") for line in said) == 1, said
    assert sum("--max-class-images sets it" in line for line in said) == 3, said
    assert trainset.class_counts(folder)["circle"] == limits.max_class_images


def test_downloads_are_deleted_once_sent_and_bounded_when_never_fetched(workshop, tmp_path):
    url, _, _ = workshop
    client = Client(url, verbose=False, download_files=str(tmp_path))  # not into Gradio's folder, which is measured
    before = download_bytes(url)
    for _ in range(4):  # fetched, as gradio_client and the page's link do: gone once sent
        path = client.predict("shapes", "zip", api_name="/download")
        assert "model.keras" in zipfile.ZipFile(path).namelist()  # at the top: unpacked, a folder is the model
    deadline = time.monotonic() + 10
    while download_bytes(url) > before and time.monotonic() < deadline:
        time.sleep(0.1)  # the last chunk is sent a moment before the file goes
    assert download_bytes(url) == before
    sent = httpx.get(url + "gradio_api/file=" + path)
    assert sent.status_code == 403  # deleted: the same link does not serve it twice
    # Prepared and never fetched: at most KEPT_DOWNLOADS of them stay.
    session = Client(url, verbose=False, download_files=False)
    one = None
    for _ in range(KEPT_DOWNLOADS + 3):
        one = session.predict("shapes", "zip", api_name="/download")
    size = Path(one["path"]).stat().st_size
    assert download_bytes(url) - before <= KEPT_DOWNLOADS * size * 1.1


def test_a_kill_mid_unpack_leaves_nothing_after_a_clean_restart(tmp_path, monkeypatch):
    temp = tmp_path / "tmp"  # the app's temp folder (TMPDIR)
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead = temp / f"{scratch.PREFIX}{ended.pid}-left" / "gradio"  # what a killed run left
    live = temp / f"{scratch.PREFIX}{os.getpid()}-live"  # a running process's (this one's): kept
    dead.mkdir(parents=True)
    live.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    png = _tiny_png()
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(10_000):  # 10 classes of 1,000: within every cap, so it unpacks and then checks each image
            zf.writestr(f"class{i % 10}/{i}.png", png)
    argv = [sys.executable, "app.py", "--models-dir", str(tmp_path / "models"), "--port"]
    port = free_port()
    with running_server([*argv, str(port)], port, tmp_path / "first.log") as (server, url):
        assert not dead.parent.exists() and live.exists()  # the start removed the dead run's folder only
        (folder,) = temp.glob(f"{scratch.PREFIX}{server.pid}-*")
        Client(url, verbose=False).submit(
            "many", DEFAULT_BACKBONE, 32, 1, handle_file(str(archive)), "", *[""] * 6, *[None] * 6, api_name="/train"
        )
        deadline = time.monotonic() + 120
        while not any(folder.glob("classifier-zip-*/*/*.png")) and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()  # mid-unpack (or checking what was unpacked): nothing runs after it
        server.wait()
    assert any(folder.glob("classifier-zip-*/*/*.png")) and any(folder.glob("gradio/*/many.zip"))
    port = free_port()
    with running_server([*argv, str(port)], port, tmp_path / "second.log") as (server, url):
        assert not folder.exists()  # a clean restart: the killed run's upload and unpacked files are gone
        assert len(list(temp.glob(f"{scratch.PREFIX}{server.pid}-*"))) == 1
    # running_server stopped it with SIGTERM: its own folder went too
    assert server.returncode == 0 and sorted(temp.iterdir()) == [live], (tmp_path / "second.log").read_text()


def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()
