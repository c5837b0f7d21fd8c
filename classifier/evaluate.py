"""Evaluate a model folder: accuracy, per-class precision/recall/F1, confusion matrix, and plots.

    python -m classifier.evaluate MODEL_DIR [--data PATH_OR_NAME] [--split test|validation|train] [--out DIR]

Writes `metrics.json`, `confusion_matrix.png`, `curves.png` (from the saved training history) and
`most_wrong.png` into `--out` (default: the model folder) and prints a table, closed by the "not
sure" threshold these images suggest and what the model's own threshold does on them. A data folder
without train/validation folders is split exactly as training split it (the validation fraction
and seed saved in the model's metadata), so `--split validation` is never an image it trained on. A model trained
with a test split (a test/ folder, or --test-split, re-made the same way) is scored on it by default, and says so;
its report files are named test_metrics.json, test_confusion_matrix.png and test_most_wrong.png.
Training calls `write_report` on its validation predictions, so every model folder has these.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from .errors import ArgumentParser, UsageError, cli
from .evaluation.report import evaluate, write_report
from .model.artifacts import add_trust_flag

__all__ = ["build_parser", "evaluate", "main", "write_report"]


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
        choices=("test", "validation", "train"),
        default=None,
        help="which images to score (default: test when the model was trained with a test split, else validation)",
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
