"""Exports round-trip: the SavedModel through tf.saved_model.load, TFLite through the LiteRT interpreter (and
MediaPipe's ImageClassifier, which reads the TFLite metadata, when mediapipe is installed).

The check's rule is shown on a real MobileNetV2 0.35 (ImageNet weights, cats/dogs photos from ../shared;
skipped where ../shared is absent): its honest quantized exports pass, broken ones fail."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from conftest import SHARED, run_main, tiny_config

from classifier import export as export_module
from classifier._tf import tf
from classifier.errors import UsageError
from classifier.exporters import check as exportcheck
from classifier.exporters import registry
from classifier.exporters import tflite as tflite_exporter
from classifier.exporters.check import NEAR_TIE, Allowance, compare, image_samples
from classifier.exporters.registry import ALLOWANCES
from classifier.model import tflite
from classifier.model.artifacts import load_model, save_model_dir
from classifier.model.compat import mediapipe_metadata
from classifier.model.metadata import DataSummary, ModelMetadata
from classifier.model.network import build_model
from classifier.predict import Predictor
from classifier.train import train

PHOTOS = SHARED / "data" / "cats_dogs"
QUIET = dict(log=lambda *_: None)


@functools.cache
def have_mediapipe() -> bool:
    """Whether MediaPipe's metadata writer imports here (the tflite-metadata extra, part of the test extra)."""
    try:
        mediapipe_metadata()
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory, shapes_dir):
    """The real architecture cut at mixed0, untrained (conversion fidelity does not need learning),
    so each export takes seconds; its metadata points at `shapes_dir` like a trained model's does."""
    keras.utils.set_random_seed(0)  # the same weights whatever ran before: int8 error depends on them
    model = build_model(tiny_config(shapes_dir, None, cut_layer="mixed0"), 3)
    metadata = ModelMetadata(
        class_names=["circle", "square", "triangle"],
        image_size=(75, 75),
        data=DataSummary(root=str(shapes_dir)),
        min_confidence=0.8,
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
        "check serving_default: top-1 agreement 72/72" in stdout
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
    assert record["check"]["passed"] and "72 images from" in record["check"]["samples"]
    assert record["min_confidence"] == 0.8 and "not sure" in record["min_confidence_rule"]  # as the app applies it
    assert record["check"]["rule"] == {"max_abs_difference": 1e-5} and "tflite_metadata" not in record
    for figures in record["check"]["signatures"].values():
        assert figures["max_abs_difference"] <= 1e-5 and figures["top1_agreement"] == 1.0
        # Every check image is labelled by its class folder, so both accuracies are measured (and equal here).
        assert figures["labelled_images"] == figures["images"] == 72
        assert figures["keras_accuracy"] == figures["export_accuracy"] is not None


@pytest.mark.parametrize("quantize", ["none", "float16", "int8"])
def test_tflite_runs_in_the_interpreter_and_agrees_with_keras(
    tmp_path, small_model_dir, samples, quantize, monkeypatch
):
    """The float export is made as if mediapipe were not installed (the others with it, where it is): the file
    then has no metadata, and export.json says why and how to get it. The int8 one is converted in a child process,
    as the app's downloads are (the calibration pixels handed over in a file)."""
    if quantize == "none":
        for name in [name for name in sys.modules if name.split(".")[0] == "mediapipe"]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "mediapipe", None)  # importing it raises, as when it is not installed
    notes = []
    result = export_module.export_model(
        small_model_dir,
        "tflite",
        quantize,
        out=tmp_path / "tflite",
        log=notes.append,
        convert_in_subprocess=quantize == "int8",
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

    # What the check judges, recomputed on other images: the rule of this quantization holds on them too.
    rule = ALLOWANCES["tflite", quantize]
    difference = np.abs(probabilities - reference)
    if rule.max_difference is not None:
        assert difference.max() <= rule.max_difference
    else:
        ordered = np.sort(reference, axis=1)
        decisive = (ordered[:, -1] - ordered[:, -2] > NEAR_TIE) & (probabilities.argmax(1) != reference.argmax(1))
        assert difference.mean() <= rule.max_mean_difference and decisive.sum() <= rule.allowed_flips(len(pixels))
    record = result.metadata
    figures = record["check"]["signatures"]["tflite"]
    assert figures["passed"] and figures["images"] == figures["labelled_images"] == 72
    assert record["check"]["rule"] == rule.record()
    assert record["quantize"] == quantize and record["image_size"] == [75, 75]
    why = record["tflite_metadata"]
    if quantize != "none" and have_mediapipe():
        assert why["written"] and why["normalization"] == {"mean": [0.0], "std": [1.0]}
    else:
        assert not why["written"] and why["why"].startswith("MediaPipe's metadata writer could not be imported (")
        assert why["to_add_it"] == f"{tflite_exporter.METADATA_EXTRA}, then export again"
        assert f"note: model.tflite has no TFLite metadata: {why['why']}" in notes


def test_a_failed_check_is_an_error_and_writes_nothing(tmp_path, small_model_dir, capsys):
    """A float TFLite runs other kernels than TensorFlow: its probabilities differ by more than 1e-12."""
    out = tmp_path / "exports" / "none"
    argv = [small_model_dir, "--format", "tflite", "--out", out, "--tolerance", "1e-12"]
    code, stdout, err = run_main(export_module.main, argv, capsys)
    assert code == 1
    assert err.startswith("error: export check failed") and "-> FAILED" in err and len(err.strip().splitlines()) == 1
    assert "> 1e-12" in err and "pass --tolerance if" in err
    assert "check tflite: top-1 agreement 72/72" in stdout
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_bad_options_get_one_line_and_exit_2(tmp_path, small_model_dir, capsys):
    (tmp_path / "taken").mkdir()
    cases = [
        (["--format", "onnx"], "--format: invalid choice: 'onnx'"),
        (["--format", "tflite", "--quantize", "int4"], "--quantize: invalid choice: 'int4'"),
        (["--quantize", "int8"], "--quantize int8: only for --format tflite"),
        (["--tolerance", "0"], "--tolerance 0.0: must be positive"),
        (["--format", "tflite", "--quantize", "int8", "--tolerance", "0.1"], "--tolerance: only for float exports"),
        (["--min-agreement", "0.9"], "--min-agreement: only for quantized exports"),
        (["--format", "tflite", "--quantize", "dynamic", "--min-agreement", "1.5"], "must be between 0 and 1"),
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


def test_float_rule_fails_on_any_visible_difference_and_on_nan():
    reference = np.array([[0.9, 0.1], [0.51, 0.49]])
    rule = ALLOWANCES["tflite", "none"]
    assert compare(reference + [[5e-5, -5e-5], [0, 0]], reference, rule)["passed"]
    off = compare(reference + [[2e-4, -2e-4], [0, 0]], reference, rule)
    assert not off["passed"] and off["top1_agreement"] == 1.0 and "2.00e-04 > 1e-04" in off["verdict"]
    broken = compare(np.array([[np.nan, np.nan], [0.51, 0.49]]), reference, rule)
    assert not broken["passed"] and broken["max_abs_difference"] == np.inf and broken["top1_agreement"] == 0.5


def test_quantized_rule_counts_flips_beyond_near_ties_against_a_share_with_a_floor():
    """40 images: the Keras model leads by 0.8 on 36 and is torn (0.51/0.49) on 4."""
    reference = np.array([[0.9, 0.1]] * 36 + [[0.51, 0.49]] * 4)
    targets = np.array([0] * 38 + [1] * 2)
    rule = Allowance(min_agreement=0.95, min_flips=1, max_mean_difference=0.1)  # 5% of 40: 2 flips allowed
    assert rule.allowed_flips(40) == 2 and rule.allowed_flips(10) == 1  # the floor for small samples

    def export_flipping(confident: int) -> np.ndarray:
        """The reference with the 4 near-ties and `confident` confident answers turned round."""
        flipped = reference.copy()
        flipped[36:] = [0.49, 0.51]
        flipped[:confident] = [0.4, 0.6]
        return flipped

    figures = compare(export_flipping(2), reference, rule, targets)
    assert figures["passed"] and (figures["top1_disagreements"], figures["decisive_disagreements"]) == (6, 2)
    assert figures["disagreement_leads"][:3] == [0.8, 0.8, 0.02] and figures["labelled_images"] == 40
    assert (figures["keras_accuracy"], figures["export_accuracy"]) == (38 / 40, 36 / 40)
    failed = compare(export_flipping(3), reference, rule, targets)
    assert not failed["passed"] and "3 top-1 disagreements beyond near-ties (> 2 allowed of 40)" in failed["verdict"]
    # Synthetic pixels (no labels): agreement is reported, not judged; the mean guard still is.
    synthetic = compare(export_flipping(3), reference, rule)
    assert synthetic["passed"] and "not judged" in synthetic["verdict"] and synthetic["keras_accuracy"] is None
    assert not compare(1 - reference, reference, rule)["passed"]  # every answer turned round: mean |dp| 0.72
    # Images of a folder that is not one of the model's classes (-1) count for agreement, not accuracy.
    partly = compare(reference, reference, rule, np.where(np.arange(40) < 10, -1, targets))
    assert partly["labelled_images"] == 30 and partly["images"] == 40


# --------------------------------------------------------------------------------------------
# TFLite metadata (MediaPipe's writer and readers)
# --------------------------------------------------------------------------------------------
def test_mediapipe_reads_the_labels_and_normalisation_and_classifies_like_litert(tmp_path, small_model_dir, samples):
    if not have_mediapipe():
        pytest.skip('mediapipe is not installed: pip install -e ".[tflite-metadata]"')
    from mediapipe import Image, ImageFormat
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions

    result = export_module.export_model(small_model_dir, "tflite", out=tmp_path / "tflite", **QUIET)
    path = result.path / "model.tflite"
    assert result.metadata["tflite_metadata"]["written"] and result.metadata["check"]["passed"]
    metadata, _ = mediapipe_metadata()
    displayer = metadata.MetadataDisplayer.with_model_buffer(path.read_bytes())
    assert displayer.get_packed_associated_file_list() == ["labels.txt"]
    assert displayer.get_associated_file_buffer("labels.txt").decode().split() == ["circle", "square", "triangle"]
    (graph,) = json.loads(displayer.get_metadata_json())["subgraph_metadata"]
    (image,), (output,) = graph["input_tensor_metadata"], graph["output_tensor_metadata"]
    assert image["process_units"] == [
        {"options_type": "NormalizationOptions", "options": {"mean": [0.0], "std": [1.0]}}
    ]
    assert [(f["name"], f["type"]) for f in output["associated_files"]] == [("labels.txt", "TENSOR_AXIS_LABELS")]

    # Images at the model's size (MediaPipe resizes others itself), as uint8: MediaPipe feeds (pixel - 0) / 1.
    _, pixels, _ = samples
    images = np.round(pixels[:3]).astype(np.uint8)
    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=3)
    with ImageClassifier.create_from_options(options) as classifier:
        results = [classifier.classify(Image(image_format=ImageFormat.SRGB, data=image)) for image in images]
    scores = np.array(
        [
            [
                {c.category_name: c.score for c in r.classifications[0].categories}[name]
                for name in ["circle", "square", "triangle"]
            ]
            for r in results
        ]
    )
    np.testing.assert_allclose(scores, tflite_exporter.run_tflite(path, images.astype(np.float32)), atol=1e-6)


# --------------------------------------------------------------------------------------------
# The check's rule on a real MobileNetV2 0.35 and real photos
# --------------------------------------------------------------------------------------------
needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(), reason="needs ../shared/data/cats_dogs beside the repo")


