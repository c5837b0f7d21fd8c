"""Classification metrics from labels and predicted probabilities: numpy only, no TensorFlow.

`classification_metrics` is what `metrics.json` holds; `format_table` prints it; `most_wrong`
picks the images for `most_wrong.png`. Training and `python -m classifier.evaluate` both use them
(through evaluate.write_report), and the app reads `metrics.json` back.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METRICS_FILE = "metrics.json"
MOST_WRONG = 12


def classification_metrics(labels: Sequence[int], probabilities: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, confusion matrix (rows: true)."""
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
    }


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
    return "\n".join(lines)


def most_wrong(
    paths: Sequence[str], labels: Sequence[int], probabilities: np.ndarray, k: int = MOST_WRONG
) -> list[tuple[str, int, int, float]]:
    """(path, true label, predicted label, its probability) of the k most confidently wrong predictions."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = [i for i in np.argsort(-confidence, kind="stable") if predicted[i] != labels[i]]
    return [(paths[i], int(labels[i]), int(predicted[i]), float(confidence[i])) for i in wrong[:k]]
