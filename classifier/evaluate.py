"""Evaluate a model folder: accuracy, per-class precision/recall/F1, confusion matrix, and plots.

    python -m classifier.evaluate MODEL_DIR [--data PATH_OR_NAME] [--split validation] [--out DIR]

Writes `metrics.json`, `confusion_matrix.png`, `curves.png` (from the saved training history) and
`most_wrong.png` into `--out` (default: the model folder) and prints a table, closed by the "not
sure" threshold these images suggest and what the model's own threshold does on them. A data folder
without train/validation folders is split exactly as training split it (the validation fraction
and seed saved in the model's metadata), so `--split validation` is never an image it trained on.
Training calls `write_report` on its validation predictions, so every model folder has these.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from .atomic import write_json
from .config import TrainConfig
from .console import Log, say
from .data.images import load_rgb
from .data.pipeline import image_dataset, load_image_data
from .datasets import resolve_data
from .errors import ArgumentParser, UsageError, cli
from .evaluation.metrics import METRICS_FILE, classification_metrics, format_table, most_wrong
from .evaluation.plots import plot_confusion_matrix, plot_curves, plot_images
from .model.artifacts import add_trust_flag, load_model, read_metadata
from .model.metadata import ModelMetadata


def write_report(
    folder: Path, metrics: dict, metadata: ModelMetadata, wrong: list[tuple[str, int, int, float]]
) -> list[Path]:
    """metrics.json and the three PNGs into `folder`; the same files for `train` and `evaluate`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / METRICS_FILE, metrics)
    names = metrics["class_names"]
    return [
        folder / METRICS_FILE,
        plot_curves(metadata.history, folder / "curves.png", metadata.fine_tune_start_epoch),
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
    log: Log = say,
    trust_hub_handle: bool = False,
) -> dict:
    """Score a model folder on a dataset split, write the report into `out` (default: the model folder);
    return the metrics."""
    metadata = read_metadata(model_dir)
    config = TrainConfig.from_dict(metadata.config)  # what training used; an older file's missing keys: defaults
    source = data or metadata.data.root
    if source is None:
        raise UsageError(f"{model_dir}: its metadata records no data folder; pass --data PATH_OR_NAME")
    data_dir = resolve_data(source, csv_dir=config.csv_dir, log=log)
    image_data = load_image_data(data_dir, config.validation_split, config.seed)
    if image_data.class_names != metadata.class_names:
        raise UsageError(
            f"--data {data or data_dir}: its classes ({', '.join(image_data.class_names)}) are not the model's "
            f"({', '.join(metadata.class_names)})"
        )
    images = getattr(image_data, split)
    model = load_model(model_dir, trust_hub_handle)
    dataset = image_dataset(images, metadata.image_size, config.batch_size)
    probabilities = model.predict(dataset, verbose=0)
    metrics = {
        **classification_metrics(images.labels, probabilities, image_data.class_names, metadata.min_confidence),
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
    # the table is the command's output
    evaluate(args.model_dir, args.data, args.split, args.out, log=print, trust_hub_handle=args.trust_hub_handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
