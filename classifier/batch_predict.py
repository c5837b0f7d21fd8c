"""Classify every image a glob matches, on Apache Beam, into one CSV: the batch form of `classifier.predict`.

    python -m classifier.batch_predict MODEL_DIR 'INPUT_GLOB' --out results.csv [--top-k 3]
        [--min-confidence P] [--batch-size 32] [--runner DirectRunner] [Beam pipeline options]

The pipeline: a worker lists the paths the glob matches (`engine.match_paths`: local, or `gs://` with
`apache-beam[gcp]`), Beam spreads them over the workers, each reads its files (`engine.read_bytes`: a local
path only when it leads to a regular file, opened without waiting and checked on the opened descriptor, never
more than `limits.MAX_UPLOAD_BYTES`), and `RunInference` batches them through `PredictorHandler`, whose model
is the project's own `Predictor`: the model folder loads with its checks (Keras safe mode, a hub: backbone
only from the folder's own `hub/` unless `--trust-hub-handle`) once per worker, and each file is decoded by
`Predictor.pixels`, so the numbers are `Predictor`'s for the same files. A remote model folder is copied to the
worker's disk first (`engine.local_model_dir`).

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

import csv
import io
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from .atomic import atomic_file
from .data.formats import MAX_UPLOAD_BYTES
from .errors import ArgumentParser, UsageError, cli
from .files import FileRefused
from .model.artifacts import MODEL_FILE, add_trust_flag, is_model_dir, model_dir_around, read_metadata
from .model.confidence import NOT_SURE, Answer, add_min_confidence_flag, min_confidence_option
from .serving import engine


def header(top_k: int) -> list[str]:
    ranked = [column for i in range(1, top_k + 1) for column in (f"class_{i}", f"probability_{i}")]
    return ["path", "prediction", "probability", *ranked, "error"]


def result_row(path: str, ranked: list[tuple[str, float]], answer: Answer) -> list[str]:
    """A prediction's CSV fields: `ranked` is `Predictor.top_k`'s (class, probability) pairs, most probable first;
    `answer` the model's answer (`Predictor.answer`): its class, or NOT_SURE."""
    cells = [cell for name, p in ranked for cell in (name, f"{p:.6f}")]
    return [path, NOT_SURE if answer.not_sure else answer.label, f"{answer.confidence:.6f}", *cells, ""]


def error_row(path: str, error: str, top_k: int) -> list[str]:
    return [path, "", "", *[""] * (2 * top_k), error]


def csv_line(fields: list[str]) -> str:
    """One CSV record without its line end (a path with a comma, quote or newline is quoted)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


def read_files(path: str, top_k: int):
    """A matched path -> (path, bytes), or its error row (tagged "errors") when it is not a regular file (a folder, a
    dangling link, a device, a FIFO...: the row says which), too large or unreadable."""
    from apache_beam import pvalue

    try:
        data = engine.read_bytes(path, MAX_UPLOAD_BYTES)
    except FileRefused as error:
        yield pvalue.TaggedOutput("errors", error_row(path, error.reason, top_k))
        return
    except Exception as error:  # noqa: BLE001 (OSError, BeamIOError...: the row says it, the run goes on)
        yield pvalue.TaggedOutput("errors", error_row(path, f"cannot be read ({type(error).__name__}: {error})", top_k))
        return
    yield path, data


def build(pipeline, args, top_k: int, out_prefix: str) -> None:
    """match -> Reshuffle -> read -> RunInference(PredictorHandler) -> CSV shards at `out_prefix`."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference

    from .serving.handlers import PredictorHandler

    files = (
        pipeline
        | "Glob" >> beam.Create([args.input_glob])
        | "Match" >> beam.FlatMap(engine.match_paths)  # on a worker, as Beam's MatchFiles: every path, with a row
        | "Spread" >> beam.Reshuffle()  # else the whole listing stays with the one worker that made it
        | "Read" >> beam.FlatMap(read_files, top_k).with_outputs("errors", main="files")
    )
    handler = PredictorHandler(args.model_dir, top_k, args.min_confidence, args.batch_size, args.trust_hub_handle)
    predicted = files.files | "Predict" >> RunInference(handler)
    rows = (predicted, files.errors) | "Rows" >> beam.Flatten()
    _ = (
        rows
        | "Csv" >> beam.Map(csv_line)
        | "Write" >> beam.io.WriteToText(out_prefix, file_name_suffix=".csv", header=csv_line(header(top_k)))
    )


