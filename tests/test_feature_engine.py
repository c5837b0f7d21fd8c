"""Training's backbone pass in LiteRT (training/engine.py): where serving would, with the same checked, cached
conversion; the head it trains scores as TensorFlow's; where LiteRT cannot run, TensorFlow does and says why."""

from __future__ import annotations

import numpy as np
from conftest import MOBILENET_STEM, tiny_config

from classifier._tf import keras
from classifier.config import TrainConfig
from classifier.data.shapes import make_shapes_dataset
from classifier.model import litert
from classifier.model.backbones import resolve
from classifier.model.network import build_head, compile_model, feature_extractor
from classifier.train import prepare
from classifier.training import engine
from classifier.training.engine import CONVERT_FROM_IMAGES, INSTEAD, backbone_pass, not_worth_converting
from classifier.training.features import training_features


def _config(data, out, weights, cache_dir, **overrides):
    options = {**MOBILENET_STEM, "weights": str(weights), "cache_dir": str(cache_dir), "epochs": 3}
    return tiny_config(data, out, **{**options, "augment_copies": 1, "overwrite": True, **overrides})


def _engine_lines(lines) -> list[str]:
    return [line for line in lines if "backbone pass in" in line]


def _feature_pass(config, in_subprocess: bool = False) -> tuple[tuple, list[str]]:
    """A run's feature pass alone (no head, no save): its vectors and what it logged."""
    lines: list[str] = []
    run = prepare(resolve(config, lines.append), lines.append)
    extractor = feature_extractor(run.model)
    return training_features(extractor, run.data, run.config, lines.append, in_subprocess=in_subprocess), lines


def _head_scores(features: tuple, seed: int = 0) -> tuple[float, np.ndarray]:
    """A head trained on the features (x_train, y_train, x_val, y_val) from `seed`: its validation accuracy and
    probabilities."""
    x_train, y_train, x_val, y_val = features
    keras.utils.set_random_seed(seed)
    head = build_head(x_train.shape[1], TrainConfig(dense_units=16, dropout=0.0), 2)
    compile_model(head, 1e-2)
    head.fit(x_train, y_train, batch_size=8, epochs=5, verbose=0, shuffle=False)
    probabilities = head(x_val, training=False).numpy()
    return float(np.mean(probabilities.argmax(1) == y_val)), probabilities


def test_the_pass_runs_in_litert_where_serving_would_and_the_head_scores_the_same(
    tmp_path, monkeypatch, random_mobilenet_weights
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))  # no conversion cached yet
    data = make_shapes_dataset(tmp_path / "data", per_class=8, size=40, classes=["circle", "square"])
    in_litert = "backbone pass in LiteRT (XNNPACK on {} threads)".format(litert.cpu_count())
    # auto, nothing cached, a pass far too small to pay for a conversion (12 + 12 copies + 4 validation images):
    # TensorFlow, saying so.
    in_tensorflow, lines = _feature_pass(_config(data, tmp_path / "m", random_mobilenet_weights, tmp_path / "a"))
    assert _engine_lines(lines) == [
        "backbone pass in TensorFlow: its LiteRT conversion is not cached, and converting pays from about "
        f"{CONVERT_FROM_IMAGES} images, not 28 (--feature-engine litert converts anyway)"
    ]
    assert not list(litert.cache_dir().glob("*.tflite"))
    # litert: converted now, in a child process as the Train tab does, and cached where serving finds it.
    config = _config(data, tmp_path / "m", random_mobilenet_weights, tmp_path / "b", feature_engine="litert")
    converted, lines = _feature_pass(config, in_subprocess=True)
    assert any(line.startswith("converting the model's backbone for LiteRT") for line in lines), lines
    assert _engine_lines(lines) == [in_litert]
    assert len(list(litert.cache_dir().glob("*.tflite"))) == 1
    # auto with the conversion cached: LiteRT however small the pass, without converting again; from the disk
    # cache as a new process finds it, then from memory (a retrain in the same process: no load, no check).
    engine._last_litert.clear()
    cached, lines = _feature_pass(_config(data, tmp_path / "m", random_mobilenet_weights, tmp_path / "c"))
    assert _engine_lines(lines) == [in_litert] and not any("converting" in line for line in lines), lines
    again, lines = _feature_pass(_config(data, tmp_path / "m", random_mobilenet_weights, tmp_path / "d"))
    assert _engine_lines(lines) == [in_litert], lines
    np.testing.assert_array_equal(again[0], cached[0])
    # LiteRT's features are TensorFlow's to the check's tolerance, and a head trained on them scores the same.
    for features in (converted, cached):
        for got, expected in zip(features, in_tensorflow, strict=True):
            np.testing.assert_allclose(got, expected, atol=litert.FEATURE_TOLERANCE * np.max(np.abs(expected)))
    accuracy, probabilities = _head_scores(converted)
    expected_accuracy, expected_probabilities = _head_scores(in_tensorflow)
    assert accuracy == expected_accuracy
    np.testing.assert_allclose(probabilities, expected_probabilities, atol=1e-4)


