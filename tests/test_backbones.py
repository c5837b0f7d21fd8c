"""Every backbone builds, trains and reloads at its minimum size; simple_cnn learns; MobileNetV2 0.35 loads the
ImageNet weights shipped in the package; Keras' modern families build frozen with random weights (their ImageNet
weights are Keras' downloads, not here), serve in LiteRT and export; EfficientNet-Lite2 builds from its file in
../shared/weights (TF-Hub models: test_hub.py; keras: files: test_keras_backbones.py).

Converting a network for LiteRT costs seconds to tens of seconds, so of Keras' modern families only the smallest,
mobilenet_v3_small, is trained and served in LiteRT by default (the TFLite export of a keras: backbone, whose
conversion is the same, is test_keras_backbones.py's); CLASSIFIER_SLOW_TESTS=1 serves every family and exports
each to TFLite too."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from conftest import SHARED, tiny_config
from painted import paint, stripes

from classifier.model.backbones import (
    BACKBONES,
    build_feature_extractor,
    bundled_weights,
    caffe_preprocessing,
    page_choices,
)
from classifier.predict import Predictor
from classifier.shapes import make_shapes_dataset
from classifier.train import train

QUIET = dict(log=lambda *_: None)
# Keras' modern families -> (default size, channels out): tested with random weights (no download here).
KERAS_FAMILIES = {
    "efficientnet_v2_b0": (224, 1280),
    "efficientnet_v2_b1": (240, 1280),
    "efficientnet_v2_b2": (260, 1408),
    "efficientnet_v2_b3": (300, 1536),
    "convnext_tiny": (224, 768),
    "mobilenet_v3_large": (224, 960),
    "mobilenet_v3_small": (224, 576),
}
FROM_A_FILE = ("efficientnet_lite2",)  # registry entries whose network comes only as a Keras model file
SLOW = bool(os.environ.get("CLASSIFIER_SLOW_TESTS"))  # the module docstring says what it adds
SERVED = sorted(KERAS_FAMILIES) if SLOW else ["mobilenet_v3_small"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """2 classes x 5 images: 8 training images, one batch of 8."""
    return make_shapes_dataset(
        tmp_path_factory.mktemp("tiny") / "shapes", per_class=5, size=32, classes=["circle", "square"]
    )


@pytest.mark.parametrize("name", sorted(set(BACKBONES) - set(KERAS_FAMILIES) - set(FROM_A_FILE)) + SERVED)
def test_every_backbone_trains_an_epoch_at_its_minimum_size(name, tiny_data, tmp_path, random_weights):
    """Frozen (random weights saved as a file), so the epoch is the feature-cache path's: the backbone's
    forward pass, never a backward one; simple_cnn, which has no weights, trains from scratch. With SLOW, Keras'
    modern families are exported to TFLite too, and the export's check passes."""
    backbone = BACKBONES[name]
    size = backbone.min_size
    weights = random_weights(name) if backbone.pretrained else "none"
    config = tiny_config(
        tiny_data,
        tmp_path / name,
        backbone=name,
        weights=str(weights),
        cache_dir=str(tmp_path / "cache"),
        cut_layer=None,
        image_size=size,
        epochs=1,
        batch_size=8,
        dense_units=8,
        augment=False,
    )
    result = train(config, **QUIET)
    assert result.metadata.epochs_run == 1 and result.metadata.image_size == (size, size)
    predictor = Predictor(result.model_dir)
    assert predictor.engine == "litert"  # every backbone converts, and matches TensorFlow below
    image = sorted(tiny_data.glob("circle/*.png"))[0]
    np.testing.assert_allclose(
        predictor.predict_proba([image])[0],
        result.model(predictor.pixels(image)[None], training=False).numpy()[0],
        atol=1e-4,
    )
    if SLOW and name in KERAS_FAMILIES:
        from classifier.exporters.export import export_model

        exported = export_model(result.model_dir, "tflite", out=tmp_path / "tflite", **QUIET)
        assert exported.metadata["check"]["signatures"]["tflite"]["passed"]


