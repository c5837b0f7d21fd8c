"""Classification metrics from labels and predicted probabilities: numpy only, no TensorFlow.

`classification_metrics` is what `metrics.json` holds; `format_table` prints it; `most_wrong`
picks the images for `most_wrong.png`. `suggest_min_confidence` picks the "not sure" threshold
(see confidence.py) a model keeps as its default: the lowest one whose answered images are at
least `TARGET_PRECISION` right. Training and `python -m classifier.evaluate` both use them
(through evaluate.write_report), and the app reads `metrics.json` back.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..model.confidence import STEPS, answered, steps

METRICS_FILE = "metrics.json"


def report_prefix(split: str) -> str:
    """What the names of a split's report files start with: "test_" for the test split, else nothing."""
    return "test_" if split == "test" else ""


MOST_WRONG = 12
TARGET_PRECISION = 0.99  # a suggested "not sure" threshold: the images it answers were at least this often right
# The fewest validation images a threshold is suggested from: with fewer, 99% right means every answered image right,
# and the threshold would be the least confident right answer of a handful (a small training set answers "not sure"
# to much of what it gets right).
MIN_EVIDENCE = 100


def classification_metrics(
    labels: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    min_confidence: float | None = None,
) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, confusion matrix (rows: true),
    and `not_sure`: the suggested threshold, and the figures at the model's own `min_confidence` when given."""
    n = len(class_names)
    y_true = np.asarray(labels, int)
    y_pred = np.asarray(probabilities).argmax(axis=1)
    matrix = np.zeros((n, n), int)
    np.add.at(matrix, (y_true, y_pred), 1)
    hits, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros(n), where=predicted > 0)  # 0 for a class never predicted
    recall = np.divide(hits, support, out=np.zeros(n), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=precision + recall > 0)
    scores = {"precision": precision, "recall": recall, "f1": f1}
    weights = support / max(support.sum(), 1)
    return {
        "accuracy": float(hits.sum() / max(len(y_true), 1)),
        "images": int(len(y_true)),
        "class_names": list(class_names),
        "per_class": {
            name: {**{k: float(v[i]) for k, v in scores.items()}, "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "macro_avg": {k: float(v.mean()) for k, v in scores.items()},
        "weighted_avg": {k: float((v * weights).sum()) for k, v in scores.items()},
        "confusion_matrix": matrix.tolist(),
        "not_sure": {
            "target_precision": TARGET_PRECISION,
            "suggested": suggest_min_confidence(y_true, probabilities),
            **({} if min_confidence is None else {"model": at_threshold(y_true, probabilities, min_confidence)}),
        },
    }


def at_threshold(labels: Sequence[int], probabilities: np.ndarray, min_confidence: float) -> dict:
    """At a "not sure" threshold: the share of images answered (coverage) and the share of those right (precision,
    None when none is answered)."""
    probabilities = np.asarray(probabilities)
    sure = answered(probabilities.max(axis=1), min_confidence)
    right = probabilities.argmax(axis=1) == np.asarray(labels, int)
    return {
        "min_confidence": float(min_confidence),
        "coverage": float(sure.mean()) if len(sure) else 0.0,
        "precision": float(right[sure].mean()) if sure.any() else None,
    }


def suggest_min_confidence(
    labels: Sequence[int], probabilities: np.ndarray, target: float = TARGET_PRECISION
) -> dict | None:
    """The lowest "not sure" threshold whose answered images are at least `target` right, with `at_threshold`'s
    figures; None when no threshold reaches `target`, or there are fewer than MIN_EVIDENCE images.

    The threshold is always some image's top probability on the 0.1% steps "not sure" is decided on (rounded
    down: `confidence.steps`): answering every image at or above it, and below the least confident one answered
    there is no evidence. Images of equal steps are answered together, so a tie is never split.
    """
    probabilities = np.asarray(probabilities)
    if len(probabilities) < MIN_EVIDENCE:
        return None
    confidence = steps(probabilities.max(axis=1)) / STEPS  # as `answered` counts them
    right = probabilities.argmax(axis=1) == np.asarray(labels, int)
    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    hits = np.cumsum(right[order])  # right answers among the k most confident, for k = 1..n
    precision = hits / np.arange(1, len(ranked) + 1)
    last_of_tie = np.append(ranked[1:] != ranked[:-1], True)  # a threshold answers every image tied with it
    reaching = np.flatnonzero(last_of_tie & (precision >= target))
    if not len(reaching):
        return None
    return at_threshold(labels, probabilities, float(ranked[reaching[-1]]))  # furthest down: the lowest threshold


def format_table(metrics: dict) -> str:
    """The metrics as a fixed-width text table, one row per class, then the averages."""
    width = max(12, *(len(name) for name in metrics["class_names"]))
    lines = [f"{'':<{width}}  precision  recall     f1  support"]
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}"
        )
    lines.append("")
    for key in ("macro_avg", "weighted_avg"):
        row = metrics[key]
        lines.append(
            f"{key.replace('_', ' '):<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  "
            f"{metrics['images']:7d}"
        )
    lines.append(f"{'accuracy':<{width}}  {'':9}  {'':6}  {metrics['accuracy']:5.3f}  {metrics['images']:7d}")
    not_sure = metrics.get("not_sure")  # absent from the metrics.json of older models
    if isinstance(not_sure, dict):
        lines += ["", *describe_not_sure(not_sure)]
    return "\n".join(lines)


def describe_not_sure(not_sure: dict) -> list[str]:
    """metrics.json's `not_sure` in words: the suggested threshold, then the model's own when it was measured."""
    target = f"{not_sure.get('target_precision', TARGET_PRECISION):.0%}"
    suggested, model = not_sure.get("suggested"), not_sure.get("model")
    if suggested:
        lines = [
            f"not sure below {suggested['min_confidence']:.3f}, the lowest threshold with {target} of answers right:",
            f"  {answered_words(suggested)}",
        ]
    else:
        lines = [
            f"not sure: no threshold suggested (none makes {target} of answers right on these images, or they are "
            f"fewer than {MIN_EVIDENCE})"
        ]
    if model:
        lines += [f"the model's own threshold, {model['min_confidence']:.3f}:", f"  {answered_words(model)}"]
    return lines


def answered_words(figures: dict) -> str:
    """`at_threshold`'s figures in words: "answers 95.0% of images, 99.2% of them right"."""
    right = "none" if figures["precision"] is None else f"{figures['precision']:.1%}"
    return f"answers {figures['coverage']:.1%} of images, {right} of them right"


def most_wrong(
    paths: Sequence[str], labels: Sequence[int], probabilities: np.ndarray, k: int = MOST_WRONG
) -> list[tuple[str, int, int, float]]:
    """(path, true label, predicted label, its probability) of the k most confidently wrong predictions."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = [i for i in np.argsort(-confidence, kind="stable") if predicted[i] != labels[i]]
    return [(paths[i], int(labels[i]), int(predicted[i]), float(confidence[i])) for i in wrong[:k]]
