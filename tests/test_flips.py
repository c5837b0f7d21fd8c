"""Test-time flips and the refit (issue 24, items 5 and 6).

--flip-average: the saved model averages the probabilities of each image and of its mirror image, inside the model,
from built-in layers only, and Keras (safe mode), the LiteRT runtime, the TFLite and the SavedModel exports answer
the same, which is the mean of the classifier on the image and on np.flip(image). Training reports the validation
accuracy without and with the averaging.

--refit: the head is trained again from its initial weights on train + validation for the epochs validation chose;
the test split stays out (a poisoned test folder changes nothing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from conftest import MOBILENET_STEM, holdout_folders, tiny_config

from classifier._tf import keras
from classifier.errors import UsageError
from classifier.exporters import export as export_module
from classifier.inference.predictor import Predictor
from classifier.model.artifacts import MODEL_FILE, load_model, read_metadata
from classifier.model.confidence import percent
from classifier.model.network import classifier, flips, head
from classifier.model.tflite import PIXELS_SIGNATURE
from classifier.serving.app_ui import App
from classifier.serving.library import ModelLibrary, find_models
from classifier.serving.space import space_readme
from classifier.training.pipeline import train

SIZE = 32
STEM = {**MOBILENET_STEM, "weights": "imagenet", "image_size": SIZE}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """train/, validation/ and test/ of shapes, and a copy whose test folder is poisoned (conftest.holdout_folders)."""
    return holdout_folders(tmp_path_factory.mktemp("flips"), 10, validation_per_class=6, test_per_class=4, size=40)


@pytest.fixture(scope="module")
def runs(folders, tmp_path_factory):
    """Three flips runs with one seed and one feature cache: without refit, with refit, with refit on the poisoned
    copy; --patience so that validation chooses the epochs. Each run's log lines are kept."""
    cache = str(tmp_path_factory.mktemp("flips-cache"))
    made = {}
    for name, data, refit in (("plain", "clean", False), ("refit", "clean", True), ("poisoned", "poisoned", True)):
        lines: list[str] = []
        out = folders["root"] / f"{name}-model"
        options = dict(epochs=6, patience=1, cache_dir=cache, flip_average=True, refit=refit, learning_rate=3e-3)
        result = train(tiny_config(folders[data], out, **STEM, **options), log=lines.append)
        made[name] = {"dir": out, "result": result, "lines": lines}
    return made


def test_a_flips_model_loads_in_safe_mode_and_averages_the_mirror_image(runs):
    model = keras.models.load_model(runs["plain"]["dir"] / MODEL_FILE, safe_mode=True)  # nothing of ours needed
    assert flips(model) and not flips(classifier(model))
    assert classifier(model).name == "classifier" and head(model) is classifier(model).get_layer("head")
    pixels = np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    inner = classifier(model)
    expected = (inner(pixels).numpy() + inner(np.flip(pixels, axis=2)).numpy()) / 2
    np.testing.assert_allclose(model(pixels).numpy(), expected, atol=1e-6)
    # The mirror inside is exact: the model on the mirror image answers the same.
    np.testing.assert_allclose(model(np.flip(pixels, axis=2)).numpy(), expected, atol=1e-6)
    # Any input size is resized first, as every model does.
    assert model(np.zeros((1, 50, 41, 3), np.float32)).shape == (1, 3)


def test_flips_agree_in_keras_litert_tflite_and_savedmodel(runs, tmp_path):
    folder = runs["plain"]["dir"]
    model = load_model(folder)
    inner = classifier(model)
    pixels = np.random.default_rng(2).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    expected = (inner(pixels).numpy() + inner(np.flip(pixels, axis=2)).numpy()) / 2

    answers = {}
    for engine in ("litert", "tensorflow"):
        predictor = Predictor(folder, engine=engine, log=lambda *_: None)
        assert predictor.engine == engine
        answers[engine] = predictor.probabilities_of_pixels(pixels)

    quiet = dict(log=lambda *_: None)
    tflite = export_module.export_model(folder, "tflite", out=tmp_path / "tflite", **quiet)
    interpreter = Interpreter(model_path=str(tflite.path / "model.tflite"))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(source["index"], list(pixels.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], pixels)
    interpreter.invoke()
    answers["tflite"] = interpreter.get_tensor(target["index"])

    saved = export_module.export_model(folder, "savedmodel", out=tmp_path / "savedmodel", **quiet)
    signature = tf.saved_model.load(str(saved.path)).signatures[PIXELS_SIGNATURE]
    answers["savedmodel"] = signature(images=tf.constant(pixels))["probabilities"].numpy()

    for name, probabilities in answers.items():
        np.testing.assert_allclose(probabilities, expected, atol=1e-5, err_msg=name)