@pytest.fixture(scope="module")
def real_model_dir(tmp_path_factory):
    """MobileNetV2 0.35 with its ImageNet weights (the package's bundled copy of
    ../shared/weights/mobilenet_v2_0.35_224_no_top.h5), a head trained on the cached features of 40 photos per
    class (10 epochs of 3 steps: a second); 24 held-out photos per class to check on (symlinks into ../shared)."""
    root = tmp_path_factory.mktemp("cats_dogs")
    for split, count in (("train", 40), ("validation", 24)):
        for name in ("cats", "dogs"):
            (root / split / name).mkdir(parents=True)
            for photo in sorted((PHOTOS / split / name).iterdir())[:count]:
                (root / split / name / photo.name).symlink_to(photo)
    config = tiny_config(
        root,
        tmp_path_factory.mktemp("real") / "mobilenet",
        backbone="mobilenet_v2",
        alpha=0.35,
        weights="imagenet",
        cut_layer=None,
        image_size=224,
        epochs=10,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )
    return train(config, **QUIET).model_dir


@needs_photos
@pytest.mark.parametrize("quantize", ["float16", "dynamic", "int8"])
def test_quantized_exports_of_real_mobilenet_pass_and_record_accuracy(tmp_path, real_model_dir, quantize):
    result = export_module.export_model(real_model_dir, "tflite", quantize, out=tmp_path / quantize, **QUIET)
    figures = result.metadata["check"]["signatures"]["tflite"]
    assert figures["passed"] and figures["images"] == figures["labelled_images"] == 48
    assert figures["keras_accuracy"] >= 0.85 and abs(figures["export_accuracy"] - figures["keras_accuracy"]) <= 0.05
    assert figures["decisive_disagreements"] <= ALLOWANCES["tflite", quantize].allowed_flips(48)


