"""Export a model folder for serving: a TF Serving SavedModel or a TFLite model, checked before it lands.

    python -m classifier.export MODEL_DIR --format savedmodel|tflite [--quantize none|float16|dynamic|int8] [--out DIR]

The library is classifier/exporters/ (export.py: `export`, `export_model`, `ExportOptions`; one module per format
behind registry.py; check.py). This command's flags are generated from `ExportOptions`.
"""

from __future__ import annotations

import sys
from typing import Sequence

from .config import add_arguments
from .console import say
from .errors import ArgumentParser, cli
from .exporters.check import ExportCheckError
from .exporters.export import ExportOptions, ExportResult, export, export_model
from .exporters.registry import FORMATS, QUANTIZE
from .model.artifacts import add_trust_flag

__all__ = ["ExportOptions", "ExportResult", "FORMATS", "QUANTIZE", "build_parser", "export", "export_model", "main"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m classifier.export",
        description=(
            "Export a model folder as a TF Serving SavedModel or a TFLite model, checked against the Keras model."
        ),
        epilog="Example: python -m classifier.export models/cats_dogs --format tflite --quantize int8",
    )
    parser.add_argument("model_dir", help="model folder written by python -m classifier.train")
    add_arguments(ExportOptions, parser)
    add_trust_flag(parser)
    return parser


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        export(args.model_dir, ExportOptions.from_args(args), log=print)  # the check figures are the command's output
    except ExportCheckError as error:
        say(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
