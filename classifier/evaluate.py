"""Evaluate a model folder: accuracy, per-class precision/recall/F1, confusion matrix, and plots.

    python -m classifier.evaluate MODEL_DIR [--data PATH_OR_NAME] [--split validation] [--out DIR]

Writes `metrics.json`, `confusion_matrix.png`, `curves.png` (from the saved training history) and
`most_wrong.png` into `--out` (default: the model folder) and prints a table. A data folder
without train/validation folders is split exactly as training split it (the validation fraction
and seed saved in the model's metadata), so `--split validation` is never an image it trained on.
Training calls `write_report` on its validation predictions, so every model folder has these.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .artifacts import add_trust_flag, load_model, read_metadata, write_json
from .errors import ArgumentParser, UsageError, cli

METRICS_FILE = "metrics.json"
REPORT_FILES = (METRICS_FILE, "curves.png", "confusion_matrix.png", "most_wrong.png")
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


def write_report(folder: Path, metrics: dict, metadata: dict, wrong: list[tuple[str, int, int, float]]) -> list[Path]:
    """metrics.json and the three PNGs into `folder`; the same files for `train` and `evaluate`."""
    from .images import load_rgb
    from .plots import plot_confusion_matrix, plot_curves, plot_images

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / METRICS_FILE, metrics)
    names = metrics["class_names"]
    return [
        folder / METRICS_FILE,
        plot_curves(metadata["history"], folder / "curves.png", metadata.get("fine_tune_start_epoch")),
        plot_confusion_matrix(metrics["confusion_matrix"], names, folder / "confusion_matrix.png"),
        plot_images(
            [load_rgb(path) for path, *_ in wrong],
            [f"true {names[t]}\npredicted {names[p]} ({c:.0%})" for _, t, p, c in wrong],
            folder / "most_wrong.png",
        ),
    ]


def evaluate(
    model_dir: str | Path,
    data: str | None = None,
    split: str = "validation",
    out: str | Path | None = None,
    log=print,
    trust_hub_handle: bool = False,
) -> dict:
    """Score a model folder on a dataset split, write the report into `out` (default: the model folder);
    return the metrics."""
    from .data import image_dataset, load_image_data
    from .datasets import resolve_data

    metadata = read_metadata(model_dir)
    config = metadata.get("config", {})
    data_dir = resolve_data(data or metadata["data"]["root"], csv_dir=config.get("csv_dir"))
    image_data = load_image_data(data_dir, config.get("validation_split", 0.2), config.get("seed", 0))
    if image_data.class_names != metadata["class_names"]:
        raise UsageError(
            f"--data {data or data_dir}: its classes ({', '.join(image_data.class_names)}) are not the model's "
            f"({', '.join(metadata['class_names'])})"
        )
    images = getattr(image_data, split)
    model = load_model(model_dir, trust_hub_handle)
    dataset = image_dataset(images, tuple(metadata["image_size"]), config.get("batch_size", 32))
    probabilities = model.predict(dataset, verbose=0)
    metrics = {
        **classification_metrics(images.labels, probabilities, image_data.class_names),
        "split": split,
        "data": str(data_dir),
    }
    written = write_report(
        Path(out or model_dir), metrics, metadata, most_wrong(images.paths, images.labels, probabilities)
    )
    log(format_table(metrics))
    log(f"wrote {', '.join(str(path) for path in written)}")
    return metrics


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m classifier.evaluate",
        description=(
            "Evaluate a trained model folder: per-class metrics, confusion matrix, learning curves, most "
            "confidently wrong images."
        ),
    )
    parser.add_argument("model_dir", help="model folder written by python -m classifier.train")
    parser.add_argument(
        "--data", help="image folder or built-in dataset name (default: the data the model was trained on)"
    )
    parser.add_argument(
        "--split",
        choices=("validation", "train"),
        default="validation",
        help="which images to score (default: validation)",
    )
    parser.add_argument("--out", help="folder for metrics.json and the plots (default: the model folder)")
    add_trust_flag(parser)
    return parser


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.model_dir).is_dir():
        raise UsageError(f"{args.model_dir}: no such model folder")
    evaluate(args.model_dir, args.data, args.split, args.out, trust_hub_handle=args.trust_hub_handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