@needs_photos
def test_broken_exports_of_real_mobilenet_fail_even_the_most_lenient_rule(tmp_path, real_model_dir):
    """Per-tensor int8 weights, wrong input scaling and labels in the wrong order each change far more answers than
    the int8 allowance admits. The last two are computed with the Keras model, which a float export matches to
    1e-4 (the tests above): what an export fed pixels 0..1, or listing its labels backwards, would answer."""
    model = load_model(real_model_dir)
    metadata = json.loads((real_model_dir / "metadata.json").read_text())
    train_folder, check_folder = exportcheck.data_folders(Path(metadata["data"]["root"]))
    samples = image_samples(check_folder, (224, 224), 48)
    targets = samples.targets(metadata["class_names"])
    reference = model(samples.pixels, training=False).numpy()
    calibration = exportcheck.split_pixels(exportcheck.sample_split(train_folder, 40), (224, 224))
    with tflite.tflite_converter(model, (224, 224), "int8", calibration) as conv:
        conv._experimental_disable_per_channel = True  # one scale per tensor: the BN-folded kernels lose their range
        (tmp_path / "model.tflite").write_bytes(conv.convert())
    broken = {
        "per-tensor int8": tflite_exporter.run_tflite(tmp_path / "model.tflite", samples.pixels),
        "fed pixels 0..1": model(samples.pixels / 255, training=False).numpy(),
        "labels in reverse order": reference[:, ::-1],
    }
    for what, probabilities in broken.items():
        figures = compare(probabilities, reference, ALLOWANCES["tflite", "int8"], targets)
        assert not figures["passed"] and figures["top1_agreement"] < 0.8, (what, figures["verdict"])


