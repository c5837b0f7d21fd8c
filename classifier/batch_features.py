"""Fill the training feature cache on Apache Beam, so that `classifier.train` then trains the head without a
backbone pass: the command line of `batch.features.fill` (classifier/batch/features.py).

    python -m classifier.batch_features --data DATA [train options] [--chunk-size 1024]
        [--runner DirectRunner] [Beam pipeline options]

Takes the same options as `classifier.train` (those that do not shape features are ignored), then `--chunk-size`
(images per work item), `--runner` and any other Beam pipeline option (batch/runner.py).
"""

from __future__ import annotations

import sys
from typing import Sequence

from .batch.features import fill
from .batch.runner import add_runner_arguments
from .config import TrainConfig
from .errors import ArgumentParser, cli

__all__ = ["build_parser", "fill", "main"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        allow_abbrev=False,  # an abbreviation of ours must not take a Beam option passed through
        prog="python -m classifier.batch_features",
        description="Fill the feature cache that python -m classifier.train reads (the same options), on Apache "
        "Beam: the backbone pass of every image and augmented copy, spread over the runner's workers.",
        epilog="Example: python -m classifier.batch_features --data /shared/photos --cache-dir /shared/features; "
        "then python -m classifier.train with the same options computes no features.",
    )
    TrainConfig.add_arguments(parser)
    parser.add_argument("--chunk-size", type=int, default=1024, help="images per work item (default: 1024)")
    add_runner_arguments(parser)
    return parser


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    fill(TrainConfig.from_args(args), args.chunk_size, args.runner, beam_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
