"""`classifier.batch_predict`'s pipeline: a glob of images -> `Predictor`'s answers -> CSV shards, on Beam.

A worker lists the paths the glob matches (`runner.match_paths`: local, or `gs://` with `apache-beam[gcp]`), Beam
spreads them over the workers, each reads its files (`runner.read_bytes`: a local path only when it leads to a
regular file, opened without waiting and checked on the opened descriptor, never more than `MAX_UPLOAD_BYTES`),
and `RunInference` batches them through `handlers.PredictorHandler`, whose model is the project's own `Predictor`:
the model folder loads with its checks once per worker, and each file is decoded by `Predictor.pixels`, so the
numbers are `Predictor`'s for the same files. A file that cannot be used becomes its error row (rows.py).

`check_out` refuses, before any work, an `--out` whose writing would destroy something the run uses or any model.
handlers.py imports apache_beam at module level: `build` imports it only when a pipeline is built.
"""

from __future__ import annotations

import os
import stat

from ..data.formats import MAX_UPLOAD_BYTES
from ..errors import UsageError
from ..files import FileRefused
from ..model.artifacts import model_dir_around
from . import runner
from .rows import csv_line, error_row, header


def read_files(path: str, top_k: int):
    """A matched path -> (path, bytes), or its error row (tagged "errors") when it is not a regular file (a folder, a
    dangling link, a device, a FIFO...: the row says which), too large or unreadable."""
    from apache_beam import pvalue

    try:
        data = runner.read_bytes(path, MAX_UPLOAD_BYTES)
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

    from .handlers import PredictorHandler

    files = (
        pipeline
        | "Glob" >> beam.Create([args.input_glob])
        | "Match" >> beam.FlatMap(runner.match_paths)  # on a worker, as Beam's MatchFiles: every path, with a row
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


def check_out(out: str, model_dir: str, input_glob: str) -> None:
    """Refuse an --out whose writing would destroy something: a path inside a model folder (the one in use or any
    other, links resolved), an existing file that is not a regular file (a device, a FIFO...), or one of the
    inputs (the same path once links are resolved, or the same file). A remote --out is refused inside a remote
    model folder."""
    if runner.is_remote(out):
        if runner.is_remote(model_dir) and out.startswith(model_dir.rstrip("/") + "/"):
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
    if not runner.is_remote(input_glob) and _is_input(out, target, runner.match_paths(input_glob)):
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
