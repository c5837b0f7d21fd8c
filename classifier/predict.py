"""`python -m classifier.predict`: the command; the library is classifier/inference/predictor.py."""

import sys

from .inference.predictor import Predictor, build_parser, expand_image_args, main

__all__ = ["Predictor", "build_parser", "expand_image_args", "main"]

if __name__ == "__main__":
    sys.exit(main())
