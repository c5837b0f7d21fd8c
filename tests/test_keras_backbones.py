"""`--backbone keras:FILE.keras`: a Keras model file of built-in layers as a frozen backbone, refused in one line
when it holds a custom layer or a Lambda (files built here, in code), trained, served in LiteRT, exported, and
carried in its model folder so that a retrain from the saved config needs nothing outside it."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
from conftest import tiny_config

from classifier.config import TrainConfig
from classifier.errors import UsageError
from classifier.exporters.export import export_model
from classifier.model.backbones import backbone_key, build_feature_extractor, get_backbone, resolve
from classifier.model.metadata import ModelMetadata, public_json, public_text
from classifier.predict import Predictor
from classifier.train import train

QUIET = dict(log=lambda *_: None)


def tiny_network(input_shape=(None, None, 3), head=False):
    """A small CNN of built-in layers with its own scaling inside, as a keras: backbone file should be."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 127.5, -1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    if head:  # a fixed-size network: Flatten ties it to its input size
        x = keras.layers.Dense(4, name="dense")(keras.layers.Flatten()(x))
    return keras.Model(inputs, x, name="tiny")


@pytest.fixture(scope="module")
def network_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras-backbone") / "tiny.keras"
    tiny_network().save(path)
    return path


@keras.saving.register_keras_serializable(package="Test")
class Doubler(keras.layers.Layer):
    """A custom layer: registered in this process, so Keras itself would load it; a keras: backbone may not."""

    def call(self, inputs):
        return inputs * 2


def test_a_keras_file_trains_serves_exports_and_retrains_from_the_copy_its_folder_carries(
    tmp_path, shapes_dir, network_file
):
    original = tmp_path / "mine.keras"
    shutil.copyfile(network_file, original)
    config = tiny_config(
        shapes_dir,
        tmp_path / "model",
        backbone=f"keras:{original}",
        weights="imagenet",  # a keras: backbone's own weights
        cut_layer=None,
        image_size=32,
        epochs=1,
        augment_copies=0,
        cache_dir=str(tmp_path / "cache"),
    )
    result = train(config, **QUIET)
    folder = result.model_dir
    assert (folder / "backbone.keras").read_bytes() == original.read_bytes()
    metadata = result.metadata
    assert metadata.config["weights_dir"] is None and metadata.config["fine_tune_from"] == "conv2"
    sha256 = backbone_key(config.backbone).split(":")[-1]  # the cache's key names the file by its content
    assert metadata.backbone_files == [{"backbone": f"keras:{original}", "file": "backbone.keras", "sha256": sha256}]
    # What a public page shows of it: the file by its name, never the training machine's path.
    assert metadata.describe_backbone().startswith("keras:mine.keras, whole network")
    assert public_json(metadata.backbone_files)[0]["backbone"] == "keras:mine.keras"
    assert public_text(f"model: keras:{original} frozen") == "model: keras:mine.keras frozen"

    predictor = Predictor(folder)
    assert predictor.engine == "litert"  # built-in layers: converted and checked like a registry backbone
    image = sorted(shapes_dir.glob("circle/*.png"))[0]
    np.testing.assert_allclose(
        predictor.predict_proba([image])[0], result.model(predictor.pixels(image)[None]).numpy()[0], atol=1e-4
    )
    exported = export_model(folder, "tflite", out=tmp_path / "tflite", **QUIET)
    assert exported.metadata["check"]["signatures"]["tflite"]["passed"]

    # The original goes and the folder moves: a retrain from the saved config finds the copy, and its features.
    original.unlink()
    moved = shutil.move(folder, tmp_path / "moved")
    lines = []
    saved = TrainConfig.from_dict({**metadata.config, "out": str(moved), "overwrite": True})
    again = train(saved, log=lines.append)
    assert f"note: {original} is gone; using the copy the model folder carries, {moved}/backbone.keras" in lines
    assert not [line for line in lines if line.startswith("feature cache: computing")]  # cached by content
    assert again.metadata.backbone == f"keras:{moved}/backbone.keras"
    assert json.loads((moved / "metadata.json").read_text())["backbone_files"][0]["file"] == "backbone.keras"


def test_a_keras_file_with_a_custom_layer_a_lambda_or_no_model_in_it_is_refused_in_one_line(tmp_path, network_file):
    files = {
        "custom": keras.Sequential([keras.Input((None, None, 3)), Doubler(), keras.layers.Conv2D(2, 3)]),
        "lambda": keras.Sequential([keras.Input((None, None, 3)), keras.layers.Lambda(lambda x: x * 2)]),
    }
    for name, model in files.items():
        model.save(tmp_path / f"{name}.keras")
    (tmp_path / "text.keras").write_text("not a zip")
    tiny_network().save_weights(tmp_path / "weights.weights.h5")
    expected = {
        "custom": "refused, it holds the custom class Test>Doubler",
        "lambda": "refused, it holds a Lambda layer (Python code)",
        "text": "not a Keras model file (File is not a zip file)",
        "weights.weights": "not a Keras model file",
        "missing": "no such file",
    }
    for name, message in expected.items():
        path = tmp_path / f"{name}.keras" if name != "weights.weights" else tmp_path / "weights.weights.h5"
        with pytest.raises(UsageError) as error:
            resolve(TrainConfig(data="unused", backbone=f"keras:{path}"))
        assert str(error.value).startswith(f"--backbone keras:{path}: {message}"), str(error.value)
        assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="needs a file after the colon"):
        resolve(TrainConfig(data="unused", backbone="keras:"))


def test_a_keras_backbone_takes_its_own_size_by_default_and_says_when_it_cannot_take_one(tmp_path, network_file):
    fixed = tmp_path / "fixed.keras"
    tiny_network((48, 48, 3), head=True).save(fixed)
    assert resolve(TrainConfig(data="unused", backbone=f"keras:{network_file}")).image_size == 224
    config = resolve(TrainConfig(data="unused", backbone=f"keras:{fixed}"))
    assert config.image_size == 48 and config.cut_layer == "top"
    backbone = get_backbone(config.backbone)
    assert build_feature_extractor(backbone, (48, 48), "imagenet", "top").output.shape == (None, 4)
    with pytest.raises(UsageError, match=r"fixed.keras: does not take 32x32 images \(.*\); choose another"):
        build_feature_extractor(backbone, (32, 32), "imagenet", "top")
    # --weights none: its architecture, initialised afresh; a cut names one of its layers.
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 48, 48, 3)).astype("float32")
    own = build_feature_extractor(backbone, (48, 48), "imagenet", "conv2")(pixels)
    fresh = build_feature_extractor(backbone, (48, 48), "none", "conv2")(pixels)
    assert own.shape == fresh.shape == (1, 11, 11, 16) and np.abs(own - fresh).max() > 1e-3
    assert isinstance(ModelMetadata(class_names=["a"], image_size=(1, 1)).backbone_files, list)
