"""Combined backbones (`--backbone a+b`): resolved per part, one model whose features are the parts' concatenated,
cached per part (shared with the part trained alone), served in LiteRT and TensorFlow alike, exported, filled on
Beam, refused in one line.

The model tests combine two tiny frozen convolutional backbones, registered for this module as entries of the
registry (the way a backbone is added), at two sizes: the mechanics and the exactness are under test, not a
network, and a real one's LiteRT conversion alone would cost minutes here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import run_main

from classifier import batch_features
from classifier import export as export_module
from classifier import train as train_module
from classifier._tf import keras
from classifier.config import TrainConfig
from classifier.data.images import model_pixels
from classifier.data.pipeline import load_image_data
from classifier.errors import UsageError
from classifier.model import backbones
from classifier.model.backbones import Backbone, parts, resolve, scaling
from classifier.model.network import build_model, feature_extractor, head, part_extractors
from classifier.predict import Predictor
from classifier.train import train
from classifier.training.features import FeatureCache, part_caches, training_features

COMBINED = "tiny_a@32+tiny_b@24"  # the model's size is 32; tiny_b's pixels are resized to 24 inside the model
OPTIONS = dict(dense_units=16, batch_size=16, learning_rate=1e-3, epochs=2, augment_copies=1)


def _tiny(channels: int, seed: int):
    """A frozen "pretrained" network: two convolutions whose weights depend on `seed` alone (whatever --weights)."""

    def build(input_shape, weights, alpha):
        inputs = keras.Input(input_shape)
        x = inputs
        for i, width in enumerate((8, channels)):
            init = keras.initializers.GlorotUniform(seed=seed + i)
            x = keras.layers.Conv2D(width, 3, strides=2, activation="relu", kernel_initializer=init)(x)
        return keras.Model(inputs, x)

    return build


@pytest.fixture(scope="module", autouse=True)
def tiny_backbones():
    """tiny_a (16 features, default 32 px) and tiny_b (8 features, default 24 px) in the registry, for this module."""
    with pytest.MonkeyPatch.context() as patch:
        for name, channels, size in (("tiny_a", 16, 32), ("tiny_b", 8, 24)):
            entry = Backbone(name, _tiny(channels, size), scaling(1 / 127.5, -1.0), 8, None, size)
            patch.setitem(backbones.BACKBONES, name, entry)
        yield


@pytest.fixture(scope="module")
def combined(shapes_dir, tmp_path_factory):
    """A combined model trained on the shapes (one augmented copy per image), with its own feature cache."""
    cache = tmp_path_factory.mktemp("combined-cache")
    config = TrainConfig(
        data=str(shapes_dir), out=str(tmp_path_factory.mktemp("models") / "combined"), backbone=COMBINED,
        cache_dir=str(cache), **OPTIONS,
    )  # fmt: skip
    lines = []
    return train(config, log=lines.append), lines


def test_parts_resolve_as_their_backbones_alone_and_the_model_takes_the_largest_size():
    config = resolve(TrainConfig(data="d", backbone="inception_v3+mobilenet_v2", alpha=0.35))
    assert (config.backbone, config.image_size, config.cut_layer) == (
        "inception_v3@150+mobilenet_v2@224",
        224,
        "mixed7+top",
    )
    assert config.augment_copies == 0 and config.fine_tune_from is None  # the parts' largest default: 0 and 0
    assert resolve(config) == config  # resolving a resolved config changes nothing
    first, second = parts(config)
    assert first == resolve(TrainConfig(data="d", backbone="inception_v3", alpha=1.0, augment_copies=0))
    assert second == resolve(TrainConfig(data="d", backbone="mobilenet_v2", alpha=0.35, augment_copies=0))
    # --image-size sets every part without its own @SIZE; a lone NAME@SIZE is that backbone at that size.
    sized = resolve(TrainConfig(data="d", backbone="inception_v3@299+mobilenet_v2", image_size=160))
    assert (sized.backbone, sized.image_size) == ("inception_v3@299+mobilenet_v2@160", 299)
    assert resolve(TrainConfig(data="d", backbone="mobilenet_v2@96")) == resolve(
        TrainConfig(data="d", backbone="mobilenet_v2", image_size=96)
    )
    assert resolve(TrainConfig(data="d", backbone="mobilenet_v2+efficientnet_b0", alpha=1.0)).augment_copies == 2


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(weights="w.h5"), "--weights w.h5: one file cannot hold the weights of a combined backbone"),
        (dict(weights="none"), "--weights none: a combined backbone"),
        (dict(cut_layer="mixed6"), "--cut-layer mixed6: a combined backbone"),
        (dict(fine_tune_epochs=2), "--fine-tune-epochs 2: a combined backbone"),
        (dict(backbone="inception_v3+hub:https://example.com/m"), "a hub: backbone cannot be part"),
        (dict(backbone="mobilenet_v2@96+mobilenet_v2"), "mobilenet_v2 is named twice"),
        (dict(backbone="inception_v3+"), "an empty part"),
        (dict(backbone="inception_v3+simple_cnn"), "simple_cnn has no pretrained weights"),
        (dict(backbone="inception_v3+nope"), "--backbone nope: unknown backbone"),
        (dict(backbone="inception_v3@150+mobilenet_v2@224", image_size=160), "--image-size 160: every part"),
        (dict(alpha=0.35, backbone="inception_v3+resnet50"), "--alpha 0.35: only mobilenet_v2"),
    ],
)
def test_what_a_combined_backbone_cannot_take_is_refused_in_one_line(options, message):
    with pytest.raises(UsageError) as refused:
        resolve(TrainConfig(data="d", **{"backbone": "inception_v3+mobilenet_v2", **options}))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_the_command_refuses_before_any_work(tmp_path, capsys):
    argv = ["--data", tmp_path, "--backbone", "inception_v3+mobilenet_v2", "--weights", "w.h5"]
    code, _, err = run_main(train_module.main, argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "--weights-dir" in err


def test_the_prediction_is_the_head_on_the_parts_features_concatenated(combined, shapes_dir):
    result, lines = combined
    model, config = result.model, resolve(TrainConfig.from_dict(result.metadata.config))
    assert config.backbone == COMBINED and config.image_size == 32
    pixels = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    # Each part alone: the backbone's own model at its own size, fed the model-sized pixels resized to it.
    alone = []
    for part in parts(config):
        single = build_model(part, 3)
        resized = single.get_layer("resize")(pixels).numpy()  # identity for tiny_a, 32 -> 24 px for tiny_b
        alone.append(feature_extractor(single)(resized, training=False).numpy())
    assert [vectors.shape[1] for vectors in alone] == [16, 8]
    expected = head(model)(np.concatenate(alone, axis=1), training=False).numpy()
    np.testing.assert_allclose(model(pixels).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(model(pixels, training=False).numpy(), expected, atol=1e-5)
    # What training says and saves names the parts and their sizes.
    said = next(line for line in lines if line.startswith("model: "))
    assert "2 backbones combined on 32 px images: tiny_a at 32 px" in said and "; tiny_b at 24 px" in said, said
    card = result.metadata.describe_backbone()
    parts_said = "tiny_a at 32 px (whole network) + tiny_b at 24 px (whole network)"
    assert card == f"2 backbones combined: {parts_said}, weights: ImageNet", card


def test_each_part_is_cached_as_that_backbone_alone(combined, shapes_dir):
    """The part at the model's size shares the cache of its backbone trained alone; the smaller part has its own
    entries (its pixels come resized from the model's size), equal to its extractor on those pixels."""
    result, _ = combined
    config = resolve(TrainConfig.from_dict(result.metadata.config))
    first, second = parts(config)
    caches = part_caches(config)
    assert caches[0].root == FeatureCache.for_config(first).root  # tiny_a at 32 px alone
    assert caches[1].root != FeatureCache.for_config(second).root  # tiny_b at 24 px from 32 px pixels
    data = load_image_data(shapes_dir, config.validation_split, config.seed)
    lines = []
    alone = training_features(feature_extractor(build_model(first, 3)), data, first, lines.append)
    assert not [line for line in lines if "computing" in line], lines  # tiny_a alone: every entry cached
    hashes = data.validation.content_hashes()
    for cache, extractor, vectors in zip(caches, part_extractors(result.model), [alone[2], None], strict=True):
        stored = np.stack(cache.read([(sha, "clean") for sha in hashes]))
        if vectors is not None:
            np.testing.assert_allclose(stored, vectors, atol=1e-6)
        pixels = np.stack([model_pixels(path, (32, 32)) for path in data.validation.paths])
        np.testing.assert_allclose(stored, extractor(pixels, training=False).numpy(), atol=1e-4)


def test_served_in_litert_and_tensorflow_alike_after_save_and_load(combined, shapes_dir):
    """The saved folder loads (safe mode, built-in layers only); its frozen part, both backbones, converts to LiteRT
    as one flatbuffer, and both engines answer as the loaded Keras model does."""
    result, _ = combined
    lines = []
    in_litert = Predictor(result.model_dir, engine="litert", log=lines.append)
    in_tensorflow = Predictor(result.model_dir, engine="tensorflow")
    assert (in_litert.engine, in_tensorflow.engine) == ("litert", "tensorflow"), lines
    pixels = np.stack([in_litert.pixels(path) for path in sorted(shapes_dir.glob("*/*.png"))[:4]])
    expected = result.model(pixels, training=False).numpy()
    np.testing.assert_allclose(in_tensorflow.model(pixels, training=False).numpy(), expected, atol=1e-6)  # loaded
    np.testing.assert_allclose(in_tensorflow.probabilities_of_pixels(pixels), expected, atol=1e-6)
    np.testing.assert_allclose(in_litert.probabilities_of_pixels(pixels), expected, atol=1e-5)


def test_exports_and_a_beam_fill_handle_it_as_any_model(combined, tmp_path, capsys):
    result, _ = combined
    for kind in ("savedmodel", "tflite"):  # each checked against the Keras model on the validation images
        argv = [result.model_dir, "--format", kind, "--out", tmp_path / kind]
        code, out, err = run_main(export_module.main, argv, capsys)
        assert code == 0 and "check" in out, err
    config = resolve(TrainConfig.from_dict(result.metadata.config))
    argv = ["--data", config.data, "--backbone", COMBINED, "--augment-copies", 1, "--cache-dir"]
    code, out, err = run_main(batch_features.main, [*argv, tmp_path / "cache"], capsys)
    assert code == 0, err
    filled = part_caches(dataclasses.replace(config, cache_dir=str(tmp_path / "cache")))
    assert [f"entries to compute, in 3 chunk(s), into {cache.root}" in out for cache in filled] == [True, True], out
    for ours, theirs in zip(filled, part_caches(config), strict=True):
        keys = [key for segment in theirs.segments().values() for key in segment.keys]
        assert keys and not ours.missing(keys)  # every entry the training run computed
        np.testing.assert_allclose(np.stack(ours.read(keys)), np.stack(theirs.read(keys)), atol=1e-5)


def test_keras_files_combine_with_flips_and_the_refit(shapes_dir, tmp_path):
    """Two keras: files as parts (the user's way to bring a network), with test-time flips and the refit, each part's
    training pass in LiteRT: the model averages the head on the parts' features of the image and of its mirror
    image, its folder carries both files, its card names them, and LiteRT serves it as TensorFlow does."""
    files = []
    for name, width in (("first", 8), ("second", 4)):
        keras.utils.set_random_seed(width)
        inputs = keras.Input((None, None, 3))
        x = keras.layers.Conv2D(width, 3, strides=2, activation="relu")(keras.layers.Rescaling(1 / 127.5, -1.0)(inputs))
        keras.Model(inputs, x).save(tmp_path / f"{name}.keras")
        files.append(tmp_path / f"{name}.keras")
    backbone = f"keras:{files[0]}@32+keras:{files[1]}@24"
    config = TrainConfig(
        data=str(shapes_dir), out=str(tmp_path / "m"), backbone=backbone, flip_average=True, refit=True,
        feature_engine="litert", cache_dir=str(tmp_path / "cache"), **OPTIONS,
    )  # fmt: skip
    lines = []
    result = train(config, log=lines.append)
    # Each part's passes (images, mirror images, the refit's validation copies) ran in LiteRT, from its own input.
    assert sum("backbone pass in LiteRT" in line for line in lines) == 3 * 2, lines
    assert [entry["file"] for entry in result.metadata.backbone_files] == ["backbone.keras", "backbone-2.keras"]
    card = result.metadata.describe_backbone()
    assert "keras:first.keras at 32 px (whole network) + keras:second.keras at 24 px" in card, card
    model, pixels = result.model, np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)

    def plain(images):
        features = [extractor(images, training=False).numpy() for extractor in part_extractors(model)]
        return head(model)(np.concatenate(features, axis=1), training=False).numpy()

    expected = (plain(pixels) + plain(pixels[:, :, ::-1])) / 2
    np.testing.assert_allclose(model(pixels, training=False).numpy(), expected, atol=1e-5)
    in_litert = Predictor(result.model_dir, engine="litert", log=lambda *_: None)
    assert in_litert.engine == "litert"
    np.testing.assert_allclose(in_litert.probabilities_of_pixels(pixels), expected, atol=1e-5)
