"""The real app on a loopback port, called the way users call it: gradio_client and a browser."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, free_port, run_main
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from test_images import _variants

import app as app_cli
from classifier.inference.batched import BatchedPredictor
from classifier.model.confidence import percent
from classifier.predict import Predictor
from classifier.serving.app_ui import App, launch
from classifier.serving.library import ModelLibrary, find_models
from classifier.serving.limits import DEFAULT_LIMITS, Limits
from classifier.serving.space import gradio_pin, read_front_matter
from classifier.serving.wording import local_time

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Chromium's fake camera (a moving test pattern), allowed without asking: the webcam tests' camera.
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@contextlib.contextmanager
def browser_page(url: str, height: int = 900, width: int = 1280, camera: bool = False, **options):
    """A headless Chromium page at `url`, 1280 px wide unless told (the test is skipped without playwright); with
    `camera`, Chromium's fake camera is the webcam; `options`: more of playwright's page options (timezone_id, ...)."""
    sync_playwright = pytest.importorskip(
        "playwright.sync_api", reason="needs the playwright Python package"
    ).sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        args = CHROMIUM_ARGS + (FAKE_CAMERA if camera else [])
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, **options)
            page.goto(url)
            yield page
        finally:
            browser.close()


def serve(models_dir: Path, limits: Limits = DEFAULT_LIMITS):
    """Launch the app as `python app.py` would, but without blocking: (demo, library, url)."""
    library = ModelLibrary(find_models(models_dir))
    try:
        demo = launch(library, models_dir, "127.0.0.1", free_port(), limits, block=False)
    except ValueError as error:
        # Gradio's own check at launch, one HEAD of the page with a 3 s timeout, can time out while the other xdist
        # worker keeps both cores busy (seen once in many runs): once more on another port, then it is a failure.
        if "localhost is not accessible" not in str(error):
            raise
        demo = launch(library, models_dir, "127.0.0.1", free_port(), limits, block=False)
    return demo, library, demo.local_url


@pytest.fixture(scope="module")
def models_dir(model_dir, shapes_dir, tmp_path_factory) -> Path:
    """Two copies of the session's model (so the page has a picker), the first with examples."""
    root = tmp_path_factory.mktemp("served")
    for name in ("shapes", "shapes_copy"):
        shutil.copytree(model_dir, root / name)
    (root / "shapes" / "examples").mkdir()
    for path in sorted(shapes_dir.glob("*/*_000.png")):
        shutil.copy(path, root / "shapes" / "examples" / path.name)
    return root


@pytest.fixture(scope="module")
def server(models_dir):
    demo, library, url = serve(models_dir)
    library.get(None)  # loaded before the first visitor, as app.py does
    yield url, library
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(model_dir)


def confidences(result: dict) -> dict[str, float]:
    return {item["label"]: item["confidence"] for item in result["confidences"]}


def assert_same_prediction(result: dict, probabilities: np.ndarray, class_names, what=""):
    expected = dict(zip(class_names, probabilities.tolist(), strict=True))
    assert result["label"] == max(expected, key=expected.get), what
    for label, confidence in confidences(result).items():
        assert confidence == pytest.approx(expected[label], abs=1e-5), what


def test_good_image_returns_label_and_confidences(client, predictor, shapes_dir):
    path = sorted(shapes_dir.glob("triangle/*.png"))[0]
    result = client.predict(handle_file(str(path)), api_name="/predict")
    assert set(confidences(result)) == set(predictor.class_names)
    assert_same_prediction(result, predictor.predict_proba([path])[0], predictor.class_names)
    # The picker's second model answers too, by name.
    other = client.predict(handle_file(str(path)), "shapes_copy", api_name="/predict")
    assert other["label"] == result["label"]


