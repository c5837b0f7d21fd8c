"""The web app: `python app.py`, here and unchanged on Hugging Face Spaces.

    python app.py [--model DIR] [--models-dir models] [--host 127.0.0.1] [--port 7860] [--share]

Environment: CLASSIFIER_MODEL, CLASSIFIER_MODELS_DIR, GRADIO_SERVER_NAME, GRADIO_SERVER_PORT
(flags win). The page itself lives in classifier/app_ui.py; this file only parses and launches.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from classifier.artifacts import add_trust_flag
from classifier.errors import ArgumentParser, UsageError, cli


def build_parser() -> ArgumentParser:
    env = os.environ.get
    parser = ArgumentParser(prog="python app.py", description="Serve trained models on a Gradio page (and its API).")
    parser.add_argument(
        "--model", default=env("CLASSIFIER_MODEL"), help="serve this one model folder (env CLASSIFIER_MODEL)"
    )
    parser.add_argument(
        "--models-dir",
        default=env("CLASSIFIER_MODELS_DIR", "models"),
        help="offer every model folder in here, with a picker (env CLASSIFIER_MODELS_DIR; default: models)",
    )
    parser.add_argument(
        "--host",
        default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on; 0.0.0.0 for every interface (env GRADIO_SERVER_NAME; default: 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        default=env("GRADIO_SERVER_PORT", "7860"),
        help="port to listen on (env GRADIO_SERVER_PORT; default: 7860)",
    )
    parser.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="predictions run at once; more wait in the queue (default: 4)"
    )
    parser.add_argument(
        "--max-queue", type=int, default=64, help="requests that may wait; more are turned away (default: 64)"
    )
    add_trust_flag(parser)
    return parser


def parse_args(argv: Sequence[str] | None):
    args = build_parser().parse_args(argv)
    try:
        args.port = int(args.port)
    except ValueError:
        raise UsageError(f"--port {args.port}: not a port number") from None
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: must be between 1 and 65535")
    if args.concurrency < 1 or args.max_queue < 1:
        raise UsageError(f"--concurrency {args.concurrency} / --max-queue {args.max_queue}: both must be at least 1")
    return args


def find_served_models(args) -> dict[str, Path]:
    """--model names one folder (it must be a model); otherwise every model under --models-dir (may be none)."""
    from classifier.serving import find_models, is_model_dir

    if args.model:
        path = Path(args.model)
        if not is_model_dir(path):
            raise UsageError(
                f"--model {args.model}: not a model folder (needs metadata.json and model.keras); train one with "
                "python -m classifier.train"
            )
        return {path.resolve().name: path}
    return find_models(args.models_dir)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    models = find_served_models(args)
    from classifier.app_ui import build_app, launch
    from classifier.serving import ModelLibrary

    library = ModelLibrary(models, trust_hub_handle=args.trust_hub_handle)
    if models:
        library.get(None)  # load the first model now, so the first visitor does not wait for it
        print(f"serving {len(models)} model(s): {', '.join(models)}", file=sys.stderr)
    else:
        print(f"no model folder in {args.models_dir}/ yet: the page says how to train one", file=sys.stderr)
    demo = build_app(library, args.models_dir, args.concurrency, args.max_queue)
    launch(demo, library, args.host, args.port, args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
