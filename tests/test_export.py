"""Exports round-trip: the SavedModel through tf.saved_model.load, TFLite through the LiteRT interpreter."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from conftest import run_main, tiny_config

from classifier import export as export_module
from classifier._tf import tf
from classifier.artifacts import load_model, save_model_dir
from classifier.errors import UsageError
from classifier.exportcheck import compare, image_samples
from classifier.metadata import DataSummary, ModelMetadata
from classifier.model import build_model
from classifier.predict import Predictor


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory, shapes_dir):
    """The real architecture cut at mixed0, untrained (conversion fidelity does not need learning),
    so each export takes seconds; its metadata points at `shapes_dir` like a trained model's does."""
    keras.utils.set_random_seed(0)  # the same weights whatever ran before: int8 error depends on them
    model = build_model(tiny_config(shapes_dir, None, cut_layer="mixed0"), 3)
    metadata = ModelMetadata(
        class_names=["circle", "square", "triangle"], image_size=(75, 75), data=DataSummary(root=str(shapes_dir))
    )
    return save_model_dir(tmp_path_factory.mktemp("export") / "small", model, metadata)


@pytest.fixture(scope="module")
def samples(small_model_dir, shapes_dir):
    """(pixels at the model's size, the Keras model's probabilities) for 9 images of every class."""
    predictor = Predictor(small_model_dir)
    files = sorted(shapes_dir.glob("*/*.png"))[::8]
    pixels = np.stack([predictor.pixels(path) for path in files])
    reference = load_model(small_model_dir)(pixels, training=False).numpy()
    assert reference.std(axis=0).max() > 1e-3  # the predictions differ between images: the comparison means something
    return files, pixels, reference


def test_savedmodel_serves_pixels_and_encoded_images_like_the_keras_model(tmp_path, small_model_dir, samples, capsys):
    out = tmp_path / "savedmodel"
    code, stdout, err = run_main(export_module.main, [small_model_dir, "--format", "savedmodel", "--out", out], capsys)
    assert code == 0, err
    assert (
        "check serving_default: max |p - p_keras|" in stdout
        and "check serving_bytes:" in stdout
        and "FAILED" not in stdout
    )
    assert {"saved_model.pb", "variables", "labels.txt", "export.json"} <= {p.name for p in out.iterdir()}
    assert (out / "labels.txt").read_text().split() == ["circle", "square", "triangle"]

    files, pixels, reference = samples
    loaded = tf.saved_model.load(str(out))
    assert {"serving_default", "serving_bytes"} <= set(loaded.signatures)
    from_pixels = loaded.signatures["serving_default"](images=tf.constant(pixels))["probabilities"].numpy()
    np.testing.assert_allclose(from_pixels, reference, atol=1e-5)
    encoded = tf.constant([path.read_bytes() for path in files])
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=encoded)["probabilities"].numpy()
    np.testing.assert_allclose(from_bytes, reference, atol=1e-5)

    record = json.loads((out / "export.json").read_text())
    assert (record["format"], record["quantize"], record["class_names"]) == (
        "savedmodel",
        "none",
        ["circle", "square", "triangle"],
    )
    assert record["check"]["passed"] and "images from" in record["check"]["samples"]
    for figures in record["check"]["signatures"].values():
        assert figures["max_abs_difference"] <= figures["tolerance"] == 1e-5 and figures["top1_agreement"] == 1.0


