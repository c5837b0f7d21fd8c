"""The batch commands' runner, Apache Beam: what `batch_predict` and `batch_features` share.

Beam is optional (`pip install -r requirements-beam.txt`, or the `[beam]` extra); without it the batch
commands stop with one line saying so, and nothing else in the package imports this module.

A batch command takes its own options, then `--runner` (default `DirectRunner`, which runs here, in
this process) and any other Beam pipeline option, passed through as Beam spells it
(`--direct_num_workers=2 --direct_running_mode=multi_processing`, or `--project`, `--region`,
`--temp_location` for `DataflowRunner`, `--flink_master` for `FlinkRunner`...). An option no Beam
options class knows, a value Beam refuses, or a runner Beam cannot start is one `UsageError` line
before any work starts. Paths go through Beam's `FileSystems`: local paths, and `gs://` where
`apache-beam[gcp]` is installed. Docs: docs/distributed.md, "Scaling out".
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import UsageError, first_line
from ..files import read_bounded, read_regular

INSTALL_HINT = "pip install -r requirements-beam.txt (or pip install -e '.[beam]')"
DEFAULT_RUNNER = "DirectRunner"


def beam():
    """The `apache_beam` module; a UsageError saying how to install it when it is missing."""
    quiet_beam_logs()
    try:
        import apache_beam
    except ImportError:
        raise UsageError(f"this command runs on Apache Beam, which is not installed; {INSTALL_HINT}") from None
    return apache_beam


def quiet_beam_logs() -> None:
    """Errors only from the logging module, from here on: Beam warns once a batch when torch is absent ("Resource
    module is not available") and at import without its gcp extra ("apitools not found", on the root logger):
    noise about nothing we use."""
    logging.getLogger().setLevel(logging.ERROR)
    # A failing step is logged by Beam with its worker's traceback, then raised here, where the command reports it.
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """`--runner`, and the epilog that says the rest of Beam's options pass through."""
    parser.add_argument(
        "--runner",
        default=DEFAULT_RUNNER,
        help=f"Beam runner: {DEFAULT_RUNNER} (here, default), DataflowRunner, FlinkRunner, SparkRunner, "
        "PortableRunner; any other Beam pipeline option (--direct_num_workers=2, --project=..., --flink_master=...) "
        "is passed to Beam as it is written",
    )


def make_pipeline(runner: str, beam_args: Sequence[str]):
    """A Beam pipeline on `--runner` with the passed-through options, checked before any work: a UsageError naming
    an argument no Beam options class takes (Beam itself only logs it and drops it), a value Beam refuses, or
    options the runner finds missing (DataflowRunner without --project...)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = [f"--runner={runner}", *beam_args]
    _import_runner(runner)  # its own options class (FlinkRunnerOptions...) must be known before checking
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.error = _refuse  # a bad value: one line, not argparse's usage and exit
    for cls in {str(cls): cls for cls in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # how Beam's own get_all_options builds its parser
    _, unknown = parser.parse_known_args(flags)
    if unknown:
        shown = " ".join(unknown[:3]) + (f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else "")
        hint = "; quote a glob so that the shell leaves it to this command" if not unknown[0].startswith("-") else ""
        raise UsageError(f"{shown}: not an option of this command or of Beam (see --help){hint}")
    try:
        return beam().Pipeline(options=PipelineOptions(flags))
    except ValueError as error:  # "Pipeline has validations errors:" and one line per missing option
        raise UsageError(f"--runner {runner}: " + " ".join(str(error).split())) from None


def _refuse(message: str):
    raise UsageError(f"Beam pipeline option: {message}")


def _import_runner(runner: str) -> None:
    """Import the runner's module (it registers the runner's options); a UsageError when Beam has no such runner
    or it cannot load here (DataflowRunner without apache-beam[gcp])."""
    from apache_beam.runners.runner import create_runner

    try:
        create_runner(runner)
    except (ValueError, ImportError, RuntimeError) as error:
        raise UsageError(f"--runner {runner}: {first_line(error)}") from None


def run_pipeline(pipeline) -> object:
    """Run a built pipeline to the end; its result (for metrics). A UsageError raised on a worker (a model that
    does not load) comes back as one, without Beam's "[while running ...]"."""
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except UsageError as error:
        raise UsageError(str(error).split(" [while running")[0]) from None
    return result


