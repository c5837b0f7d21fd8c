"""`python -m classifier.train`: the command; the library is classifier/training/pipeline.py."""

import sys

from .training.pipeline import Run, TrainResult, build_parser, main, prepare, train

__all__ = ["Run", "TrainResult", "build_parser", "main", "prepare", "train"]

if __name__ == "__main__":
    sys.exit(main())