def test_training_reports_validation_with_and_without_flips(runs):
    meta = read_metadata(runs["plain"]["dir"])
    figures = meta.flips
    assert set(figures) == {"validation_accuracy_plain", "validation_accuracy_averaged"}
    assert figures["validation_accuracy_averaged"] == meta.validation_metrics["accuracy"]  # the saved model's
    line = [text for text in runs["plain"]["lines"] if text.startswith("test-time flips on validation: ")]
    plain, averaged = figures["validation_accuracy_plain"], figures["validation_accuracy_averaged"]
    assert len(line) == 1 and f"{plain:.3f} -> {averaged:.3f}" in line[0]
    assert any("feature cache: computing 18 of 18 (mirror images)" in text for text in runs["plain"]["lines"])
    # The second run found the mirror images' features in the cache.
    assert not any("(mirror images)" in text for text in runs["refit"]["lines"])
    assert meta.refit is None and meta.test["count"] == 12
    card = App(ModelLibrary(find_models(runs["plain"]["dir"])), runs["plain"]["dir"].parent).card("plain-model")
    assert f"validation accuracy {percent(plain)} without, {percent(averaged)} with)" in card  # the page's rule
    assert "**Refit:**" not in card


def test_a_fine_tuned_flips_model_trains_its_nested_classifier_and_scores_validation_on_images(folders, tmp_path):
    """Fine-tuning unfreezes the backbone inside the nested classifier; validation is then scored on images, both
    ways, and the saved model still averages."""
    options = dict(epochs=1, fine_tune_epochs=1, fine_tune_from="block_1_expand", flip_average=True)
    config = tiny_config(folders["clean"], tmp_path / "tuned", **STEM, cache_dir=str(tmp_path / "cache"), **options)
    lines: list[str] = []
    result = train(config, log=lines.append)
    assert any(text.startswith("fine-tuning: ") for text in lines)
    assert result.metadata.flips["validation_accuracy_averaged"] == result.metadata.validation_metrics["accuracy"]
    model = load_model(tmp_path / "tuned")
    inner = classifier(model)
    pixels = np.random.default_rng(3).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    expected = (inner(pixels).numpy() + inner(np.flip(pixels, axis=2)).numpy()) / 2
    np.testing.assert_allclose(model(pixels).numpy(), expected, atol=1e-6)


def test_refit_retrains_the_head_on_train_and_validation_for_the_chosen_epochs(runs):
    plain, refit = (read_metadata(runs[name]["dir"]) for name in ("plain", "refit"))
    assert plain.history == refit.history  # the same run up to the refit
    chosen = int(np.argmin(plain.history["val_loss"])) + 1
    assert refit.refit["epochs"] == chosen and refit.refit["images"] == 30 + 18
    assert "before the refit" in refit.refit["note"]
    card = App(ModelLibrary(find_models(runs["refit"]["dir"])), runs["refit"]["dir"].parent).card("refit-model")
    assert f"validation images (48) for {chosen} epochs: the validation figures are from the run before" in card
    readme = space_readme("t", "6", "3.12", "refit-model", refit)
    assert f"validation accuracy {refit.val_accuracy:.3f} (before the head was refit on train + validation)" in readme
    assert [text.split()[:2] for text in runs["refit"]["lines"] if text.startswith("refit epoch")] == [
        ["refit", "epoch"]
    ] * chosen
    assert any("before the refit" in text for text in runs["refit"]["lines"] if text.startswith("refit: "))
    before, after = (head(runs[name]["result"].model).get_weights() for name in ("plain", "refit"))
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    # The refit trained the head the saved model holds.
    saved = head(load_model(runs["refit"]["dir"])).get_weights()
    for a, b in zip(saved, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_refit_keeps_the_test_split_out(runs):
    clean, poisoned = (load_model(runs[name]["dir"]) for name in ("refit", "poisoned"))
    for a, b in zip(clean.get_weights(), poisoned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    tests = [read_metadata(runs[name]["dir"]).test for name in ("refit", "poisoned")]
    assert tests[0]["confusion_matrix"] != tests[1]["confusion_matrix"]  # the poison reached the test score only


@pytest.mark.parametrize(
    "options, refused",
    [
        (dict(fine_tune_epochs=1), "--refit with --fine-tune-epochs 1"),
        (dict(feature_cache=False), "--refit: the refit retrains the head on cached backbone features"),
    ],
)
def test_refit_refuses_what_it_cannot_do_in_one_line(folders, tmp_path, options, refused):
    config = tiny_config(folders["clean"], tmp_path / "m", **STEM, refit=True, **options)
    with pytest.raises(UsageError, match=refused):
        train(config, log=lambda *_: None)
    assert not (tmp_path / "m").exists()
