"""Stage a Hugging Face Space: one folder that runs the app with `python app.py` and nothing else.

    python -m classifier.deploy MODEL_DIR --out DIR [--title TITLE] [--overwrite]

The library is classifier/serving/space.py (`stage_space`, the front matter, the Space's requirements).
"""

from __future__ import annotations

import sys
from typing import Sequence

from .errors import ArgumentParser, cli
from .serving.space import stage_space

__all__ = ["build_parser", "main", "stage_space"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m classifier.deploy",
        description="Stage a self-contained Hugging Face Space folder for a trained model.",
        epilog=(
            "Then: cd DIR && huggingface-cli upload OWNER/SPACE . --repo-type space  (or git push to the Space's "
            "repository)"
        ),
    )
    parser.add_argument("model_dir", help="model folder written by python -m classifier.train")
    parser.add_argument("--out", required=True, help="Space folder to write (must not exist unless --overwrite)")
    parser.add_argument("--title", help="the Space's title (default: '<model name> classifier')")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    return parser


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = stage_space(args.model_dir, args.out, args.title, args.overwrite)
    print(f"staged {out}: run it with  cd {out} && python app.py   then push it to a Space (see docs/deploy.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