@pytest.mark.parametrize("quantize", ["none", "float16", "int8"])
def test_tflite_runs_in_the_interpreter_and_agrees_with_keras(tmp_path, small_model_dir, samples, quantize):
    result = export_module.export_model(
        small_model_dir, "tflite", quantize, out=tmp_path / "tflite", log=lambda *_: None
    )
    assert sorted(p.name for p in result.path.iterdir()) == ["export.json", "labels.txt", "model.tflite"]

    _, pixels, reference = samples
    interpreter = Interpreter(model_path=str(result.path / "model.tflite"))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert source["dtype"] == (np.uint8 if quantize == "int8" else np.float32)
    interpreter.resize_tensor_input(source["index"], [len(pixels), 75, 75, 3])
    interpreter.allocate_tensors()
    scale, zero = source["quantization"]
    interpreter.set_tensor(
        source["index"], np.clip(np.round(pixels / scale + zero), 0, 255).astype(np.uint8) if scale else pixels
    )
    interpreter.invoke()
    output = interpreter.get_tensor(target["index"]).astype(np.float32)
    scale, zero = target["quantization"]
    probabilities = (output - zero) * scale if scale else output

    tolerance = export_module.TOLERANCES["tflite", quantize]
    assert np.abs(probabilities - reference).max() <= tolerance
    # Top-1 may flip only on near-ties: where Keras' own lead is within twice the tolerance (the check's rule).
    ordered = np.sort(reference, axis=1)
    clear_lead = ordered[:, -1] - ordered[:, -2] > 2 * tolerance
    assert np.all(probabilities.argmax(1)[clear_lead] == reference.argmax(1)[clear_lead])
    figures = result.metadata["check"]["signatures"]["tflite"]
    assert figures["passed"] and figures["images"] > 0 and figures["tolerance"] == tolerance
    assert result.metadata["quantize"] == quantize and result.metadata["image_size"] == [75, 75]


def test_a_failed_check_is_an_error_and_writes_nothing(tmp_path, small_model_dir, capsys):
    out = tmp_path / "exports" / "dynamic"
    argv = [small_model_dir, "--format", "tflite", "--quantize", "dynamic", "--out", out, "--tolerance", "1e-9"]
    code, stdout, err = run_main(export_module.main, argv, capsys)
    assert code == 1
    assert err.startswith("error: export check failed") and "-> FAILED" in err and len(err.strip().splitlines()) == 1
    assert "check tflite: max |p - p_keras|" in stdout
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_bad_options_get_one_line_and_exit_2(tmp_path, small_model_dir, capsys):
    (tmp_path / "taken").mkdir()
    cases = [
        (["--format", "onnx"], "--format: invalid choice: 'onnx'"),
        (["--format", "tflite", "--quantize", "int4"], "--quantize: invalid choice: 'int4'"),
        (["--quantize", "int8"], "--quantize int8: only for --format tflite"),
        (["--tolerance", "0"], "--tolerance 0.0: must be positive"),
        (["--out", tmp_path / "taken"], "already exists; pass --overwrite"),
        (["--data", tmp_path / "nowhere"], "no such folder"),
    ]
    for extra, message in cases:
        code, _, err = run_main(export_module.main, [small_model_dir, *extra], capsys)
        assert code == 2 and err.startswith("error: ") and message in err, (extra, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run_main(export_module.main, [tmp_path, "--format", "tflite"], capsys)
    assert code == 2 and "not a model folder" in err


def test_int8_without_the_training_images_asks_for_data(tmp_path, small_model_dir):
    moved = shutil.copytree(small_model_dir, tmp_path / "moved")
    metadata = json.loads((moved / "metadata.json").read_text())
    metadata["data"]["root"] = str(tmp_path / "gone")
    (moved / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(UsageError, match="--quantize int8 needs real images .* pass --data FOLDER"):
        export_module.export_model(moved, "tflite", "int8")
    assert not (moved / "export").exists()


def test_without_images_the_check_uses_synthetic_pixels_whose_png_decodes_exactly():
    samples = image_samples(None, (40, 30), 6, "the training folder is not on this machine")
    assert samples.pixels.shape == (6, 40, 30, 3) and "6 synthetic images (the training folder" in samples.source
    decoded = np.stack([tf.io.decode_png(data).numpy() for data in samples.encoded]).astype(np.float32)
    np.testing.assert_array_equal(decoded, samples.pixels)


def test_compare_counts_nan_as_failure_and_allows_only_close_calls_to_flip():
    reference = np.array([[0.9, 0.1], [0.51, 0.49]])
    close_flip = compare(np.array([[0.9, 0.1], [0.49, 0.51]]), reference, tolerance=0.05)
    assert close_flip["passed"] and close_flip["top1_disagreements"] == 1 and close_flip["decisive_disagreements"] == 0
    broken = compare(np.array([[np.nan, np.nan], [0.51, 0.49]]), reference, tolerance=0.05)
    assert not broken["passed"] and broken["max_abs_difference"] == np.inf and broken["top1_agreement"] == 0.5
