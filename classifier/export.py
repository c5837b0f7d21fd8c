"""Export a model folder for serving: `python -m classifier.export` (the library: classifier/exporters/)."""

import sys

from .exporters.export import METADATA_EXTRA, build_parser, export_model, main, run_tflite

__all__ = ["METADATA_EXTRA", "build_parser", "export_model", "main", "run_tflite"]

if __name__ == "__main__":
    sys.exit(main())
