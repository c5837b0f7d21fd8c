"""The feature cache: reused across runs, invalidated by what changes features, exact."""

from __future__ import annotations

import numpy as np
from conftest import MOBILENET_STEM, TINY, tiny_config
from PIL import Image

from classifier.data import load_image_data
from classifier.features import FeatureCache, content_hashes, training_features
from classifier.model import feature_extractor, head
from classifier.predict import Predictor
from classifier.shapes import make_shapes_dataset
from classifier.train import prepare, train


def _config(data, out, weights, cache_dir, **overrides):
    return tiny_config(
        data,
        out,
        **{**MOBILENET_STEM, **overrides},
        weights=str(weights),
        cache_dir=str(cache_dir),
        epochs=2,
        augment_copies=1,
        overwrite=True,
    )


def _run(data, out, weights, cache_dir, **overrides):
    lines = []
    return train(_config(data, out, weights, cache_dir, **overrides), log=lines.append), lines


def _feature_pass(data, out, weights, cache_dir, **overrides):
    """A training run up to its feature pass, the same steps `train` takes, without the head's epochs and the
    save that follow it (they do not touch the cache): ((x_train, y_train, x_val, y_val), what it logged)."""
    lines = []
    run = prepare(_config(data, out, weights, cache_dir, **overrides), lines.append)
    return training_features(feature_extractor(run.model), run.data, run.config, lines.append), lines


def _computed(lines) -> list[str]:
    return [line for line in lines if line.startswith("feature cache: computing")]


def test_cache_is_reused_and_invalidated_by_image_size_and_file_content(tmp_path, random_mobilenet_weights):
    data = make_shapes_dataset(
        tmp_path / "data", per_class=5, size=48, classes=["circle", "square"], validation_per_class=2
    )
    cache = tmp_path / "cache"

    first, lines = _run(data, tmp_path / "m", random_mobilenet_weights, cache)
    assert _computed(lines) == [
        f"feature cache: computing 10 of 10 (images) into {FeatureCache.for_config(first_config(first)).root}",
        "feature cache: computing 10 of 10 (augmented copy 1) into "
        f"{FeatureCache.for_config(first_config(first)).root}",
        f"feature cache: computing 4 of 4 (images) into {FeatureCache.for_config(first_config(first)).root}",
    ]
    assert first.metadata.timing["cached_training_vectors"] == 20

    _, lines = _feature_pass(data, tmp_path / "m", random_mobilenet_weights, cache)
    assert _computed(lines) == []  # second run: no backbone pass at all

    # Entries that do not load as a feature vector are computed again, not fatal.
    entries = sorted((FeatureCache.for_config(first_config(first)).root / "clean").glob("*.npy"))
    good = {path: np.load(path) for path in entries[:3]}
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # truncated mid-array
    entries[1].write_bytes(b"garbage, not a .npy file")
    np.save(entries[2], np.zeros(5, np.float32))  # a vector of the wrong shape
    (x_train, *_), lines = _feature_pass(data, tmp_path / "m", random_mobilenet_weights, cache)
    computed = _computed(lines)  # "feature cache: computing N of M (images) into ...", train and validation
    assert all("(images)" in line for line in computed) and sum(int(line.split()[3]) for line in computed) == 3
    for path, row in good.items():
        np.testing.assert_allclose(np.load(path), row, atol=1e-6)  # recomputed (in another batch size)
    assert len(x_train) == 20  # what the run records as cached_training_vectors

    _, lines = _feature_pass(data, tmp_path / "m", random_mobilenet_weights, cache, image_size=40)
    assert [line.split(" into ")[0] for line in _computed(lines)] == [
        "feature cache: computing 10 of 10 (images)",
        "feature cache: computing 10 of 10 (augmented copy 1)",
        "feature cache: computing 4 of 4 (images)",
    ]

    changed = sorted((data / "train" / "circle").glob("*.png"))[0]
    Image.new("RGB", (48, 48), "white").save(changed)
    _, lines = _feature_pass(data, tmp_path / "m", random_mobilenet_weights, cache)
    assert [line.split(" into ")[0] for line in _computed(lines)] == [
        "feature cache: computing 1 of 10 (images)",
        "feature cache: computing 1 of 10 (augmented copy 1)",
    ]

    _, lines = _feature_pass(data, tmp_path / "m", random_mobilenet_weights, cache, rotation=5.0)
    assert [line.split(" into ")[0] for line in _computed(lines)] == [
        "feature cache: computing 10 of 10 (augmented copy 1)"
    ]


def first_config(result):
    from classifier.config import TrainConfig

    return TrainConfig.from_dict(result.metadata.config)


def test_model_trained_from_cache_predicts_exactly_like_end_to_end(tmp_path, random_mobilenet_weights):
    data = make_shapes_dataset(
        tmp_path / "data", per_class=4, size=48, classes=["circle", "square"], validation_per_class=2
    )
    result, _ = _run(data, tmp_path / "m", random_mobilenet_weights, tmp_path / "cache")
    config = first_config(result)
    images = load_image_data(data)
    cache = FeatureCache.for_config(config)
    cached = np.stack([np.load(cache.entry(sha, 0)) for sha in content_hashes(images.validation.paths)])
    from_cache = head(result.model)(cached, training=False).numpy()
    end_to_end = Predictor(result.model_dir).predict_proba(images.validation.paths)
    np.testing.assert_allclose(end_to_end, from_cache, atol=1e-5)


def test_the_backbones_default_cut_and_the_same_cut_by_name_share_one_cache(tmp_path):
    """The key hashes the resolved cut layer: leaving it to the backbone is naming its default."""
    from classifier.config import TrainConfig, resolve

    weights = tmp_path / "backbone.weights.h5"
    weights.write_bytes(b"any weights file: only its content's hash enters the key")

    def root(**options):
        return FeatureCache.for_config(resolve(TrainConfig(data="unused", weights=str(weights), **options))).root

    assert root() == root(cut_layer="mixed7") != root(cut_layer="mixed6")
    assert root(backbone="mobilenet_v2") == root(backbone="mobilenet_v2", cut_layer="top")


def test_a_retrain_in_the_same_process_reuses_the_frozen_backbone_and_saves_the_same_model(
    tmp_path, random_inception_weights
):
    import json
    import zipfile

    data = make_shapes_dataset(
        tmp_path / "data", per_class=3, size=48, classes=["circle", "square"], validation_per_class=1
    )
    # InceptionV3 (cut as TINY cuts it): Keras numbers its unnamed layers, so a rebuilt backbone would save
    # under other names.
    inception = dict(backbone="inception_v3", alpha=1.0, cut_layer=TINY["cut_layer"], image_size=TINY["image_size"])
    first, _ = _run(data, tmp_path / "a", random_inception_weights, tmp_path / "cache", **inception)
    second, lines = _run(data, tmp_path / "b", random_inception_weights, tmp_path / "cache", **inception)
    assert second.model.get_layer("backbone") is first.model.get_layer("backbone") and _computed(lines) == []
    assert second.metadata.history == first.metadata.history  # the head's start follows the seed alone
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    def saved_config(result):
        config = json.loads(zipfile.ZipFile(result.model_dir / "model.keras").read("config.json"))
        for layer in config["config"]["layers"]:
            layer.get("compile_config", {}).get("optimizer", {}).get("config", {}).pop("name", None)
        return config  # (Keras numbers each optimizer it makes: adam, adam_1, ...)

    assert saved_config(second) == saved_config(first)
