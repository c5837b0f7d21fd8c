"""`python -m classifier.batch_features`: the command; the library is classifier/batch/features.py."""

import sys

from .batch.features import build_parser, fill, main

__all__ = ["build_parser", "fill", "main"]

if __name__ == "__main__":
    sys.exit(main())
