"""Loading a model stalls no one else, over real HTTP: a lock per model, the LiteRT conversion in a child process.

One server for the module, serving the session's model `shapes` and `fresh`: a small model of classes a, b, c
whose backbone (random weights of its own) no cache has converted, so its first load converts it, which takes
seconds (the child process imports TensorFlow). Figures, before and after: benchmarks/load_stall.py.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import keras
import pytest
from conftest import MOBILENET_STEM, tiny_config
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_app import serve

from classifier.model import litert
from classifier.model.artifacts import load_model, read_metadata, save_model_dir
from classifier.model.network import build_model, feature_extractor
from classifier.serving.limits import Limits

CEILING = 4.0  # seconds for one prediction on a loaded model, however busy the machine: it took 19.5 s before
ANSWERED = 8  # predictions answered during a load, at least: before, one waited for the whole load
NEW_CLASSES = ["a", "b", "c"]
PAUSE = 0.2  # seconds between a client's predictions: a visitor, not a loop that leaves the load no CPU


def new_model(folder: Path, shapes_dir: Path, model_dir: Path, seed: int) -> Path:
    """The MobileNetV2 stem with random weights of `seed`'s (its own cache key), classes a, b, c."""
    keras.utils.set_random_seed(seed)
    model = build_model(tiny_config(shapes_dir, folder, **{**MOBILENET_STEM, "weights": "none"}), 3)
    size = MOBILENET_STEM["image_size"]
    return save_model_dir(
        folder, model, replace(read_metadata(model_dir), class_names=NEW_CLASSES, image_size=(size,) * 2)
    )


@pytest.fixture(scope="module")
def models_dir(model_dir, shapes_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(model_dir, root / "shapes")
    new_model(root / "fresh", shapes_dir, model_dir, seed=2301)
    return root


@pytest.fixture(scope="module")
def server(models_dir):
    # Two queue workers: one request may wait for a load, the other worker stays free for the loaded model.
    demo, library, url = serve(models_dir, Limits(concurrency=2))
    library.get("shapes")  # loaded, as app.py loads the first model before it serves
    yield url, library
    demo.close()


@pytest.fixture(scope="module")
def image(shapes_dir) -> str:
    return str(sorted(shapes_dir.glob("circle/*.png"))[0])


def cache_entry(folder: Path) -> Path:
    """Where the LiteRT conversion of `folder`'s backbone is cached."""
    size = tuple(read_metadata(folder).image_size)
    return litert.cache_dir() / f"{litert.cache_key(feature_extractor(load_model(folder)), size)}.tflite"


def while_running(call, then) -> list:
    """Run `call` in a thread and `then()` over and over until it ends: (seconds, result) of each `then()`."""
    thread = threading.Thread(target=call)
    thread.start()
    results = []
    while thread.is_alive():
        started = time.monotonic()
        result = then()
        results.append((time.monotonic() - started, result))
        time.sleep(PAUSE)
    thread.join()
    return results


def test_a_first_load_with_its_conversion_stalls_no_other_model(server, image):
    """A stranger asks for a model nobody loaded yet: its load (and the LiteRT conversion of its backbone) takes
    seconds, and the other client's predictions on a loaded model go on being answered in their usual time. With
    --concurrency 2, a second request for a model while one loads is refused at once: loads hold one of the two
    queue workers, never both."""
    url, library = server
    client, stranger = Client(url, verbose=False), Client(url, verbose=False)
    entry = cache_entry(library.paths["fresh"])
    assert not entry.exists()
    answered, refused = [], []

    def predict_shapes():
        if not refused and library._loading.get("fresh", threading.Lock()).locked():  # the stranger's load has begun
            with pytest.raises(AppError, match="model 'fresh' is being loaded for another request; send yours again"):
                client.predict(handle_file(image), "fresh", api_name="/predict")
            refused.append(True)
        return client.predict(handle_file(image), "shapes", api_name="/predict")

    results = while_running(
        lambda: answered.append(stranger.predict(handle_file(image), "fresh", api_name="/predict")), predict_shapes
    )
    assert answered and answered[0]["label"] in NEW_CLASSES  # the stranger waited for its own model's load
    assert entry.is_file() and refused  # which converted its backbone while the other client was being answered
    latencies = [seconds for seconds, _ in results]
    assert len(latencies) >= ANSWERED and max(latencies) < CEILING, latencies


def test_a_reload_answers_with_the_old_model_until_the_new_one_is_loaded(server, image, tmp_path):
    """A retrain's new folder (here the other model's, classes a, b, c, its backbone's conversion not cached) loads
    while the old model goes on answering for its name; then the new one answers, and the old one refuses what it
    is sent from then on."""
    url, library = server
    client = Client(url, verbose=False)
    old = library.get("shapes")
    retrained = shutil.copytree(library.paths["fresh"], tmp_path / "shapes")
    cache_entry(retrained).unlink(missing_ok=True)  # converted again: the load takes seconds

    def predict():
        try:
            return client.predict(handle_file(image), "shapes", api_name="/predict")["label"]
        except AppError as error:  # a request that got the old model the instant it was replaced is told so
            assert "was replaced; send the request again" in str(error)
            return None

    labels = [label for _, label in while_running(lambda: library.add("shapes", retrained), predict)]
    # The old model's classes throughout the load; the last call may have met the swap.
    assert len(labels) >= ANSWERED and set(labels[:-1]) <= {"circle", "square", "triangle"}, labels
    assert library.get("shapes").model_dir == retrained and predict() in NEW_CLASSES
    with pytest.raises(RuntimeError, match="was replaced"):
        old.probabilities_of_pixels(old.pixels(image)[None])
