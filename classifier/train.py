"""Train a classifier on a frozen pretrained backbone and save a self-contained model folder.

    python -m classifier.train --data PATH_OR_NAME [--out models/NAME] [options]

The flags are generated from TrainConfig's fields; the run is `train(config)` in classifier/training/pipeline.py.
"""

from __future__ import annotations

import functools
import sys
from typing import Sequence

from .config import TrainConfig
from .errors import ArgumentParser, cli
from .training.pipeline import Run, TrainResult, prepare, train

__all__ = ["Run", "TrainResult", "build_parser", "main", "prepare", "train"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m classifier.train",
        description="Train an image classifier on a frozen pretrained backbone, with on-the-fly augmentation.",
        epilog="Example: python -m classifier.train --data cats_dogs --out models/cats_dogs",
    )
    TrainConfig.add_arguments(parser)
    return parser


@cli
def main(argv: Sequence[str] | None = None) -> int:
    config = TrainConfig.from_args(build_parser().parse_args(argv))
    train(config, log=functools.partial(print, flush=True))  # the run's log is the command's output, as it happens
    return 0


if __name__ == "__main__":
    sys.exit(main())
