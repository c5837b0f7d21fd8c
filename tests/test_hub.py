"""A hub: backbone travels inside its model folder; a model.keras whose handle points anywhere else is refused,
and so is a bundled SavedModel that would run side-effecting ops.

The TF-Hub model is a real SavedModel built here (a tf.Module mapping images to a vector); the
tampered folders are edited the way an attacker would: config.json inside the model.keras zip, or
hub/ replaced by a SavedModel that writes a file.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import zipfile

import gradio as gr
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import free_port, run_main, tiny_config

import app as app_cli
from classifier import predict
from classifier.errors import UsageError
from classifier.model.hub import HubFeatures
from classifier.predict import Predictor
from classifier.serving.app_ui import App
from classifier.serving.library import ModelLibrary, find_models
from classifier.shapes import make_shapes_dataset
from classifier.train import train


class _TinyFeatures(tf.Module):
    """A stand-in TF-Hub image feature vector: mean colour -> 6 relu features."""

    def __init__(self, seed: int):
        self.w = tf.Variable(tf.random.stateless_normal((3, 6), seed=(seed, 2)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images):
        return tf.nn.relu(tf.reduce_mean(images, axis=[1, 2]) @ self.w)


@tf.function
def _write_file(path):  # a library function of the caller's graph, not an object of the SavedModel: found by the walk
    tf.io.write_file(path, "written by a model folder")


class _WritesOnCall(_TinyFeatures):
    """Hostile: the same features, and a file written on every call."""

    def __init__(self, seed: int, path):
        super().__init__(seed)
        self.path = str(path)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images):
        _write_file(self.path)
        return tf.nn.relu(tf.reduce_mean(images, axis=[1, 2]) @ self.w)


class _WriteOnLoad(tf.lookup.KeyValueTensorInitializer):
    """A table initialiser that writes a file: tf.saved_model.load runs it, before any call."""

    def __init__(self, path):
        super().__init__(["scale"], [1.0])
        self.path = str(path)

    def initialize(self, table):
        with tf.control_dependencies([tf.io.write_file(self.path, "written by a model folder")]):
            return super().initialize(table)


class _WritesOnLoad(_TinyFeatures):
    """Hostile: the same features (times 1.0 from a table), and a file written while loading."""

    def __init__(self, seed: int, path):
        super().__init__(seed)
        self.table = tf.lookup.StaticHashTable(_WriteOnLoad(path), 0.0)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images):
        return tf.nn.relu(tf.reduce_mean(images, axis=[1, 2]) @ self.w) * self.table.lookup(tf.constant("scale"))


@pytest.fixture(scope="module")
def hub_model(tmp_path_factory):
    """(trained result, its images, the SavedModel it was trained from): 2 classes x 5 images, one epoch."""
    root = tmp_path_factory.mktemp("hub")
    data = make_shapes_dataset(root / "shapes", per_class=5, size=32, classes=["circle", "square"])
    source = root / "hub_source"
    tf.saved_model.save(_TinyFeatures(seed=1), str(source))
    config = tiny_config(
        data,
        root / "models" / "hub_shapes",
        backbone=f"hub:{source}",
        weights="imagenet",
        cut_layer=None,
        image_size=32,
        epochs=1,
        batch_size=8,
        dense_units=8,
        augment=False,
    )
    return train(config, log=lambda *_: None), sorted(data.glob("*/*.png"))[:3], source


@pytest.fixture
def copy_of(hub_model, tmp_path):
    """A fresh copy of the trained hub model folder, at tmp_path/NAME/hub_shapes."""
    return lambda name: shutil.copytree(hub_model[0].model_dir, tmp_path / name / "hub_shapes")


def saved_handle(model_dir) -> str:
    return _hub_layer_config(json.loads(zipfile.ZipFile(model_dir / "model.keras").read("config.json")))["handle"]


def tamper(model_dir, handle: str) -> None:
    """Rewrite the hub layer's handle in model.keras's config.json, keeping every other entry of the zip."""
    path = model_dir / "model.keras"
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    _hub_layer_config(config)["handle"] = handle
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def _hub_layer_config(node):
    """The `config` dict of the HubFeatures layer, wherever it is nested."""
    if isinstance(node, dict):
        if node.get("class_name") == "HubFeatures":
            return node["config"]
        node = list(node.values())
    for child in node if isinstance(node, list) else []:
        found = _hub_layer_config(child)
        if found is not None:
            return found
    return None


def test_a_hub_model_folder_carries_its_saved_model_and_works_anywhere(hub_model, tmp_path):
    result, images, source = hub_model
    assert (result.model_dir / "hub" / "saved_model.pb").is_file() and saved_handle(result.model_dir) == "hub"
    lines: list[str] = []
    served = Predictor(result.model_dir, log=lines.append)
    expected = served.predict_proba(images)
    # A SavedModel's computation is not in its layer's settings, so no cached LiteRT conversion could be told
    # apart from another SavedModel's with the same weights: a hub backbone runs in TensorFlow.
    assert served.engine == "tensorflow" and lines == [
        "note: predicting with TensorFlow: LiteRT's cache cannot identify the backbone's HubFeatures"
    ], lines
    shutil.copytree(result.model_dir, tmp_path / "a" / "hub_shapes")
    moved = shutil.move(tmp_path / "a" / "hub_shapes", tmp_path / "b" / "hub_shapes")
    shutil.rmtree(source)  # the SavedModel it was trained from is gone
    np.testing.assert_allclose(Predictor(moved).predict_proba(images), expected, atol=1e-6)
    batch = np.stack([Predictor(moved).pixels(path) for path in images])
    np.testing.assert_allclose(expected, result.model(batch).numpy(), atol=1e-6)


def test_plain_keras_loading_refuses_the_hub_layer(hub_model):
    with pytest.raises(UsageError, match="classifier.model.artifacts.load_model"):
        keras.models.load_model(hub_model[0].model_dir / "model.keras")


@pytest.fixture
def http_server():
    """A loopback HTTP server that records every request it gets (and answers 404): (base URL, requests)."""
    requests = []

    class Recorder(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Recorder, directory="/nonexistent"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def test_a_handle_pointing_outside_the_folder_is_refused_without_being_fetched(
    hub_model, copy_of, tmp_path, http_server, capsys
):
    url, requests = http_server
    elsewhere = tmp_path / "elsewhere"
    tf.saved_model.save(_TinyFeatures(seed=7), str(elsewhere))  # a real SavedModel, just not the folder's own
    folders = {handle: copy_of(name) for name, handle in [("abs", str(elsewhere)), ("url", f"{url}/m.tar.gz")]}
    folders["../../elsewhere"] = copy_of("dotdot")
    for handle, folder in folders.items():
        tamper(folder, handle)
    linked = copy_of("symlink")  # handle untouched ("hub"), but hub/ leads out of the folder
    shutil.rmtree(linked / "hub")
    (linked / "hub").symlink_to(elsewhere, target_is_directory=True)
    image = hub_model[1][0]

    for folder in [*folders.values(), linked]:
        code, _, err = run_main(predict.main, [folder, image], capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert str(folder) in err and "outside the model folder" in err and "--trust-hub-handle" in err
        with pytest.raises(UsageError, match="outside the model folder"):  # the app's loading path
            ModelLibrary(find_models(folder.parent)).get(None)
        code, _, err = run_main(app_cli.main, ["--model", folder, "--port", free_port()], capsys)
        assert code == 2 and err.count("\n") == 1 and "--trust-hub-handle" in err
    assert requests == []  # refused before anything was fetched

    code, out, err = run_main(predict.main, [folders[str(elsewhere)], image, "--trust-hub-handle"], capsys)
    assert code == 0 and image.name in out, err  # trusted, the handle loads as written
    backbone = Predictor(linked, trust_hub_handle=True).model.get_layer("backbone")
    assert backbone.get_layer("hub_features").source == linked / "hub"  # followed the symlink, as trusted


@pytest.mark.parametrize("hostile", [_WritesOnCall, _WritesOnLoad], ids=["on-call", "on-load"])
def test_a_bundled_saved_model_with_side_effects_is_refused_before_it_runs(
    hostile, hub_model, copy_of, tmp_path, capsys
):
    """hub/ swapped for a SavedModel that writes a file: refused in one line naming the folder, by predict, the app
    and training alike, and nothing written; trusted, it loads and writes (what the check stops is real)."""
    image, written = hub_model[1][0], tmp_path / "written.txt"
    folder = copy_of("hostile")
    shutil.rmtree(folder / "hub")
    tf.saved_model.save(hostile(seed=1, path=written), str(folder / "hub"))
    written.unlink(missing_ok=True)  # saving may have run the initialiser

    code, _, err = run_main(predict.main, [folder, image], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert str(folder) in err and "WriteFile (file I/O)" in err and "--trust-hub-handle" in err
    with pytest.raises(gr.Error) as refused:  # the page: the model by name, no path of this machine
        App(ModelLibrary(find_models(folder.parent)), tmp_path).predictor(None)
    assert "'hub_shapes'" in refused.value.message and "WriteFile" in refused.value.message
    assert str(folder) not in refused.value.message
    with pytest.raises(UsageError, match=r"--backbone hub:.*WriteFile.*would refuse"):  # training refuses it too
        HubFeatures(str(folder / "hub"))
    assert not written.exists()

    Predictor(folder, trust_hub_handle=True).predict(image)
    assert written.exists()
