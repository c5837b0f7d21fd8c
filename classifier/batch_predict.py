"""Classify every image a glob matches, on Apache Beam, into one CSV: the batch form of `classifier.predict`.

    python -m classifier.batch_predict MODEL_DIR 'INPUT_GLOB' --out results.csv [--top-k 3]
        [--min-confidence P] [--batch-size 32] [--runner DirectRunner] [Beam pipeline options]

The pipeline (classifier/batch/predictions.py): a worker lists the paths the glob matches (local, or `gs://` with
`apache-beam[gcp]`), Beam spreads them over the workers, each reads its files (a local path only when it leads to
a regular file, never more than `limits.MAX_UPLOAD_BYTES`), and `RunInference` batches them through the project's
own `Predictor`, loaded with its checks (Keras safe mode, a hub: backbone only from the folder's own `hub/` unless
`--trust-hub-handle`) once per worker, so the numbers are `Predictor`'s for the same files. A remote model folder
is copied to the worker's disk first (`runner.local_model_dir`).

One CSV row per matched file, header first:

    path, prediction, probability, class_1, probability_1, ... class_K, probability_K, error

`prediction` is the most probable class, or `not sure` when its probability is under the model's
own threshold or `--min-confidence` (the rule of `confidence.py`, as `classifier.predict` applies
it); `class_1` always names it. Every matched path gets a row: one that cannot be used (not an image,
corrupt, too large, unreadable, or no regular file: a folder the glob names without going into it, a
dangling symlink, a device, a FIFO, a socket, the row saying which) has only `path` and `error`
filled: never a failed run, never a wait. Rows are sorted by path when the output is local.

Output: a local `--out` is written whole under a temporary name beside it, then renamed (Beam's shards
go to a temporary folder and are merged), so a crash leaves the previous file. A remote `--out`
(gs://.../results.csv) is left as Beam's shards, `results-00000-of-00004.csv` and so on, each with
the header; Beam writes each under a temporary name and renames it when the job succeeds.

`--out` never destroys what the run uses or any model: one inside a model folder (the one in use or any
other, links resolved), an existing path that is no regular file, or one of the inputs (the same file, or
the same path once links are resolved) is refused before any work.

Bad input (no model folder, a glob that matches nothing, an unknown option, such an `--out`) is one `error:`
line, exit 2.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from .batch import runner
from .batch.predictions import build, check_out
from .batch.rows import merge_shards
from .errors import ArgumentParser, UsageError, cli
from .model.artifacts import MODEL_FILE, add_trust_flag, is_model_dir, read_metadata
from .model.confidence import add_min_confidence_flag, min_confidence_option


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        allow_abbrev=False,  # an abbreviation of ours must not take a Beam option passed through
        prog="python -m classifier.batch_predict",
        description="Classify every image a glob matches with a trained model folder, on Apache Beam, into one CSV.",
        epilog="Example: python -m classifier.batch_predict models/cats_dogs 'photos/**/*.jpg' --out results.csv",
    )
    parser.add_argument("model_dir", help="model folder written by python -m classifier.train (local or gs://)")
    parser.add_argument("input_glob", help="files to classify, a quoted glob: 'photos/*.jpg', 'gs://bucket/in/**'")
    parser.add_argument("--out", required=True, help="the CSV to write (local: one file; gs://: Beam's shards)")
    parser.add_argument("--top-k", type=int, default=3, help="classes and probabilities per row (default: 3)")
    add_min_confidence_flag(parser)
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (default: 32)")
    add_trust_flag(parser)
    runner.add_runner_arguments(parser)
    return parser


def check_args(args) -> int:
    """Refuse bad options before any work; the number of classes per row (--top-k, at most every class)."""
    if args.top_k < 1:
        raise UsageError(f"--top-k {args.top_k}: must be at least 1")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be at least 1")
    args.min_confidence = min_confidence_option(args.min_confidence)
    if not runner.is_remote(args.out) and Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: is a folder; name the CSV file to write")
    local = runner.local_model_dir(args.model_dir)
    classes = read_metadata(local).class_names  # a UsageError naming the folder when it is not a model folder
    if not is_model_dir(local):
        raise UsageError(f"{args.model_dir}: no {MODEL_FILE} in it; train a model with python -m classifier.train")
    return min(args.top_k, len(classes))


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    runner.beam()
    top_k = check_args(args)
    runner.check_matches(args.input_glob, "INPUT_GLOB")
    check_out(args.out, args.model_dir, args.input_glob)
    pipeline = runner.make_pipeline(args.runner, beam_args)
    if runner.is_remote(args.out):
        prefix = args.out[: -len(".csv")] if args.out.endswith(".csv") else args.out
        build(pipeline, args, top_k, prefix)
        runner.run_pipeline(pipeline)
        print(f"wrote {prefix}-*.csv (Beam's shards)")
        return 0
    shards_dir = Path(tempfile.mkdtemp(prefix="classifier-batch-"))
    try:
        build(pipeline, args, top_k, str(shards_dir / "part"))
        runner.run_pipeline(pipeline)
        count = merge_shards(sorted(shards_dir.glob("part-*.csv")), Path(args.out))
    finally:
        shutil.rmtree(shards_dir, ignore_errors=True)
    print(f"wrote {args.out}: {count} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
