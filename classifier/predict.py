"""Load a model folder once and classify images: the `Predictor` the CLI and the app share.

    python -m classifier.predict MODEL_DIR IMAGE_OR_FOLDER [...] [--top-k 3] [--json] [--min-confidence P]

Images go through `images.model_pixels` (allowed formats, EXIF, any mode -> RGB, memory limits,
then the resize the training pipeline and the model's own Resizing layer run), then one model call:
the backbone in LiteRT, converted once per machine and cached, the head in TensorFlow (serving/litert.py). The
command converts only when asked (`--engine litert`): by default it uses a cached conversion, else TensorFlow.
A file that cannot be used raises `images.ImageError` naming it; the command lists it and goes on.
`Predictor.answer` applies the "not sure" rule (confidence.py) at the threshold in effect: the one
given, else the model's own from its metadata.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .console import Log, say
from .data.images import MAX_PIXELS, ImageError, ImageSource, image_files, model_pixels
from .errors import ArgumentParser, UsageError, cli
from .evaluation.confidence import (
    Answer,
    add_min_confidence_flag,
    answer,
    check_min_confidence,
    in_effect,
    min_confidence_option,
)
from .model.artifacts import DEFAULT_ENGINE, add_engine_flag, add_trust_flag, load_model, read_metadata
from .model.network import resize_antialias
from .serving.litert import probabilities_function


class Predictor:
    """A trained model folder, loaded once, turned into probabilities per class name."""

    def __init__(
        self,
        model_dir: str | Path,
        max_pixels: int = MAX_PIXELS,
        trust_hub_handle: bool = False,
        min_confidence: float | None = None,
        engine: str = DEFAULT_ENGINE,
        log: Log = say,
        convert_in_subprocess: bool = False,
    ):
        """`convert_in_subprocess`: a first LiteRT conversion runs in a child process and holds no lock of this one
        (a server's choice: serving/litert.py)."""
        self.model_dir = Path(model_dir)
        self.metadata = read_metadata(self.model_dir)
        self.class_names: list[str] = self.metadata.class_names
        # The "not sure" threshold `answer` applies: `min_confidence` when given, else the model's own (None: never).
        self.min_confidence = in_effect(check_min_confidence(min_confidence), self.metadata.min_confidence)
        self.image_size: tuple[int, int] = self.metadata.image_size
        self.max_pixels = max_pixels
        self.model = load_model(self.model_dir, trust_hub_handle)
        self.antialias = resize_antialias(self.model)
        # The backbone in LiteRT (or TensorFlow, see serving/litert.py), traced once here for every batch.
        self.engine, self._probabilities = probabilities_function(
            self.model, self.image_size, engine, log, convert_in_subprocess
        )

    def pixels(self, image: ImageSource) -> np.ndarray:
        """One image (path, bytes, Pillow image or array) -> float32 (H, W, 3) at the model's size."""
        return model_pixels(image, self.image_size, self.antialias, self.max_pixels)

    def predict_proba(self, images: Sequence[ImageSource]) -> np.ndarray:
        """Probabilities (N, classes) for N images, in `class_names` order; raises ImageError on a bad one."""
        if not images:
            return np.zeros((0, len(self.class_names)), np.float32)
        batch = np.stack([self.pixels(image) for image in images])
        return self.probabilities_of_pixels(batch)

    def probabilities_of_pixels(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch already at the model's size (N, H, W, 3), floats 0..255."""
        return self._probabilities(batch)

    def predict(self, image: ImageSource, top_k: int | None = None) -> list[tuple[str, float]]:
        """(class name, probability) pairs for one image, most probable first."""
        return self.top_k(self.predict_proba([image])[0], top_k)

    def top_k(self, probabilities: np.ndarray, k: int | None = None) -> list[tuple[str, float]]:
        order = np.argsort(-probabilities, kind="stable")[: k or len(self.class_names)]
        return [(self.class_names[i], float(probabilities[i])) for i in order]

    def answer(self, probabilities: np.ndarray) -> Answer:
        """One image's probabilities -> its top class, or "not sure" with the top guess, at `min_confidence`."""
        return answer(probabilities, self.class_names, self.min_confidence)


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
    # A one-off command: converting (15-20 s) would cost more than it saves on a few images.
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