def merge_shards(shards: list[Path], out: Path) -> int:
    """The shards' rows under one header, sorted by path, written to `out` atomically; how many rows."""
    rows, head = [], None
    for shard in shards:
        with open(shard, newline="", encoding="utf-8") as file:  # Beam's WriteToText writes UTF-8
            reader = csv.reader(file)
            head = next(reader, head)
            rows.extend(reader)
    rows.sort(key=lambda row: row[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(head)
        writer.writerows(rows)
    return len(rows)


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
    engine.add_engine_arguments(parser)
    return parser


def check_args(args) -> int:
    """Refuse bad options before any work; the number of classes per row (--top-k, at most every class)."""
    if args.top_k < 1:
        raise UsageError(f"--top-k {args.top_k}: must be at least 1")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be at least 1")
    args.min_confidence = min_confidence_option(args.min_confidence)
    if not engine.is_remote(args.out) and Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: is a folder; name the CSV file to write")
    local = engine.local_model_dir(args.model_dir)
    classes = read_metadata(local).class_names  # a UsageError naming the folder when it is not a model folder
    if not is_model_dir(local):
        raise UsageError(f"{args.model_dir}: no {MODEL_FILE} in it; train a model with python -m classifier.train")
    return min(args.top_k, len(classes))


def check_out(out: str, model_dir: str, input_glob: str) -> None:
    """Refuse an --out whose writing would destroy something: a path inside a model folder (the one in use or any
    other, links resolved), an existing file that is not a regular file (a device, a FIFO...), or one of the
    inputs (the same path once links are resolved, or the same file). A remote --out is refused inside a remote
    model folder."""
    if engine.is_remote(out):
        if engine.is_remote(model_dir) and out.startswith(model_dir.rstrip("/") + "/"):
            raise UsageError(f"--out {out}: inside the model folder {model_dir}; write the results outside it")
        return
    folder = model_dir_around(out)
    if folder is not None:
        raise UsageError(f"--out {out}: inside the model folder {folder}; write the results outside it")
    if not os.path.lexists(out):
        return  # nothing there to lose (an input linking to this path, dangling, keeps its link and its row)
    try:
        target = os.stat(out)  # the file a link leads to: what the CSV would replace
    except OSError:  # a dangling link: only the link is replaced, unless it is an input
        target = None
    if target is not None and not stat.S_ISREG(target.st_mode):
        raise UsageError(f"--out {out}: exists and is not a regular file; name a CSV file to write")
    if not engine.is_remote(input_glob) and _is_input(out, target, engine.match_paths(input_glob)):
        raise UsageError(f"--out {out}: is one of the input files (INPUT_GLOB {input_glob}); name another CSV")


def _is_input(out: str, target: os.stat_result | None, inputs: list[str]) -> bool:
    """Whether --out (`target`: the file it leads to, None for a dangling link) is one of `inputs`: the same file,
    or, for links that lead nowhere, the same resolved path."""
    resolved = os.path.realpath(out)
    for path in inputs:
        try:
            found = os.stat(path)
        except OSError:  # a dangling link (or gone meanwhile): the same when it resolves to --out's path
            if os.path.realpath(path) == resolved:
                return True
            continue
        if target is not None and (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    engine.beam()
    top_k = check_args(args)
    engine.check_matches(args.input_glob, "INPUT_GLOB")
    check_out(args.out, args.model_dir, args.input_glob)
    pipeline = engine.make_pipeline(args.runner, beam_args)
    if engine.is_remote(args.out):
        prefix = args.out[: -len(".csv")] if args.out.endswith(".csv") else args.out
        build(pipeline, args, top_k, prefix)
        engine.run_pipeline(pipeline)
        print(f"wrote {prefix}-*.csv (Beam's shards)")
        return 0
    shards_dir = Path(tempfile.mkdtemp(prefix="classifier-batch-"))
    try:
        build(pipeline, args, top_k, str(shards_dir / "part"))
        engine.run_pipeline(pipeline)
        count = merge_shards(sorted(shards_dir.glob("part-*.csv")), Path(args.out))
    finally:
        shutil.rmtree(shards_dir, ignore_errors=True)
    print(f"wrote {args.out}: {count} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