def test_resnet50_caffe_preprocessing_matches_keras():
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    np.testing.assert_allclose(caffe_preprocessing()(pixels).numpy(), expected, atol=1e-3)


def test_simple_cnn_learns_an_easy_task(tmp_path):
    """The offline proof that the whole loop learns: stripe orientation, from scratch, in a few epochs."""
    data = paint(tmp_path / "stripes", {"horizontal": stripes(0), "vertical": stripes(1)}, per_class=40)
    config = tiny_config(
        data,
        tmp_path / "m",
        backbone="simple_cnn",
        cut_layer=None,
        image_size=24,
        epochs=10,
        batch_size=8,
        learning_rate=3e-3,
        augment=False,
    )
    result = train(config, **QUIET)
    assert max(result.metadata.history["val_accuracy"]) >= 0.9, result.metadata.history


def test_options_left_unset_take_the_backbones_defaults():
    from classifier.config import TrainConfig
    from classifier.model.backbones import resolve

    def resolved(**options):
        config = resolve(TrainConfig(data="unused", **options))
        return config.image_size, config.augment_copies

    assert resolved() == (150, 0)  # inception_v3: the course's size, no augmented copies
    assert resolved(backbone="mobilenet_v2") == (224, 2)
    assert resolved(backbone="mobilenet_v2", alpha=0.35) == (224, 0)  # the fast width caches no copies
    assert resolved(backbone="resnet50") == (224, 2)
    assert resolved(backbone="mobilenet_v2", alpha=0.35, image_size=160, augment_copies=3) == (
        160,
        3,
    )  # given values win