def test_every_upload_kind_goes_through_the_predictors_rules(client, predictor, tmp_path):
    files = _variants(tmp_path)
    jobs = {name: client.submit(handle_file(str(path)), api_name="/predict") for name, path in files.items()}
    expected = predictor.predict_proba(list(files.values()))  # one batch, while the app works through the calls
    for (name, job), probabilities in zip(jobs.items(), expected, strict=True):
        assert_same_prediction(job.result(timeout=60), probabilities, predictor.class_names, name)

    # Independent references for the rules that change pixels most: the app must apply each.
    raw = np.asarray(Image.open(files["exif6.jpg"]).convert("RGB"), np.float32)
    rgba = np.asarray(Image.open(files["rgba.png"]), np.float32)
    over_white = rgba[..., :3] * rgba[..., 3:] / 255 + 255 * (1 - rgba[..., 3:] / 255)
    first_frame = np.asarray(Image.open(files["animated.gif"]).convert("RGB"), np.float32)
    for name, pixels in [("exif6.jpg", np.rot90(raw, k=-1)), ("rgba.png", over_white), ("animated.gif", first_frame)]:
        result = client.predict(handle_file(str(files[name])), api_name="/predict")
        assert_same_prediction(result, predictor.predict_proba([pixels])[0], predictor.class_names, name)