# --------------------------------------------------------------------------------------------
# The registry and ExportOptions
# --------------------------------------------------------------------------------------------
def test_the_registry_derives_the_choices_the_allowances_and_the_page_downloads():
    assert registry.FORMATS == export_module.FORMATS == ("savedmodel", "tflite")
    assert registry.QUANTIZE == export_module.QUANTIZE == ("none", "float16", "dynamic", "int8")
    assert set(ALLOWANCES) == {("savedmodel", "none")} | {("tflite", q) for q in registry.QUANTIZE}
    assert registry.page_downloads() == {"SavedModel (zip)": "savedmodel", "TFLite file": "tflite"}
    assert [registry.EXPORTERS[f].page_file for f in registry.FORMATS] == [None, "model.tflite"]
    assert registry.allowance("tflite", "int8", min_agreement=0.5) == Allowance(
        min_agreement=0.5, min_flips=0, max_mean_difference=0.1
    )


def test_export_options_are_frozen_validated_and_the_command_flags():
    options = export_module.ExportOptions(format="tflite", quantize="int8", min_agreement=0.9)
    assert options.validate() is options
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.format = "savedmodel"
    with pytest.raises(UsageError, match="--quantize dynamic: only for --format tflite"):
        export_module.ExportOptions(quantize="dynamic").validate()
    with pytest.raises(UsageError, match="--format onnx: choose one of savedmodel, tflite"):
        export_module.export_model("nowhere", "onnx")
    args = export_module.build_parser().parse_args(["m", "--format", "tflite", "--overwrite", "--tolerance", "0.5"])
    parsed = export_module.ExportOptions.from_args(args)
    assert parsed == export_module.ExportOptions(format="tflite", tolerance=0.5, overwrite=True)
    flags = [a.option_strings for a in export_module.build_parser()._actions]
    assert ["--overwrite"] in flags and ["--min-agreement"] in flags and ["--trust-hub-handle"] in flags
