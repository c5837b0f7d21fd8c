"""Classify image files with a trained model folder: the command line of `Predictor` (inference/predictor.py).

    python -m classifier.predict MODEL_DIR IMAGE_OR_FOLDER [...] [--top-k 3] [--json] [--min-confidence P]

A folder stands for every image file under it. The command converts the backbone for LiteRT only when asked
(`--engine litert`): by default it uses a cached conversion, else TensorFlow (inference/runtime.py). A file that
cannot be used is listed with its error and the rest go on; the exit code is then 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from .data.images import ImageError, image_files
from .errors import ArgumentParser, UsageError, cli
from .inference.predictor import Predictor
from .model.artifacts import add_engine_flag, add_trust_flag
from .model.confidence import add_min_confidence_flag, min_confidence_option

__all__ = ["Predictor", "build_parser", "expand_image_args", "main"]


def expand_image_args(paths: Sequence[str]) -> list[Path]:
    """Files as given; folders become every image file under them, sorted."""
    found: list[Path] = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            images = image_files(path)
            if not images:
                raise UsageError(f"{arg}: folder holds no image files")
            found.extend(images)
        elif path.exists() or path.is_symlink():  # a dangling link too: its error names it, and the rest go on
            found.append(path)
        else:
            raise UsageError(f"{arg}: no such file or folder")
    return found


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m classifier.predict", description="Classify images with a trained model folder."
    )
    parser.add_argument("model_dir", help="model folder written by python -m classifier.train")
    parser.add_argument("images", nargs="+", help="image files, or folders to classify every image in")
    parser.add_argument("--top-k", type=int, default=3, help="how many classes to show per image (default: 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    add_min_confidence_flag(parser)
    add_trust_flag(parser)
    # A one-off command: converting (5-13 s) would cost more than it saves on a few images.
    add_engine_flag(parser, default="auto")
    return parser


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise UsageError(f"--top-k {args.top_k}: must be at least 1")
    min_confidence = min_confidence_option(args.min_confidence)
    paths = expand_image_args(args.images)
    predictor = Predictor(
        args.model_dir, trust_hub_handle=args.trust_hub_handle, min_confidence=min_confidence, engine=args.engine
    )
    results, failures = [], 0
    for path in paths:
        try:
            probabilities = predictor.predict_proba([path])[0]
        except ImageError as error:
            failures += 1
            print(f"error: {error}", file=sys.stderr)
            results.append({"image": str(path), "error": str(error)})
            continue
        top, said = predictor.top_k(probabilities, args.top_k), predictor.answer(probabilities)
        results.append(
            {
                "image": str(path),
                "predictions": [{"label": label, "probability": p} for label, p in top],
                "not_sure": said.not_sure,
            }
        )
        if not args.json:
            ranked = ", ".join(f"{label} {p:.3f}" for label, p in top)
            print(f"{path}: " + (f"{said.text}; {ranked}" if said.not_sure else ranked))
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
