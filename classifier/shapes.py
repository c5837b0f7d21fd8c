"""`python -m classifier.shapes`: the command; the library is classifier/data/shapes.py."""

import sys

from .data.shapes import build_parser, main, make_shapes_dataset

__all__ = ["build_parser", "main", "make_shapes_dataset"]

if __name__ == "__main__":
    sys.exit(main())
