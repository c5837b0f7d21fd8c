"""The web app: `python app.py`, here and unchanged on Hugging Face Spaces.

    python app.py [--model DIR] [--models-dir models] [--host 127.0.0.1] [--port 7860] [--share]
                  [--concurrency 4] [--max-queue 64] [--max-batch 32] [--min-confidence P]
                  [--allow-training | --no-allow-training] [--max-classes 20] [--max-class-images 1000]
                  [--max-train-mb 500] [--max-train-queue 2] [--max-model-data-mb 600]
                  [--max-page-models 20] [--max-drafts 20]

Environment: CLASSIFIER_MODEL, CLASSIFIER_MODELS_DIR, GRADIO_SERVER_NAME, GRADIO_SERVER_PORT,
CLASSIFIER_CONCURRENCY, CLASSIFIER_MAX_QUEUE, CLASSIFIER_MAX_BATCH, CLASSIFIER_MIN_CONFIDENCE (flags win).
--min-confidence replaces every model's own "not sure" threshold (classifier/model/confidence.py).

The limits are what one stranger can cost the server, and each one hit is a message to the caller
(page and API alike): --concurrency predictions run at once and every call waits in Gradio's queue
(no route skips it); beyond --max-queue waiting calls the next is turned away ("queue is full");
a /predict_batch call with more than --max-batch files is refused whole ("at most N per request").
Uploads above 50 MB are refused by Gradio (413), inline images too. What else a caller can and
cannot do is in classifier/serving/app_guard.py; the page itself lives in classifier/serving/app_ui.py. This file
only parses and launches.

Training from the page (the Train tab, corrections, downloads; classifier/serving/app_train.py) is on when
the app runs locally and off on a public deployment (SPACE_ID set, --share, or a --host other than
loopback) unless --allow-training; --no-allow-training turns it off locally. Its limits are the
--max-class*/--max-train-*/--max-model-data-mb/--max-page-models/--max-drafts flags; the page names the flag of each
limit it hits. With training on, --models-dir must not be (or be inside) a model folder: visitors' models
would land in it.

Temporary files (uploads, downloads, unpacked zips) live in one folder per run, removed at exit and SIGTERM;
a start removes what killed runs left (classifier/serving/scratch.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from classifier.errors import ArgumentParser, UsageError, cli
from classifier.model.artifacts import add_engine_flag, add_trust_flag
from classifier.model.confidence import add_min_confidence_flag, min_confidence_option
from classifier.serving import scratch
from classifier.serving.limits import DEFAULT_LIMITS, Limits, check_models_dir, is_public, training_allowed

TRAINING_LIMITS = {  # flag option -> its help
    "max_classes": "classes one training job may have",
    "max_class_images": "images one class of a model's training folder may hold",
    "max_train_mb": "megabytes of images (or of a zip, unpacked) one training job may upload",
    "max_train_queue": "training jobs that may wait behind the running one; the next is turned away",
    "max_model_data_mb": "megabytes one model's training folder may hold (its Train upload and the corrections "
    "added since); a correction beyond it is refused",
    "max_page_models": "models trained from the page that the models folder may hold (those with a NAME.data "
    "training folder); Train beyond it is refused until one is deleted",
    "max_drafts": "Train tabs' unsaved work kept on the server so a reload loses nothing (one per browser, each within "
    "--max-train-mb; the least recently used goes first; 0 turns drafts off)",
}
OFF_AT_ZERO = {"max_drafts"}  # limits whose 0 turns the feature off; the others must be at least 1


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
    limits = DEFAULT_LIMITS
    parser.add_argument(
        "--concurrency",
        default=env("CLASSIFIER_CONCURRENCY", limits.concurrency),
        help=f"predictions run at once; more wait in the queue (env CLASSIFIER_CONCURRENCY; default: "
        f"{limits.concurrency})",
    )
    parser.add_argument(
        "--max-queue",
        default=env("CLASSIFIER_MAX_QUEUE", limits.max_queue),
        help=f"calls that may wait; the next is turned away, 'queue is full' (env CLASSIFIER_MAX_QUEUE; default: "
        f"{limits.max_queue})",
    )
    parser.add_argument(
        "--max-batch",
        default=env("CLASSIFIER_MAX_BATCH", limits.max_batch),
        help=f"files one /predict_batch call may send; more is refused (env CLASSIFIER_MAX_BATCH; default: "
        f"{limits.max_batch})",
    )
    add_min_confidence_flag(parser, env="CLASSIFIER_MIN_CONFIDENCE")
    parser.add_argument(
        "--allow-training",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the Train tab, corrections and downloads (default: on locally, off on a public deployment: SPACE_ID "
        "set, --share, or a --host other than loopback)",
    )
    for option, what in TRAINING_LIMITS.items():
        parser.add_argument(
            "--" + option.replace("_", "-"),
            default=getattr(limits, option),
            help=f"{what} (default: {getattr(limits, option)})",
        )
    add_trust_flag(parser)
    add_engine_flag(parser, env="CLASSIFIER_ENGINE")  # a server: converting once pays off
    return parser


def parse_args(argv: Sequence[str] | None):
    args = build_parser().parse_args(argv)
    try:
        args.port = int(args.port)
    except ValueError:
        raise UsageError(f"--port {args.port}: not a port number") from None
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: must be between 1 and 65535")
    for option in ("concurrency", "max_queue", "max_batch", *TRAINING_LIMITS):  # env values arrive as strings
        value = getattr(args, option)
        flag = "--" + option.replace("_", "-")
        try:
            setattr(args, option, int(value))
        except ValueError:
            raise UsageError(f"{flag} {value}: not a whole number") from None
        least = 0 if option in OFF_AT_ZERO else 1
        if getattr(args, option) < least:
            raise UsageError(f"{flag} {value}: must be at least {least}")
    args.min_confidence = min_confidence_option(args.min_confidence)
    return args


def find_served_models(args) -> dict[str, Path]:
    """--model names one folder (it must be a model); otherwise every model under --models-dir (may be none)."""
    from classifier.serving.library import find_models, is_model_dir

    if args.model:
        path = Path(args.model)
        if not is_model_dir(path):
            raise UsageError(
                f"--model {args.model}: not a model folder (needs metadata.json and model.keras); train one with "
                "python -m classifier.train"
            )
        return {path.resolve().name: path}
    return find_models(args.models_dir)


def app_limits(args) -> Limits:
    """The flags' limits, training on or off as --allow-training and where the app listens say."""
    return Limits(
        concurrency=args.concurrency,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        training=training_allowed(args.allow_training, args.host, args.share),
        local=not is_public(args.host, args.share),
        **{option: getattr(args, option) for option in TRAINING_LIMITS},
    )


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limits = app_limits(args)
    if limits.training:  # before anything is loaded or written
        check_models_dir(args.models_dir)
    scratch.sweep()  # what killed runs left in the temp folder
    with scratch.scratch_folder():  # this run's temporary files, Gradio's uploads among them: removed after
        try:
            return serve(args, limits)
        except scratch.Terminated:  # SIGTERM outside Gradio's wait (while loading, or as it closes): a normal stop
            return 0


def serve(args, limits: Limits) -> int:
    """Load the models and serve the page until the server is stopped."""
    models = find_served_models(args)
    from classifier.serving.app_ui import launch
    from classifier.serving.library import ModelLibrary

    library = ModelLibrary(
        models,
        trust_hub_handle=args.trust_hub_handle,
        min_confidence=args.min_confidence,
        engine=args.engine,
        # The models folder is watched (new models offered, removed ones dropped, no restart) unless --model serves
        # one folder alone; with training on, the page's new models go there, so it is watched all the same.
        models_dir=None if args.model and not limits.training else args.models_dir,
    )
    if models:
        library.get(None)  # load the first model now, so the first visitor does not wait for it
        print(f"serving {len(models)} model(s): {', '.join(models)}", file=sys.stderr)
    else:
        print(f"no model folder in {args.models_dir}/ yet: the page says how to train one", file=sys.stderr)
    if limits.training:
        print(f"training from the page is on: new models go to {args.models_dir}/", file=sys.stderr)
    launch(library, args.models_dir, args.host, args.port, limits, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
