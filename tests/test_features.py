"""The feature cache: reused across runs, invalidated by what changes features, exact."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from conftest import MOBILENET_STEM, TINY, tiny_config
from PIL import Image

from classifier.data.pipeline import load_image_data
from classifier.model.backbones import resolve
from classifier.model.network import feature_extractor, head
from classifier.predict import Predictor
from classifier.shapes import make_shapes_dataset
from classifier.train import prepare, train
from classifier.training.features import FeatureCache, content_hashes, training_features


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
    run = prepare(resolve(_config(data, out, weights, cache_dir, **overrides), lines.append), lines.append)
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

    # Damage is a miss, not a crash: a truncated shard, an index segment that is garbage, a shard that is gone.
    store = FeatureCache.for_config(first_config(first))
    before = _vectors(store, data)
    segments = store.segments()  # one per pass: name -> its keys
    assert len(segments) == 3 and len(list(Path(store.root, "shards").glob("*.npy"))) == 3
    by_pass = {(len(segment.keys), segment.keys[0][1] == "clean"): name for name, segment in segments.items()}
    clean, augmented, validation = by_pass[10, True], by_pass[10, False], by_pass[4, True]
    shard = Path(store.root, "shards", f"{clean}.npy")
    shard.write_bytes(shard.read_bytes()[:100])  # truncated mid-array
    Path(store.root, "index", f"{validation}.json").write_text("garbage, not an index segment")
    Path(store.root, "shards", f"{augmented}.npy").unlink()  # a segment naming a shard that is gone: healed
    (x_train, *_), lines = _feature_pass(data, tmp_path / "m", random_mobilenet_weights, cache)
    assert [line.split(" into ")[0] for line in _computed(lines)] == [
        "feature cache: computing 10 of 10 (images)",
        "feature cache: computing 10 of 10 (augmented copy 1)",
        "feature cache: computing 4 of 4 (images)",
    ]
    assert not Path(store.root, "index", f"{augmented}.json").exists()
    for name, vectors in _vectors(store, data).items():
        np.testing.assert_allclose(vectors, before[name], atol=1e-6)  # recomputed alike
    assert len(x_train) == 20  # what the run records as cached_training_vectors

    # The same photos in another dataset (and one new photo): only the new one is computed.
    other = tmp_path / "other"
    for path in sorted(data.glob("train/*/*.png")):
        (other / "train" / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, other / "train" / path.parent.name / f"copy-{path.name}")
    shutil.copytree(data / "validation", other / "validation")
    Image.new("RGB", (48, 48), "black").save(other / "train" / "circle" / "new.png")
    _, lines = _feature_pass(other, tmp_path / "m", random_mobilenet_weights, cache)
    assert [line.split(" into ")[0] for line in _computed(lines)] == [
        "feature cache: computing 1 of 11 (images)",
        "feature cache: computing 1 of 11 (augmented copy 1)",
    ]

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


def _vectors(cache: FeatureCache, data) -> dict[str, np.ndarray]:
    """The cached vectors of `data`: its training images as they are and their augmented copy 1, its validation
    images."""
    images = load_image_data(data, log=lambda *_: None)
    passes = {"clean": (images.train, 0), "augmented": (images.train, 1), "validation": (images.validation, 0)}
    return {
        name: np.stack(cache.read([(sha, cache.variant(copy)) for sha in content_hashes(split.paths)]))
        for name, (split, copy) in passes.items()
    }


def first_config(result):
    from classifier.config import TrainConfig

    return TrainConfig.from_dict(result.metadata.config)


def test_model_trained_from_cache_predicts_exactly_like_end_to_end(trained):
    """The session model (trained on cached features): its head on the cached validation vectors is the saved model
    on the validation images."""
    result = trained
    config = first_config(result)
    images = load_image_data(result.metadata.data.root, config.validation_split, config.seed)
    cache = FeatureCache.for_config(config)
    cached = np.stack(cache.read([(sha, cache.variant(0)) for sha in content_hashes(images.validation.paths)]))
    from_cache = head(result.model)(cached, training=False).numpy()
    end_to_end = Predictor(result.model_dir).predict_proba(images.validation.paths)
    np.testing.assert_allclose(end_to_end, from_cache, atol=1e-5)


def test_the_backbones_default_cut_and_the_same_cut_by_name_share_one_cache(tmp_path):
    """The key hashes the resolved cut layer: leaving it to the backbone is naming its default."""
    from classifier.config import TrainConfig

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


def test_the_store_shards_entries_merges_concurrent_writers_and_survives_damage(tmp_path, monkeypatch):
    """FeatureCache's own API, numpy only: what Beam (classifier.batch_features) fills the cache with."""
    from concurrent.futures import ThreadPoolExecutor

    from classifier.training import featurecache

    monkeypatch.setattr(featurecache, "SHARD_ROWS", 4)
    rng = np.random.default_rng(0)
    keys = [(f"{i:064x}", variant) for i in range(12) for variant in ("clean", "aug-x-1")]  # 24 entries
    vectors = rng.normal(size=(len(keys), 3, 2)).astype(np.float32)
    cache = FeatureCache(str(tmp_path / "cache" / "model"))
    assert cache.missing(keys + keys[:2]) == keys and cache.read(keys[:1]) == [None]
    assert len(cache.write(keys[:10], vectors[:10])) == 3  # shards of 4, 4 and 2 entries
    assert cache.missing(keys) == keys[10:]

    # Four writers (as if on four machines) add overlapping entries at once; a new reader merges them all.
    writers = [FeatureCache(cache.root) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda w: w[1].write(keys[w[0] * 4 :], vectors[w[0] * 4 :]), enumerate(writers)))
    reader = FeatureCache(cache.root)
    assert reader.missing(keys) == [] and np.array_equal(np.stack(reader.read(keys)), vectors)
    shards, segments = Path(cache.root, "shards"), Path(cache.root, "index")
    assert len(list(shards.iterdir())) == len(list(segments.iterdir())) == 3 + 6 + 5 + 4 + 3  # and no temporary files

    # Damage: each key still has a good copy in another shard except those of the first write's shards.
    names = sorted(cache.segments(), key=lambda name: not name.startswith(cache._prefix))[:3]  # the first write's
    first, second, third = (Path(shards, f"{name}.npy") for name in names)
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last vector: the crc32 no longer matches
    first.write_bytes(bytes(data))
    second.write_bytes(second.read_bytes()[:90])  # truncated
    third.unlink()  # gone: its segment is deleted on the next read of the index
    Path(segments, f"{writers[3]._prefix}-000000.json").write_bytes(b'{"keys": "ab')  # a cut-off segment
    fresh = FeatureCache(cache.root)
    assert np.array_equal(np.stack(fresh.read(keys)), vectors)  # every entry from another copy
    assert not Path(segments, f"{names[2]}.json").exists()
    only = FeatureCache(str(tmp_path / "alone"))
    only.write(keys[:4], vectors[:4])
    (shard,) = Path(only.root, "shards").iterdir()
    shard.write_bytes(b"\x93NUMPY garbage")
    assert FeatureCache(only.root).read(keys[:4]) == [None] * 4 and only.missing(keys[:4]) == []  # read: None

    # Any tf.io.gfile filesystem: TensorFlow's in-memory one (gs:// and s3:// go through the same calls).
    remote = FeatureCache("ram://features/model")
    remote.write(keys, vectors)
    assert np.array_equal(np.stack(FeatureCache(remote.root).read(keys)), vectors)


def test_training_caches_features_on_another_filesystem(tmp_path, monkeypatch, random_mobilenet_weights):
    """--cache-dir as a URL: every cache access goes through tf.io.gfile (the scan memo stays local)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    data = make_shapes_dataset(
        tmp_path / "data", per_class=3, size=48, classes=["circle", "square"], validation_per_class=1
    )
    cache = "ram://classifier-test/features"
    first, lines = _run(data, tmp_path / "m", random_mobilenet_weights, cache)
    assert len(_computed(lines)) == 3 and FeatureCache.for_config(first_config(first)).root.startswith(cache + "/")
    _, lines = _run(data, tmp_path / "m", random_mobilenet_weights, cache)
    assert _computed(lines) == []
    assert list((tmp_path / "home-cache" / "classifier" / "features").iterdir()) == [
        tmp_path / "home-cache" / "classifier" / "features" / "scan"
    ]
