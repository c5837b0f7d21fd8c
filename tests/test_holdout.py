"""The held-out test split (issue 24, "an honest number"): a test/ folder or --test-split is found and split
deterministically, never reaches training (a poisoned test folder changes nothing in the model), is scored once at
the end (output, metadata.json, the report files, the page's card) and is what evaluate scores by default."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import MOBILENET_STEM, TINY, holdout_folders, run_main, tiny_config
from PIL import Image

from classifier import evaluate as evaluate_module
from classifier import train as train_module
from classifier.config import TrainConfig
from classifier.data.pipeline import load_image_data
from classifier.data.shapes import make_shapes_dataset
from classifier.errors import UsageError
from classifier.evaluation.report import evaluate
from classifier.model.artifacts import load_model, read_metadata
from classifier.model.confidence import percent
from classifier.model.metadata import ModelMetadata
from classifier.serving.app_ui import App, held_out_line
from classifier.serving.library import ModelLibrary, find_models
from classifier.serving.space import space_readme
from classifier.training.featurecache import FeatureCache
from classifier.training.pipeline import train

# 102 validation images: enough for training to look for a "not sure" threshold (metrics.MIN_EVIDENCE).
STEM = {**MOBILENET_STEM, "weights": "imagenet", "epochs": 2}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """The same train/ and validation/ twice, one with a clean test/ folder and one with a poisoned one: most
    square test images filed as circles, and a triangle replaced by noise made here (an image unlike any shape)."""
    return holdout_folders(tmp_path_factory.mktemp("holdout"), 12, validation_per_class=34, test_per_class=8, size=48)


@pytest.fixture(scope="module")
def runs(folders, tmp_path_factory):
    """Train on each folder with the same seed: the clean one through the CLI, whose output (stderr) is kept."""
    cache = str(tmp_path_factory.mktemp("holdout-cache"))
    out = {name: folders["root"] / f"{name}-model" for name in ("clean", "poisoned")}
    flags = {**TINY, **STEM, "cache_dir": cache}
    argv = [
        "--data",
        folders["clean"],
        "--out",
        out["clean"],
        *(f"--{k.replace('_', '-')}={v}" for k, v in flags.items()),
    ]
    with contextlib.redirect_stdout(io.StringIO()) as output:
        code = train_module.main([str(arg) for arg in argv])
    assert code == 0, output.getvalue()
    train(tiny_config(folders["poisoned"], out["poisoned"], **STEM, cache_dir=cache), log=lambda *_: None)
    return {**out, "output": output.getvalue()}


def test_a_test_folder_is_held_out_scored_and_summarised(runs):
    meta = read_metadata(runs["clean"])
    assert (meta.data.test_images, meta.data.test_from) == (24, "folder")
    assert (meta.data.train_images, meta.data.validation_images) == (36, 102)  # test/ is in neither
    test = meta.test
    assert test["split"] == "test" and test["from"] == "folder" and test["count"] == 24
    assert sum(figures["support"] for figures in test["per_class"].values()) == 24
    assert np.asarray(test["confusion_matrix"]).sum() == 24 and 0 <= test["accuracy"] <= 1
    assert meta.validation_metrics["accuracy"] == json.loads((runs["clean"] / "metrics.json").read_text())["accuracy"]
    written = json.loads((runs["clean"] / "test_metrics.json").read_text())
    assert written["split"] == "test" and written["confusion_matrix"] == test["confusion_matrix"]
    assert json.loads((runs["clean"] / "metrics.json").read_text())["split"] == "validation"
    for name in ("test_confusion_matrix.png", "test_most_wrong.png", "confusion_matrix.png"):
        with Image.open(runs["clean"] / name) as image:
            assert image.format == "PNG"
    summary = [line for line in runs["output"].splitlines() if line.startswith("test: ")]
    assert len(summary) == 1 and f"accuracy {test['accuracy']:.4f} on 24 held-out images (test/ folder" in summary[0]
    assert "24 test images held out (test/ folder)" in runs["output"]
    app = App(ModelLibrary(find_models(runs["clean"])), runs["clean"].parent)
    card = app.card("clean-model")
    assert f"**Test accuracy {percent(test['accuracy'])} on 24 images** held out (test split from a test/" in card
    assert f"**Validation accuracy {percent(meta.val_accuracy)} on {meta.data.validation_images} images**" in card
    assert "only 24 test images: one image moves the accuracy by 4.2 points" in card  # fewer than 50: said
    readme = space_readme("t", "6", "3.12", "clean-model", meta)
    assert f"validation accuracy {meta.val_accuracy:.3f}; test accuracy {test['accuracy']:.3f} on 24 held-out" in readme
    table, confusion = app.evaluation("clean-model")
    assert table.index("**Test metrics (held-out test split)**") < table.index("**Validation metrics**")
    assert confusion.endswith("/confusion_matrix.png")


def test_a_poisoned_test_folder_changes_nothing_in_the_model(runs, folders):
    clean, poisoned = (load_model(runs[name]) for name in ("clean", "poisoned"))
    for a, b in zip(clean.get_weights(), poisoned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    meta_clean, meta_poisoned = read_metadata(runs["clean"]), read_metadata(runs["poisoned"])
    assert meta_clean.history == meta_poisoned.history
    assert (meta_clean.min_confidence, meta_clean.min_confidence_coverage) == (
        meta_poisoned.min_confidence,
        meta_poisoned.min_confidence_coverage,
    )
    validation = [json.loads((runs[name] / "metrics.json").read_text()) for name in ("clean", "poisoned")]
    assert [{**m, "data": None} for m in validation[:1]] == [{**m, "data": None} for m in validation[1:]]
    # The test figures do see the poison: 7 squares now counted as circles.
    assert meta_poisoned.test["per_class"]["circle"]["support"] == 15
    assert meta_clean.test["confusion_matrix"] != meta_poisoned.test["confusion_matrix"]
    # Nor did the test images reach the feature cache.
    config = TrainConfig.from_dict(meta_clean.config)
    cache = FeatureCache.for_config(config)
    test = load_image_data(folders["clean"], log=lambda *_: None).test
    keys = [(sha, cache.variant(0)) for sha in test.content_hashes()]
    assert len(cache.missing(keys)) == len(test) == 24


def test_evaluate_scores_the_test_split_by_default(runs, flat, tmp_path, capsys):
    code, out, err = run_main(evaluate_module.main, [runs["clean"], "--out", tmp_path], capsys)
    assert code == 0, err
    assert "scoring the test split" in out and "test split: 24 images" in out
    scored = json.loads((tmp_path / "test_metrics.json").read_text())
    assert (
        scored["split"] == "test"
        and scored["confusion_matrix"] == read_metadata(runs["clean"]).test["confusion_matrix"]
    )
    validation = evaluate(runs["clean"], split="validation", out=tmp_path, log=lambda *_: None)
    assert validation["split"] == "validation" and validation["images"] == 102
    lines = []  # other data without a test split: validation, said
    assert evaluate(runs["clean"], str(flat), out=tmp_path, log=lines.append)["split"] == "validation"
    assert "note: the model has a test split but this data has none; scoring the validation split" in lines


@pytest.fixture(scope="module")
def flat(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("flat") / "shapes", per_class=24, size=32)


def test_test_split_holds_out_a_quarter_of_each_class_deterministically(flat):
    quiet = lambda *_: None  # noqa: E731
    data = load_image_data(flat, 0.2, seed=3, log=quiet, test_split=0.25)
    assert data.test_from == "split" and Counter(data.test.labels) == {0: 6, 1: 6, 2: 6}
    assert not set(data.test.paths) & (set(data.train.paths) | set(data.validation.paths))
    assert len(data.train) + len(data.validation) + len(data.test) == 72
    again = load_image_data(flat, 0.2, seed=3, log=quiet, test_split=0.25)
    assert (again.test.paths, again.validation.paths) == (data.test.paths, data.validation.paths)
    assert load_image_data(flat, 0.2, seed=4, log=quiet, test_split=0.25).test.paths != data.test.paths
    assert load_image_data(flat, 0.2, seed=3, log=quiet).test is None  # no test split asked for: none made


def test_test_split_is_refused_with_a_test_folder_or_out_of_range(folders, flat, tmp_path, capsys):
    with pytest.raises(UsageError, match=r"--test-split 0.25: .* has a test/ folder"):
        load_image_data(folders["clean"], log=lambda *_: None, test_split=0.25)
    for value in ("1", "-0.1"):
        argv = ["--data", flat, "--out", tmp_path / "m", "--test-split", value]
        code, _, err = run_main(train_module.main, argv, capsys)
        assert code == 2 and err.startswith(f"error: --test-split {value}") and len(err.strip().splitlines()) == 1
    odd = tmp_path / "odd"
    shutil.copytree(folders["clean"], odd)
    shutil.rmtree(odd / "test" / "square")
    with pytest.raises(UsageError, match=r"train/ and test/ have different classes \(only in train: square"):
        load_image_data(odd, log=lambda *_: None)
    shutil.rmtree(odd / "test")  # a test/ of unlabelled images (as some downloads have): not a test split, said
    shutil.copytree(folders["clean"] / "test" / "circle", odd / "test")
    lines = []
    assert load_image_data(odd, log=lines.append).test is None
    assert lines == [f"warning: {odd / 'test'}/ holds no class folders with images; it is not used as a test split"]


def test_models_without_a_test_block_read_as_before():
    meta = ModelMetadata.from_dict({"class_names": ["a", "b"], "image_size": [8, 8]})
    assert meta.test is None and meta.data.test_images is None and held_out_line(meta) == []
    assert "test" not in {key for key, value in meta.to_dict().items() if value is not None}
    with pytest.raises(UsageError, match="test must be an object"):
        ModelMetadata.from_dict({"class_names": ["a", "b"], "image_size": [8, 8], "test": {"accuracy": "high"}})
