"""Classify every image a glob matches, on Apache Beam, into one CSV: the batch form of `classifier.predict`.

    python -m classifier.batch_predict MODEL_DIR 'INPUT_GLOB' --out results.csv [--top-k 3]
        [--min-confidence P] [--batch-size 32] [--runner DirectRunner] [Beam pipeline options]

The pipeline: Beam lists the files (`fileio.MatchFiles`: local, or `gs://` with `apache-beam[gcp]`),
spreads them over the workers, reads each (files over `limits.MAX_UPLOAD_BYTES` are not read), and
`RunInference` batches them through `PredictorHandler`, whose model is the project's own `Predictor`:
the model folder loads with its checks (Keras safe mode, a hub: backbone only from the folder's own
`hub/` unless `--trust-hub-handle`) once per worker, and each file is decoded by `Predictor.pixels`,
so the numbers are `Predictor`'s for the same files. A remote model folder is copied to the
worker's disk first (`engine.local_model_dir`).

One CSV row per matched file, header first:

    path, prediction, probability, class_1, probability_1, ... class_K, probability_K, error

`prediction` is the most probable class, or `not sure` when its probability is under the model's
own threshold or `--min-confidence` (the rule of `confidence.py`, as `classifier.predict` applies
it); `class_1` always names it. A file that cannot be used (not an image, corrupt,
too large, unreadable) is a row with only `path` and `error` filled: never a failed run. Rows are
sorted by path when the output is local.

Output: a local `--out` is written whole under a temporary name beside it, then renamed (Beam's shards
go to a temporary folder and are merged), so a crash leaves the previous file. A remote `--out`
(gs://.../results.csv) is left as Beam's shards, `results-00000-of-00004.csv` and so on, each with
the header; Beam writes each under a temporary name and renames it when the job succeeds.

Bad input (no model folder, a glob that matches nothing, an unknown option) is one `error:` line, exit 2.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from .errors import ArgumentParser, UsageError, cli
from .evaluation.confidence import NOT_SURE, Answer, add_min_confidence_flag, min_confidence_option
from .model.artifacts import MODEL_FILE, add_trust_flag, is_model_dir, read_metadata
from .serving import engine
from .serving.limits import MAX_UPLOAD_BYTES


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


def read_files(metadata, top_k: int):
    """A matched file -> (path, bytes), or its error row (tagged "errors") when it is too large or unreadable."""
    from apache_beam import pvalue
    from apache_beam.io.filesystems import FileSystems

    path = metadata.path
    if metadata.size_in_bytes > MAX_UPLOAD_BYTES:
        yield pvalue.TaggedOutput("errors", error_row(path, f"larger than {MAX_UPLOAD_BYTES // 2**20} MB", top_k))
        return
    try:
        with FileSystems.open(path, compression_type="uncompressed") as file:
            data = file.read()
    except Exception as error:  # noqa: BLE001 (OSError, BeamIOError...: the row says it, the run goes on)
        yield pvalue.TaggedOutput("errors", error_row(path, f"cannot be read ({type(error).__name__}: {error})", top_k))
        return
    yield path, data


def build(pipeline, args, top_k: int, out_prefix: str) -> None:
    """MatchFiles -> Reshuffle -> read -> RunInference(PredictorHandler) -> CSV shards at `out_prefix`."""
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.ml.inference.base import RunInference

    from .serving.handlers import PredictorHandler

    files = (
        pipeline
        | "Match" >> fileio.MatchFiles(args.input_glob)
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
        with open(shard, newline="") as file:
            reader = csv.reader(file)
            head = next(reader, head)
            rows.extend(reader)
    rows.sort(key=lambda row: row[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(handle, "w", newline="") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(head)
            writer.writerows(rows)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 is for secrets: a results file reads as any other
        os.replace(temporary, out)
    finally:
        Path(temporary).unlink(missing_ok=True)
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


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    engine.beam()
    top_k = check_args(args)
    engine.check_matches(args.input_glob, "INPUT_GLOB")
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
