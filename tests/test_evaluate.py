"""Evaluation: metrics against hand-counted answers, the report files, and the CLI."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import run_main
from painted import paint, solid
from PIL import Image

from classifier import evaluate as evaluate_module
from classifier.evaluate import evaluate
from classifier.evaluation.metrics import (
    MIN_EVIDENCE,
    TARGET_PRECISION,
    classification_metrics,
    format_table,
    suggest_min_confidence,
)
from classifier.model.artifacts import save_model_dir
from classifier.model.metadata import DataSummary, ModelMetadata

BLUE, RED = solid((20, 20, 230)), solid((230, 20, 20))


def test_metrics_match_hand_counts():
    labels = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 1, 0]
    metrics = classification_metrics(labels, np.eye(3)[predicted], ["a", "b", "c"])
    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    a, b, c = (metrics["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 3))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0.0, 0.0, 0.0, 1)  # never predicted: 0, not NaN
    assert metrics["macro_avg"]["f1"] == pytest.approx((2 / 3 + 0.8) / 3)
    assert metrics["weighted_avg"]["recall"] == pytest.approx(4 / 6)


def answers(*groups: tuple[int, float, bool]) -> tuple[list[int], np.ndarray]:
    """Labels and two-class probabilities from (count, top probability, right?) groups, in that order."""
    labels, rows = [], []
    for count, confidence, right in groups:
        labels += [0] * count
        rows += [[confidence, 1 - confidence] if right else [1 - confidence, confidence]] * count
    return labels, np.array(rows, np.float32)


def test_suggested_threshold_is_the_lowest_with_99_percent_of_answers_right():
    assert TARGET_PRECISION == 0.99
    # All right: every image is answered, down to the least confident one.
    suggested = suggest_min_confidence(*answers((60, 0.9, True), (40, 0.6, True)))
    assert suggested == {"min_confidence": pytest.approx(0.6), "coverage": 1.0, "precision": 1.0}
    # Fewer than MIN_EVIDENCE images, all right: too little to suggest anything from.
    assert MIN_EVIDENCE == 100 and suggest_min_confidence(*answers((60, 0.9, True), (39, 0.6, True))) is None
    # 99 right above one wrong: exactly 99% right, so the wrong one is answered too.
    assert suggest_min_confidence(*answers((99, 0.9, True), (1, 0.7, False)))["min_confidence"] == pytest.approx(0.7)
    # One more wrong below: the threshold stops above it, answering 100 of 101.
    suggested = suggest_min_confidence(*answers((99, 0.9, True), (1, 0.7, False), (1, 0.6, False)))
    assert suggested["min_confidence"] == pytest.approx(0.7) and suggested["coverage"] == pytest.approx(100 / 101)
    assert suggested["precision"] == pytest.approx(0.99)
    # The most confident answer is wrong and none below makes up for it: no threshold, and no images: none either.
    assert suggest_min_confidence(*answers((2, 0.95, False), (99, 0.9, True))) is None
    assert suggest_min_confidence([], np.zeros((0, 2))) is None


def test_suggested_threshold_never_splits_a_tie():
    """A right and two wrong images share a top probability: a threshold there answers all three (100 of 102 right,
    below 99%), so it stays above them, though answering the right one alone would have kept 99%."""
    labels, probabilities = answers((99, 0.9, True), (1, 0.6, True), (2, 0.6, False))
    suggested = suggest_min_confidence(labels, probabilities)
    assert suggested["min_confidence"] == pytest.approx(0.9) and suggested["coverage"] == pytest.approx(99 / 102)
    metrics = classification_metrics(labels, probabilities, ["a", "b"], min_confidence=0.5)
    assert metrics["not_sure"]["suggested"] == suggested
    assert metrics["not_sure"]["model"] == {
        "min_confidence": 0.5,
        "coverage": 1.0,
        "precision": pytest.approx(100 / 102),
    }
    table = format_table(metrics)
    assert (
        "not sure below 0.900, the lowest threshold with 99% of answers right:\n  answers 97.1% of images, 100.0% of"
        in table
    )
    assert "the model's own threshold, 0.500:\n  answers 100.0% of images, 98.0% of them right" in table
    none = classification_metrics(*answers((1, 0.95, False)), ["a", "b"])
    assert (
        "not sure: no threshold suggested (none makes 99% of answers right on these images, or they are fewer "
        "than 100)" in format_table(none)
    )


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    """A model whose answer is known ("red" when the red channel outweighs the blue one), and a dataset with
    one mislabelled image."""
    root = tmp_path_factory.mktemp("colours")
    data = root / "data"
    paint(data / "train", {"blue": BLUE, "red": RED}, per_class=2)
    paint(data / "validation", {"blue": BLUE, "red": RED}, per_class=3, seed=1)
    paint(
        data / "validation", {"red": BLUE}, per_class=1, seed=2
    )  # overwrites red/000.png with a blue image: a wrong label
    inputs = keras.Input((None, None, 3))
    logits = keras.layers.Dense(2, name="colour")(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    model.get_layer("colour").set_weights(
        [np.array([[-0.1, 0.1], [0, 0], [0.1, -0.1]]), np.zeros(2)]
    )  # columns: blue, red
    history = {"accuracy": [0.5, 0.9], "val_accuracy": [0.5, 0.8], "loss": [0.7, 0.3], "val_loss": [0.7, 0.4]}
    metadata = ModelMetadata(
        class_names=["blue", "red"],
        image_size=(24, 24),
        config={"batch_size": 4},
        history=history,
        data=DataSummary(root=str(data)),
        min_confidence=0.5,  # two classes: every image is answered, the mislabelled one too
    )
    return save_model_dir(root / "model", model, metadata), data


def test_evaluate_counts_a_known_model_right(colour_model, tmp_path):
    model_dir, data = colour_model
    metrics = evaluate(model_dir, str(data), out=tmp_path, log=lambda *_: None)
    assert metrics["class_names"] == ["blue", "red"]
    assert metrics["confusion_matrix"] == [[3, 0], [1, 2]]  # the blue image filed under red is the one error
    assert metrics["per_class"]["blue"]["f1"] == pytest.approx(2 * 0.75 * 1 / 1.75)
    assert metrics["per_class"]["red"]["f1"] == pytest.approx(0.8)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert {"accuracy", "per_class", "confusion_matrix", "class_names"} <= set(saved) and saved[
        "accuracy"
    ] == pytest.approx(5 / 6)
    _assert_pngs(tmp_path)


def _assert_pngs(folder):
    for name in ("curves.png", "confusion_matrix.png", "most_wrong.png"):
        with Image.open(folder / name) as image:
            image.verify()
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and 300 <= image.width <= 2000 and 300 <= image.height <= 2000, (
                name,
                image.size,
            )


def test_evaluate_cli_prints_a_table_and_refuses_bad_input(colour_model, tmp_path, capsys):
    model_dir, data = colour_model
    code, out, err = run_main(evaluate_module.main, [model_dir, "--data", data, "--out", tmp_path], capsys)
    assert code == 0, err
    assert "precision" in out and "macro avg" in out and "weighted avg" in out and "0.833" in out
    assert "the model's own threshold, 0.500:\n  answers 100.0% of images, 83.3% of them right" in out
    cases = [
        ([tmp_path / "nowhere"], "no such model folder"),
        ([tmp_path], "not a model folder"),
        ([model_dir, "--data", tmp_path / "missing"], "missing"),
        ([model_dir, "--split", "test"], "has no test split"),
        ([model_dir, "--split", "bogus"], "invalid choice"),
    ]
    for argv, message in cases:
        code, _, err = run_main(evaluate_module.main, argv, capsys)
        assert code == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err


def test_training_writes_the_report_and_evaluate_reuses_its_split(trained, model_dir, tmp_path):
    """The session model: train wrote metrics and plots; evaluate on the plain folder scores the same
    held-out images."""
    _assert_pngs(model_dir)
    written = json.loads((model_dir / "metrics.json").read_text())
    meta = trained.metadata
    assert written["images"] == meta.data.validation_images
    suggested = written["not_sure"]["suggested"] or {}  # the model's "not sure" default comes from these images
    assert (meta.min_confidence, meta.min_confidence_coverage) == (
        suggested.get("min_confidence"),
        suggested.get("coverage"),
    )
    again = evaluate(model_dir, out=tmp_path, log=lambda *_: None)
    assert again["confusion_matrix"] == written["confusion_matrix"]


def test_curves_have_whole_epochs_and_accuracy_and_loss_on_their_own_axes(tmp_path):
    """Issue 26: the live curve had ticks at epoch 1.0, 1.5, ... and loss and accuracy on one axis. One figure draws
    curves.png and the page's curves: whole epochs, accuracy in % on its axes, loss on its own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from classifier.evaluation.plots import curves_figure, plot_curves

    history = {"accuracy": [0.41, 0.83], "val_accuracy": [0.5, 0.75], "loss": [1.9, 0.4], "val_loss": [1.2, 0.6]}
    figure = curves_figure(history)
    FigureCanvasAgg(figure).draw()
    accuracy, loss = figure.axes
    for ax in (accuracy, loss):
        assert all(tick.is_integer() for tick in ax.get_xticks() if 1 <= tick <= 2), ax.get_xticks()
    assert [t.get_text() for t in accuracy.get_yticklabels()][-1].endswith("%") and accuracy.get_ylim()[1] > 100
    assert loss.get_ylim()[1] < 3  # loss keeps its own scale
    assert plot_curves(history, tmp_path / "curves.png").stat().st_size > 0