def bad_uploads(folder: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of bad upload, with the words its error must contain."""
    text = folder / "notes.png"
    text.write_text("not an image at all")
    png = folder / "truncated.png"
    Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)).save(png)
    png.write_bytes(png.read_bytes()[:-400])
    huge = folder / "huge.png"
    Image.new("1", (11_000, 10_000)).save(huge)  # 110 M pixels: a small file, above the 100 M limit
    bomb = folder / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 400 M pixels: Pillow's decompression-bomb error
    heic = folder / "IMG_0001.HEIC"  # an iPhone photo: an ISO box 'ftyp' of brand heic (no HEIC decoder is kept)
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200))
    renamed = folder / "IMG_0002.jpg"  # the same, named as a JPEG: told by its content
    renamed.write_bytes(heic.read_bytes())
    return {
        "heic": (
            heic,
            "IMG_0001.HEIC: a HEIC/HEIF photo (the iPhone camera's format), which this app cannot read: "
            "convert it to JPEG first",
        ),
        "heic named .jpg": (renamed, "IMG_0002.jpg: a HEIC/HEIF photo"),
        "non-image": (text, "notes.png: not an image"),
        "corrupt": (png, "truncated.png: corrupt or truncated"),
        "too many pixels": (huge, "huge.png: 11000x10000 is 110,000,000 pixels, above the limit"),
        "decompression bomb": (bomb, "bomb.png: refused, the image is a decompression bomb"),
    }


def test_bad_uploads_get_a_clear_message_and_the_server_keeps_serving(client, shapes_dir, tmp_path):
    for kind, (path, message) in bad_uploads(tmp_path).items():
        with pytest.raises(AppError) as caught:
            client.predict(handle_file(str(path)), api_name="/predict")
        assert message in str(caught.value), kind
        assert "/tmp" not in str(caught.value) and "Traceback" not in str(caught.value), kind
    good = sorted(shapes_dir.glob("circle/*.png"))[0]
    assert client.predict(handle_file(str(good)), api_name="/predict")["label"]


def test_concurrent_calls_all_answered_correctly(client, predictor, shapes_dir, tmp_path):
    paths = sorted(shapes_dir.glob("*/*.png"))[:12]
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 not a jpeg")
    jobs = [client.submit(handle_file(str(path)), api_name="/predict") for path in paths]
    bad = client.submit(handle_file(str(junk)), api_name="/predict")  # fails alone, mid-stream
    expected = predictor.predict_proba(paths)
    for job, probabilities in zip(jobs, expected, strict=True):
        assert_same_prediction(job.result(timeout=60), probabilities, predictor.class_names)
    with pytest.raises(AppError, match="junk.jpg"):
        bad.result(timeout=60)


def test_batcher_merges_requests_that_wait_for_a_busy_model(predictor, shapes_dir):
    batcher = BatchedPredictor(predictor, max_batch=16)
    pixels = np.stack([predictor.pixels(p) for p in sorted(shapes_dir.glob("*/*.png"))[:16]])
    expected = predictor.probabilities_of_pixels(pixels)
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(9)

    def one(i):
        start.wait()
        results[i] = batcher.probabilities_of_pixels(pixels[i : i + 1])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    busy = batcher.probabilities_of_pixels(pixels)  # 16 images: the 8 single requests queue behind it
    for thread in threads:
        thread.join()
    np.testing.assert_allclose(busy, expected, atol=1e-5)
    for i in range(8):
        np.testing.assert_allclose(results[i][0], expected[i], atol=1e-5)
    assert batcher.images == 24 and batcher.calls < 9  # fewer model calls than requests


def test_a_closed_batcher_answers_what_it_holds_then_its_worker_ends(predictor, shapes_dir):
    """A retrain replaces a model: its batcher answers the requests already queued, refuses later ones, and its
    worker thread ends, so the old model's memory can go."""
    before = set(threading.enumerate())
    batcher = BatchedPredictor(predictor)
    (worker,) = set(threading.enumerate()) - before  # its own worker (other tests' batchers share the name)
    pixels = np.stack([predictor.pixels(p) for p in sorted(shapes_dir.glob("*/*.png"))[:2]])
    np.testing.assert_allclose(batcher.probabilities_of_pixels(pixels), predictor.probabilities_of_pixels(pixels))
    batcher.close()
    worker.join(timeout=30)
    assert not worker.is_alive()
    with pytest.raises(RuntimeError, match="was replaced; send the request again"):
        batcher.probabilities_of_pixels(pixels)


def test_batch_tab_reports_each_file(client, shapes_dir, tmp_path):
    good = sorted(shapes_dir.glob("*/*_001.png"))
    broken = tmp_path / "broken.gif"
    broken.write_bytes(b"GIF89a")
    table = client.predict([handle_file(str(p)) for p in [*good, broken]], api_name="/predict_batch")
    rows = {row[0]: row for row in table["data"]}
    assert set(rows) == {p.name for p in good} | {"broken.gif"}
    for path in good:
        file, label, confidence, error, top = rows[path.name]
        assert label in ("circle", "square", "triangle") and top.startswith(f"{label} {confidence}") and not error
        assert re.fullmatch(r"\d{1,3}\.\d%", confidence)  # a percentage, as everywhere on the page
    file, label, confidence, error, top = rows["broken.gif"]
    assert "broken.gif" in error and not label and not confidence and not top


def test_not_sure_below_the_models_own_threshold(model_dir, predictor, shapes_dir, tmp_path):
    """A model whose metadata.json threshold falls between two images' top probabilities: the page and the API say
    "Not sure" with the top guess for the one below it, the confidences still there, and the batch table marks it."""
    images = sorted(shapes_dir.glob("*/*_00[0-2].png"))
    confidence = predictor.predict_proba(images).max(axis=1)
    unsure, sure = images[int(confidence.argmin())], images[int(confidence.argmax())]
    assert confidence.min() < confidence.max(), "the session model is equally sure of every image"
    folder = tmp_path / "models" / "picky"
    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    threshold = float(confidence.min() + confidence.max()) / 2
    (folder / "metadata.json").write_text(
        json.dumps({**meta, "min_confidence": threshold, "min_confidence_coverage": 0.5})
    )
    demo, library, url = serve(folder.parent)
    try:
        client = Client(url, verbose=False)
        result = client.predict(handle_file(str(unsure)), api_name="/predict")
        top, p = predictor.predict(unsure)[0]
        assert result["label"] == f"Not sure (top guess: {top}, {percent(p)})"
        assert confidences(result) == pytest.approx(dict(predictor.predict(unsure)), abs=1e-5)
        assert client.predict(handle_file(str(sure)), api_name="/predict")["label"] == predictor.predict(sure)[0][0]
        table = client.predict([handle_file(str(unsure)), handle_file(str(sure))], api_name="/predict_batch")
        sure_label = predictor.predict(sure)[0][0]
        assert [row[1] for row in table["data"]] == [f"not sure (top guess: {top})", sure_label]  # in words
        card = App(library, folder.parent).card("picky")
        shown = percent(threshold, up=True)
        assert f"**Not sure below:** {shown} top probability (the model's own: it answers 50.0% of" in card
        # The threshold and the answer's figure are the one rule's: the "not sure" figure is below the card's.
        assert float(percent(p)[:-1]) < float(shown[:-1])
    finally:
        demo.close()
    overridden = App(ModelLibrary({"picky": folder}, min_confidence=0.25), folder.parent).card("picky")
    assert "**Not sure below:** 25.0% top probability (set by `--min-confidence`)" in overridden


def test_card_examples_and_curves_come_from_the_model_folder(models_dir, model_dir):
    app = App(ModelLibrary(find_models(models_dir)), models_dir)
    card = app.card("shapes")
    assert "circle, square, triangle" in card and "75 x 75" in card
    assert "mobilenet_v2, cut at `block_1_expand_relu`, weights: ImageNet" in card
    meta = Predictor(model_dir).metadata
    images = meta.data.validation_images
    assert f"**Validation accuracy {percent(meta.val_accuracy)} on {images} images**" in card
    assert f"only {images} validation images: one image moves the accuracy by" in card  # fewer than 50
    assert local_time(meta.trained_at) in card and 'datetime="' in card  # the page shows it in local time
    assert [p.name for p in app.examples("shapes")] == ["circle_000.png", "square_000.png", "triangle_000.png"]
    assert app.examples("shapes_copy") == []
    assert app.curves("shapes")[0].endswith("curves.png")  # training wrote it
    table, confusion = app.evaluation("shapes")
    assert (
        "circle" in table and "triangle" in table and "accuracy" in table and confusion.endswith("confusion_matrix.png")
    )
    for name in ("curves.png", "metrics.json", "confusion_matrix.png"):
        (models_dir / "shapes_copy" / name).unlink()
    app = App(ModelLibrary(find_models(models_dir)), models_dir)  # the page shows what the folders held at start
    picture, history = app.curves("shapes_copy")  # no curves.png: the history from metadata.json, drawn as training
    assert picture is None and [ax.get_title() for ax in history.axes] == ["accuracy", "loss"]  # draws curves.png
    assert app.evaluation("shapes_copy") == (None, None)


def test_card_words_for_weights_and_backbones(models_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(models_dir / "shapes", folder)
    meta = json.loads((folder / "metadata.json").read_text())
    app = App(ModelLibrary({"m": folder}), tmp_path)
    for backbone, cut, weights, words in [
        ("inception_v3", "mixed7", "none", "inception_v3, cut at `mixed7`, weights: none (trained from scratch)"),
        ("mobilenet_v2", None, "imagenet", "mobilenet_v2, whole network, weights: ImageNet"),
        ("mobilenet_v2", "top", "/home/me/w/mobilenet.h5", "mobilenet_v2, whole network, weights: mobilenet.h5"),
        ("hub:/home/me/hub/effnet_b0/", None, "imagenet", "TF-Hub model `effnet_b0`"),
        ("hub:https://tfhub.dev/google/x/5", None, "imagenet", "TF-Hub model `https://tfhub.dev/google/x/5`"),
    ]:
        (folder / "metadata.json").write_text(
            json.dumps({**meta, "backbone": backbone, "cut_layer": cut, "weights": weights})
        )
        card = app.card("m")
        assert words in card and "/home/me" not in card, backbone


def test_without_a_model_the_page_says_how_to_train_one(tmp_path, shapes_dir):
    demo, _, url = serve(tmp_path / "models")
    try:
        page_config = urllib.request.urlopen(url + "config", timeout=10).read().decode()
        assert "No trained model yet" in page_config and "python -m classifier.train --data" in page_config
        with pytest.raises(AppError, match="python -m classifier.train"):
            Client(url, verbose=False).predict(
                handle_file(str(sorted(shapes_dir.glob("*/*.png"))[0])), api_name="/predict"
            )
    finally:
        demo.close()


def test_command_line_errors_are_one_line(tmp_path, capsys):
    for argv, message in [
        (["--port", "http"], "--port http: not a port number"),
        (["--port", "70000"], "--port 70000: must be between 1 and 65535"),
        (["--model", tmp_path], "not a model folder"),
        (["--max-batch", "0"], "--max-batch 0: must be at least 1"),
        (["--concurrency", "four"], "--concurrency four: not a whole number"),
        (["--min-confidence", "1.5"], "--min-confidence 1.5: must be a number from 0 up to (not including) 1"),
    ]:
        code, _, err = run_main(app_cli.main, argv, capsys)
        assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_limits_come_from_flags_or_the_environment(monkeypatch):
    monkeypatch.setenv("CLASSIFIER_MAX_BATCH", "7")
    monkeypatch.setenv("CLASSIFIER_MAX_QUEUE", "9")
    monkeypatch.setenv("CLASSIFIER_MIN_CONFIDENCE", "0.6")
    args = app_cli.parse_args(["--max-queue", "5"])
    assert (args.concurrency, args.max_queue, args.max_batch) == (DEFAULT_LIMITS.concurrency, 5, 7)
    assert args.min_confidence == 0.6 and app_cli.parse_args(["--min-confidence", "0"]).min_confidence == 0.0


def test_readme_is_a_space_pinned_to_the_requirements_gradio():
    meta = read_front_matter((ROOT / "README.md").read_text())
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["sdk_version"] == gradio_pin((ROOT / "requirements.txt").read_text())
    assert {"title", "emoji", "colorFrom", "colorTo", "pinned", "license"} <= set(meta)


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (CI installs it: apt-get install chromium)",
)
def test_browser_uploads_an_image_and_reads_the_label(server, predictor, shapes_dir, models_dir, tmp_path):
    url, _ = server
    path = sorted(shapes_dir.glob("square/*.png"))[0]
    ranked = predictor.predict(path)
    with browser_page(url, timezone_id="Asia/Tokyo") as page:  # not the server's zone (UTC)
        page.wait_for_selector("input[type=file]", state="attached", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app_loaded.png"), full_page=True)
        assert "circle, square, triangle" in page.inner_text("body")  # the model card
        # The card's date is the browser's local time (Tokyo), not the UTC the server writes.
        trained = page.locator("time[data-local]").first
        trained.wait_for(timeout=30_000)
        local = page.evaluate(
            "iso => new Date(iso).toLocaleString(undefined, {dateStyle: 'medium', timeStyle: 'short'})",
            Predictor(models_dir / "shapes").metadata.trained_at,
        )
        assert trained.inner_text() == local and "UTC" not in local
        page.locator("input[type=file]").first.set_input_files(str(path))
        answer = page.locator("#prediction .answer h2")
        answer.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app_predicted.png"), full_page=True)
        assert answer.inner_text().strip() == ranked[0][0]
        # Each bar's figure is the one rounding rule's (Gradio's own bars would round to whole percents).
        bars = [line.split() for line in page.locator("#prediction .answer .bar").all_inner_texts()]
        assert bars == [[label, percent(p)] for label, p in ranked]
        assert str(models_dir) not in page.content()  # the pictures shown are copies, not the model folder's

        # Many images: a bad file's error is on screen at 1280 px, the confidences percentages.
        broken = tmp_path / "broken.gif"
        broken.write_bytes(b"GIF89a")
        page.get_by_role("tab", name="Many images").click()
        page.locator("input[type=file][multiple]").last.set_input_files([str(path), str(broken)])
        page.get_by_role("button", name="Classify all").click()
        page.wait_for_timeout(300)
        error = page.get_by_text("broken.gif: ").filter(visible=True).first  # the table's hidden copy is not shown
        try:
            error.wait_for(timeout=30_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "app_many_images.png"), full_page=True)
        box = error.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + 40 < 1280, box  # its start is on screen, not scrolled away
        assert page.get_by_text(percent(ranked[0][1]), exact=True).filter(visible=True).count() == 1
        page.screenshot(path=str(ARTIFACTS / "app_many_images.png"), full_page=True)
