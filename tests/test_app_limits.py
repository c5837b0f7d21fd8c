"""The running app as a stranger would try it: raw HTTP for the hostile calls, gradio_client for the normal ones.

One server for the module, with small limits so that every limit is cheap to reach.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import shutil
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from PIL import Image
from test_app import serve

from classifier.serving.app_guard import URL_REFUSED
from classifier.serving.limits import Limits

LIMITS = Limits(concurrency=1, max_queue=2, max_batch=3, max_upload=256 * 1024)
FILE_DATA = {"_type": "gradio.FileData"}  # the tag Gradio wants on a file payload it should check
SECRET = "/secret/trainer"  # where metadata.json says the model was trained


@pytest.fixture(scope="module")
def models_dir(model_dir, shapes_dir, tmp_path_factory) -> Path:
    """One model, with an example, an example that is a symlink to its weights, and a trainer's paths."""
    root = tmp_path_factory.mktemp("served")
    folder = root / "shapes"
    shutil.copytree(model_dir, folder)
    (folder / "examples").mkdir()
    shutil.copy(sorted(shapes_dir.glob("circle/*.png"))[0], folder / "examples" / "circle.png")
    (folder / "examples" / "weights.png").symlink_to(folder / "model.keras")
    meta = json.loads((folder / "metadata.json").read_text())
    meta.update(weights=f"{SECRET}/weights/inception_v3_notop.h5", cut_layer=None)
    meta["data"]["root"] = f"{SECRET}/data/shapes"
    (folder / "metadata.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def server(models_dir):
    demo, library, url = serve(models_dir, LIMITS)
    yield url, library
    demo.close()


@pytest.fixture(scope="module")
def good_image(shapes_dir) -> Path:
    return sorted(shapes_dir.glob("square/*.png"))[0]


def upload(url: str, path: Path) -> str:
    """The server-side path Gradio gives a file sent to /upload."""
    with open(path, "rb") as file:
        return httpx.post(url + "gradio_api/upload", files={"files": file}).json()[0]


@functools.cache
def fn_index(url: str, api_name: str) -> int:
    dependencies = httpx.get(url + "config").json()["dependencies"]
    return next(d["id"] for d in dependencies if d.get("api_name") == api_name)


def join(url: str, api_name: str, data: list, session: str) -> httpx.Response:
    """Put one call in the queue, as the page does, without waiting for it."""
    body = {"data": data, "fn_index": fn_index(url, api_name), "session_hash": session}
    return httpx.post(url + "gradio_api/queue/join", json=body, timeout=60)


def queue_call(url: str, api_name: str, data: list) -> tuple[bool, dict]:
    """One call through the queue: (success, output) where output holds `data` or `error`."""
    session = uuid.uuid4().hex
    joined = join(url, api_name, data, session)
    if joined.status_code != 200:
        return False, {"status": joined.status_code, "error": joined.json()["detail"]}
    with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}, timeout=120) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                return message["success"], message["output"]
    raise AssertionError(f"{api_name}: the queue closed without an answer")


def assert_refused(result: tuple[bool, dict], words: str | None):
    """A refused call: no prediction, and (when the words are ours) the message that says why."""
    success, output = result
    assert not success and "data" not in output, output
    if words:
        assert words in str(output.get("error")), output


def png_bytes(size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_every_call_goes_through_the_queue(server, good_image):
    url, _ = server
    for route in ("run/predict", "api/predict", "run/predict_batch"):
        direct = httpx.post(url + "gradio_api/" + route, json={"data": [None, None]})
        assert direct.status_code == 404 and "join the queue" in direct.json()["detail"], route
    assert Client(url, verbose=False).predict(handle_file(str(good_image)), api_name="/predict")["label"]


def test_the_queue_turns_away_calls_beyond_max_queue(server, good_image):
    url, library = server
    payload = [{"path": upload(url, good_image), "meta": FILE_DATA}, None]
    client = Client(url, verbose=False)
    with library._lock:  # every running call now waits for the model: nothing leaves the queue
        accepted = 0
        while (response := join(url, "predict", payload, uuid.uuid4().hex)).status_code == 200:
            accepted += 1
            assert accepted <= LIMITS.max_queue + LIMITS.concurrency, "the queue never filled"
        assert accepted >= LIMITS.max_queue  # however many had started running when the queue filled
        assert response.status_code == 503 and "Queue is full" in response.json()["detail"]
        with pytest.raises(QueueError, match="Queue is full"):
            client.predict(handle_file(str(good_image)), api_name="/predict")
    assert client.predict(handle_file(str(good_image)), api_name="/predict")["label"]  # and it drains


def test_a_batch_takes_at_most_max_batch_files_each_reference_counted(server, good_image):
    client = Client(server[0], verbose=False)
    table = client.predict([handle_file(str(good_image))] * LIMITS.max_batch, api_name="/predict_batch")
    assert len(table["data"]) == LIMITS.max_batch
    with pytest.raises(AppError, match=f"4 files: this app classifies at most {LIMITS.max_batch} per request"):
        client.predict([handle_file(str(good_image))] * (LIMITS.max_batch + 1), api_name="/predict_batch")
    same = {"path": upload(server[0], good_image), "meta": FILE_DATA}  # one upload, named 1,000 times
    assert_refused(queue_call(server[0], "predict_batch", [[same] * 1000, None]), "1000 files")


def test_inline_images_are_held_to_the_upload_limit(server, tmp_path):
    url, _ = server
    inline = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    success, output = queue_call(url, "predict", [{"url": inline, "path": None, "orig_name": "red.png"}, None])
    assert success and output["data"][0]["label"]
    # One character more than an upload may be: refused by its length, before any decoding.
    too_long = "data:image/png;base64," + "A" * (LIMITS.max_inline + 4)
    refused = queue_call(url, "predict", [{"url": too_long, "path": None, "orig_name": "big.png"}, None])
    assert_refused(refused, "big.png: inline image above the 0.25 MB upload limit")
    garbage = "data:image/png;base64,@@@@"
    assert_refused(queue_call(url, "predict", [{"url": garbage, "orig_name": "bad.png"}, None]), "not valid base64")
    # A request body above what one inline image needs never reaches Gradio; nor does a bigger upload.
    huge = {"url": "data:image/png;base64," + "A" * LIMITS.max_body, "path": None}
    success, output = queue_call(url, "predict", [huge, None])
    assert not success and output["status"] == 413 and "Request body above" in output["error"]
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes() + bytes(LIMITS.max_upload))
    with open(big, "rb") as file:
        assert httpx.post(url + "gradio_api/upload", files={"files": file}).status_code == 413