def test_where_the_backbone_does_not_run_in_litert_tensorflow_computes_the_features_and_says_why(
    tmp_path, monkeypatch, random_mobilenet_weights
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    data = make_shapes_dataset(tmp_path / "data", per_class=4, size=40, classes=["circle", "square"])
    expected, lines = _feature_pass(
        _config(data, tmp_path / "m", random_mobilenet_weights, tmp_path / "t", feature_engine="tensorflow")
    )
    assert _engine_lines(lines) == ["backbone pass in TensorFlow (--feature-engine tensorflow)"]
    monkeypatch.setattr(litert, "FEATURE_TOLERANCE", -1.0)  # every conversion fails its check against TensorFlow
    got, lines = _feature_pass(
        _config(data, tmp_path / "m", random_mobilenet_weights, tmp_path / "l", feature_engine="litert")
    )
    (line,) = _engine_lines(lines)
    note = "note: backbone pass in TensorFlow: the backbone does not run in LiteRT (LiteRT's features differ from"
    assert line.startswith(note), line
    assert not list(litert.cache_dir().glob("*.tflite"))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_auto_converts_only_where_the_pass_wins_the_conversion_back():
    """--feature-engine auto runs a backbone with depthwise convolutions in LiteRT, converting (when nothing is
    cached) for a pass of CONVERT_FROM_IMAGES images or more, never for a run that fine-tunes; plain convolutions
    stay in TensorFlow; litert always converts."""
    pixels = keras.Input((8, 8, 3))
    plain = keras.Model(pixels, keras.layers.Conv2D(4, 3)(pixels))
    depthwise = keras.Model(pixels, keras.layers.DepthwiseConv2D(3)(pixels))
    auto, many = TrainConfig(), CONVERT_FROM_IMAGES
    assert not_worth_converting(auto, many) is None
    assert "not 10 (" in not_worth_converting(auto, 10)
    assert "--fine-tune-epochs" in not_worth_converting(TrainConfig(fine_tune_epochs=1), many)
    assert not_worth_converting(TrainConfig(feature_engine="litert"), 1) is None
    lines: list[str] = []
    extract = backbone_pass(plain, (8, 8), auto, lines.append)
    assert extract.start(many) == "tensorflow" and lines == [
        f"{INSTEAD}: it runs this backbone's plain convolutions on batches as fast as LiteRT (--feature-engine litert "
        "uses LiteRT all the same)"
    ]
    # Under a distribution strategy or mixed precision the pass stays in TensorFlow whatever --feature-engine says.
    for options, why in (({"strategy": "mirrored"}, "--strategy mirrored"), ({"mixed_precision": True}, "float16")):
        lines: list[str] = []
        config = TrainConfig(feature_engine="litert", **options)
        extract = backbone_pass(depthwise, (8, 8), config, lines.append)
        assert extract.start(many) == "tensorflow" and extract.shape == (6, 6, 3)
        assert len(lines) == 1 and lines[0].startswith(f"note: {INSTEAD}: ") and why in lines[0], lines