def counter(result, namespace: str, name: str) -> int:
    """A Beam counter's committed total (attempted where the runner commits none, as the DirectRunner)."""
    from apache_beam.metrics.metric import MetricsFilter

    found = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))["counters"]
    return sum((entry.committed if entry.committed is not None else entry.attempted) for entry in found)


def is_remote(path: str) -> bool:
    """Whether `path` names a remote filesystem (gs://, s3://...), read through Beam's FileSystems."""
    return "://" in str(path)


def check_matches(pattern: str, what: str) -> None:
    """A UsageError unless `pattern` (a glob, local or remote) matches at least one path (`match_paths`)."""
    try:
        found = match_paths(pattern, limit=1)
    except Exception as error:  # noqa: BLE001 (BeamIOError, ValueError "Unable to get filesystem"...)
        raise UsageError(f"{what} {pattern}: cannot be listed ({first_line(error)})") from None
    if not found:
        raise UsageError(f"{what} {pattern}: matches no file; quote the glob so the shell leaves it to this command")


def match_paths(pattern: str, limit: int | None = None) -> list[str]:
    """The paths a glob matches (at most `limit`), in Beam's syntax: `*` and `?` within one folder, `**` across
    folders, `[...]`. A remote glob is Beam's own match. A local one is matched as Beam's `LocalFileSystem` does
    (the same walk, which enters no symlinked folder, and the same pattern), but every path it names is kept for
    the reader to judge, where Beam drops some without a word: a dangling symlink, a device, a FIFO, and a folder
    the glob names without going into it (`*.png` matching a folder `x.png`; `**` goes into every folder it
    matches) or a symlink to one. A glob without wildcards is that path, whatever it is. A relative glob is matched
    from the current folder."""
    if is_remote(pattern):
        from apache_beam.io.filesystems import FileSystems

        return [found.path for found in FileSystems.match([pattern], limits=[limit])[0].metadata_list]
    return list(itertools.islice(_local_matches(pattern), limit))


def _local_matches(pattern: str) -> Iterator[str]:
    from apache_beam.io.filesystem import FileSystem

    if pattern.endswith(os.sep):
        pattern += "*"  # a folder: the files in it, as Beam reads it
    prefix = re.match(r"[^[*?]*", pattern).group(0)  # up to the first wildcard
    if prefix == pattern:
        if os.path.lexists(pattern):
            yield pattern
        return
    matches = re.compile(FileSystem.translate_pattern(pattern)).match
    top = os.path.dirname(prefix)
    for folder, subfolders, names in os.walk(top or os.curdir):  # symlinked folders are listed, never entered
        for name, is_folder in [(name, False) for name in names] + [(name, True) for name in subfolders]:
            path = os.path.join(folder, name)
            path = path if top else path[len(os.curdir + os.sep) :]  # a relative glob matches paths without "./"
            # A folder the glob goes into (`**`) is no path of its own (its files are); one it names without going
            # into it is, and so is a symlinked folder, which the walk never enters.
            goes_into = is_folder and not os.path.islink(path) and matches(path + os.sep)
            if matches(path) and not goes_into:
                yield path


def read_bytes(path: str, limit: int) -> bytes:
    """A matched file's bytes, at most `limit` (else `FileRefused`): a local path only when it leads to a regular
    file (`files.read_regular`: no device, FIFO or folder, no wait), a remote one through Beam's FileSystems."""
    if not is_remote(path):
        return read_regular(path, limit)
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type="uncompressed") as file:
        return read_bounded(file, path, limit)


def local_model_dir(model_dir: str) -> Path:
    """A model folder on local disk: `model_dir` itself, or a copy of a remote one (gs://...) fetched once per
    machine through Beam's FileSystems into the temporary folder (written whole, then renamed into place)."""
    if not is_remote(model_dir):
        return Path(model_dir)
    from apache_beam.io.filesystems import FileSystems

    key = hashlib.sha256(model_dir.encode()).hexdigest()[:16]
    local = Path(tempfile.gettempdir()) / "classifier-models" / key
    if local.is_dir():
        return local
    root = model_dir.rstrip("/")
    try:
        files = FileSystems.match([f"{root}/**"])[0].metadata_list
    except Exception as error:  # noqa: BLE001 (as check_matches)
        raise UsageError(f"{model_dir}: cannot be listed ({first_line(error)})") from None
    local.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=local.parent))
    try:
        for file in files:
            target = staging / file.path[len(root) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            with FileSystems.open(file.path) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
        try:
            os.rename(staging, local)
        except OSError:  # another process on this machine put its copy there first: the same files
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return local