@pytest.fixture
def url_server():
    """A loopback web server that counts the requests it gets: the app must send none."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(png_bytes())

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/cat.png", hits
    httpd.shutdown()


def test_urls_are_refused_never_fetched(server, url_server):
    url, _ = server
    image_url, hits = url_server
    for payload in ({"path": image_url, "meta": FILE_DATA}, {"url": image_url}, {"path": image_url}):
        assert_refused(queue_call(url, "predict", [payload, None]), URL_REFUSED)
    assert_refused(queue_call(url, "predict_batch", [[{"path": image_url, "meta": FILE_DATA}], None]), URL_REFUSED)
    relayed = httpx.get(url + "gradio_api/file=" + image_url)
    assert relayed.status_code == 403 and relayed.json()["detail"] == URL_REFUSED
    assert hits == []


def test_the_server_reads_no_file_the_client_names(server, models_dir, good_image, tmp_path):
    url, _ = server
    outside = tmp_path / "outside.png"  # a perfectly good image, but not uploaded: never classified
    shutil.copy(good_image, outside)
    named = [outside, models_dir / "shapes" / "model.keras", Path("/etc/passwd"), tmp_path / "absent.png"]
    for path in named:
        # Without Gradio's file tag our check refuses it, in the same words whether the file exists or not.
        message = f"{path.name}: not a file uploaded to this app"
        assert_refused(queue_call(url, "predict", [{"path": str(path)}, None]), message)
    # With the tag Gradio refuses it first, and so it does for a batch, tagged or not.
    assert_refused(queue_call(url, "predict", [{"path": str(outside), "meta": FILE_DATA}, None]), None)
    assert_refused(queue_call(url, "predict_batch", [[{"path": str(outside), "meta": FILE_DATA}], None]), None)
    assert_refused(queue_call(url, "predict_batch", [[{"path": str(outside)}], None]), None)
    assert_refused(queue_call(url, "predict", [str(outside), None]), None)


def test_only_the_shown_files_can_be_fetched_and_no_machine_path_is_shown(server, models_dir):
    url, _ = server
    config = httpx.get(url + "config").text
    success, output = queue_call(url, "model_view", ["shapes"])
    assert success
    card, curves, _, _, confusion, examples = output["data"]
    shown = [curves["value"], confusion["value"], *(sample[0] for sample in examples["samples"])]
    assert [file["orig_name"] for file in shown] == ["curves.png", "confusion_matrix.png", "circle.png"]
    for file in shown:
        picture = httpx.get(file["url"])
        assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG"), file["orig_name"]
    folder = models_dir / "shapes"
    for name in ("model.keras", "metadata.json", "labels.txt", "curves.png", "examples/circle.png"):
        for path in (folder / name, folder.resolve() / name):
            assert httpx.get(f"{url}gradio_api/file={path}").status_code in (403, 404), name
    # The card names the weights file, not where it was; the page never names a model folder.
    assert "whole network" in card and "weights: inception_v3_notop.h5" in card
    for text in (config, json.dumps(output)):
        assert SECRET not in text and str(models_dir) not in text and str(models_dir.resolve()) not in text


def test_uploads_are_deleted_and_nothing_else(tmp_path, good_image):
    demo, _, url = serve(tmp_path / "no-models", Limits(delete_cache=(1, 1)))
    try:
        others = Path(get_upload_folder()) / f"not-ours-{uuid.uuid4().hex}"  # another app's file, same folder
        others.mkdir(parents=True)
        (others / "keep.png").write_bytes(png_bytes())
        unique = tmp_path / "unique.png"
        Image.new("RGB", (8, 8), tuple(uuid.uuid4().bytes[:3])).save(unique)
        uploaded = Path(upload(url, unique))
        assert uploaded.is_file()
        deadline = time.monotonic() + 60
        while uploaded.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not uploaded.exists(), "delete_cache never deleted the upload"
        assert (others / "keep.png").is_file()
    finally:
        demo.close()
    assert (others / "keep.png").is_file()
    shutil.rmtree(others)