def test_the_bundled_weights_are_the_file_their_notice_names_and_ship_as_package_data():
    import tomllib

    from classifier.files import sha256_of
    from classifier.model.backbones import BUNDLED_WEIGHTS, WEIGHTS_DIR

    notice = (WEIGHTS_DIR / "NOTICE").read_text()
    assert "Apache License, Version 2.0" in notice
    for name in BUNDLED_WEIGHTS.values():
        assert f"{name}\nsha256 {sha256_of(WEIGHTS_DIR / name)}" in notice  # a real file, not an LFS pointer
    pyproject = tomllib.loads((WEIGHTS_DIR.parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["classifier.model"]
    for path in WEIGHTS_DIR.iterdir():
        assert any(path.match(pattern) for pattern in patterns), f"{path.name} would be left out of the wheel"


def test_imagenet_mobilenet_035_loads_the_bundled_file_at_any_size_and_caches_by_its_content():
    from classifier.config import TrainConfig
    from classifier.model.backbones import bundled_weights, get_backbone, resolve, weights_key
    from classifier.training.features import FeatureCache

    bundled = bundled_weights("mobilenet_v2", 0.35)
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    features = {
        weights: build_feature_extractor(get_backbone("mobilenet_v2"), (96, 96), weights, "top", 0.35)(pixels)
        for weights in ("imagenet", str(bundled), "none")
    }
    np.testing.assert_array_equal(features["imagenet"], features[str(bundled)])  # no download: the bundled file
    assert np.abs(features["imagenet"] - features["none"]).max() > 1  # and not a random init
    # The cache names weights by content: the bundled file and the same file by name share entries; other widths
    # (Keras downloads them by name) do not.
    assert weights_key("mobilenet_v2", "imagenet", 0.35) == weights_key("mobilenet_v2", str(bundled), 0.35)
    assert weights_key("mobilenet_v2", "imagenet", 0.5) == "imagenet alpha 0.5"
    assert weights_key("inception_v3", "imagenet", 1.0) == "imagenet"  # unchanged for the caches it already keys

    def cache(**options):
        return FeatureCache.for_config(resolve(TrainConfig(data="unused", backbone="mobilenet_v2", **options))).root

    assert cache(alpha=0.35) == cache(alpha=0.35, weights=str(bundled)) != cache(alpha=0.5)


def test_the_train_tabs_choices_are_the_registrys_page_entries_in_todays_order():
    """/train takes these labels as values: they, their order and the default stay as the page has always shown."""
    from classifier.serving.workbench import BACKBONES as TAB_BACKBONES
    from classifier.serving.workbench import DEFAULT_BACKBONE

    assert (
        TAB_BACKBONES
        == page_choices()
        == {
            "MobileNetV2 0.35 (bundled weights, fastest)": {"backbone": "mobilenet_v2", "alpha": 0.35},
            "MobileNetV2 1.0": {"backbone": "mobilenet_v2", "alpha": 1.0},
            "EfficientNetB0": {"backbone": "efficientnet_b0"},
            "InceptionV3 (the course's)": {"backbone": "inception_v3"},
        }
    )
    default = TAB_BACKBONES[DEFAULT_BACKBONE]
    assert bundled_weights(default["backbone"], default["alpha"]) is not None  # the default needs no download


@pytest.mark.parametrize("name", sorted(KERAS_FAMILIES))
def test_keras_families_build_with_their_scaling_inside_and_cache_by_their_weights(name, tmp_path):
    """Defaults, shapes and the feature cache's key: built once, with random weights (--weights none's network; the
    model freezes it whenever weights are given, as the param test above shows for the smallest)."""
    from classifier.config import TrainConfig
    from classifier.model.backbones import SCALING_LAYER, get_backbone, resolve, weights_key
    from classifier.training.features import FeatureCache

    default_size, channels = KERAS_FAMILIES[name]
    defaults = resolve(TrainConfig(data="unused", backbone=name))
    assert (defaults.image_size, defaults.cut_layer, defaults.weights) == (default_size, "top", "imagenet")
    backbone = get_backbone(name)
    extractor = build_feature_extractor(backbone, (32, 32), "none", defaults.cut_layer)
    assert extractor.output.shape == (None, 1, 1, channels)
    layers = [type(layer).__name__ for layer in extractor.layers[:3]]
    assert "Rescaling" in layers or "Normalization" in layers, layers  # Keras' own scaling, inside the network
    identity = backbone.preprocessing()
    assert identity.name == SCALING_LAYER and (identity.scale, identity.offset) == (1.0, 0.0)
    assert defaults.fine_tune_from in [layer.name for layer in extractor.layers]
    weights = tmp_path / "some.weights.h5"
    weights.write_bytes(name.encode())  # the key reads the file's content only
    config = resolve(TrainConfig(data="unused", backbone=name, weights=str(weights), image_size=32))
    assert weights_key(name, str(weights), 1.0).startswith("sha256:")
    roots = {FeatureCache.for_config(config).root, FeatureCache.for_config(defaults).root}
    assert len(roots) == 2 and all(f"/{name}-" in root for root in roots)


LITE2 = SHARED / "weights" / "efficientnet_lite2_imagenet_notop.keras"


@pytest.mark.skipif(not LITE2.is_file(), reason="needs ../shared/weights beside the repo")
def test_efficientnet_lite2_builds_from_its_file_in_the_weights_folder_as_the_file_computes():
    from classifier.config import TrainConfig
    from classifier.model.backbones import get_backbone, resolve
    from classifier.model.kerasfile import load

    config = resolve(TrainConfig(data="unused", backbone="efficientnet_lite2", weights_dir=str(LITE2.parent)))
    assert (config.weights, config.image_size, config.cut_layer) == (str(LITE2), 260, "top")
    extractor = build_feature_extractor(get_backbone(config.backbone), (64, 64), config.weights, config.cut_layer)
    assert config.fine_tune_from in [layer.name for layer in extractor.layers]
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    features = extractor(pixels).numpy()
    assert features.shape == (2, 2, 2, 1280)
    np.testing.assert_allclose(features, load(LITE2)(pixels).numpy(), atol=1e-4)  # the file's own network, scaling
