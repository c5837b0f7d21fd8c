"""Draw a small shapes dataset, one folder per class: the offline demo's data.

    python -m classifier.shapes OUT_DIR [--per-class 60] [--size 96]

The drawing is classifier/data/shapes.py (`make_shapes_dataset`, which the tests use).
"""

from __future__ import annotations

import sys
from typing import Sequence

from .data.shapes import SHAPES, make_shapes_dataset
from .errors import ArgumentParser, cli

__all__ = ["build_parser", "main", "make_shapes_dataset"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m classifier.shapes", description="Draw a small shapes dataset (one folder per class)."
    )
    parser.add_argument("out_dir", help="folder to write (class subfolders go inside)")
    parser.add_argument("--per-class", type=int, default=60, help="images per class (default: 60)")
    parser.add_argument("--classes", default=",".join(SHAPES[:3]), help=f"comma-separated, from {', '.join(SHAPES)}")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels (default: 96)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = make_shapes_dataset(args.out_dir, args.per_class, args.classes.split(","), args.size, args.seed)
    print(f"wrote {args.per_class} images per class to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
