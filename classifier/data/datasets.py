"""Built-in datasets by name: `--data cats_dogs` fetches, verifies and unpacks once, then works offline.

Each dataset is defined in `datasets/registry.json` (where to get it, how its archive is laid out,
how many images each split must hold) and prepared into `<data home>/<folder>/` with `train/` and
`validation/` class folders. A folder is prepared when it holds `.prepared.json`; that marker is
written inside a temporary folder which is renamed into place only after the counts match, so an
interrupted run never leaves something a later run mistakes for complete.

`resolve_data(spec)` is what train, evaluate, export and batch_features call; `python -m classifier.datasets`
(list, info, prepare) is the command over this library.

Environment: CLASSIFIER_DATA_HOME (where data goes), CLASSIFIER_DATASETS_REGISTRY (another registry
file), CLASSIFIER_DATASETS_MIRROR (base URL that replaces every download's location).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..console import Log, say
from ..errors import UsageError
from ..files import sha256_of
from .download import DownloadError, VerifyError, download, extract_zip, verify_file
from .formats import is_image_file
from .pixels_csv import convert_pixels_csv

REPO_DATASETS = Path(__file__).resolve().parents[2] / "datasets"
ENV_HOME = "CLASSIFIER_DATA_HOME"
ENV_REGISTRY = "CLASSIFIER_DATASETS_REGISTRY"
ENV_MIRROR = "CLASSIFIER_DATASETS_MIRROR"
MARKER = ".prepared.json"
SPLITS = ("train", "validation")
KINDS = ("zip", "pixels_csv")


# -- the registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    """One file a dataset is built from: a zip (with its `layout`) or a pixels CSV (filling `split`)."""

    file: str  # name in the download cache, in --csv-dir and for --from-file
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    aliases: tuple[str, ...] = ()  # other names accepted for the same file
    layout: tuple[tuple[str, str], ...] = ()  # zip: (folder in the archive, folder in the dataset)
    split: str | None = None  # pixels_csv: the split this CSV becomes


@dataclass(frozen=True)
class Dataset:
    """A registry entry: where its files come from and what the prepared folder must hold."""

    name: str
    kind: str
    folder: str
    files: tuple[SourceFile, ...]
    counts: dict  # split -> total images, or split -> {class: images}
    title: str = ""
    classes: tuple[str | None, ...] | None = None  # pixels_csv: folder name per label, None = never used
    image_shape: tuple[int, int] = (28, 28)
    csv_dir_env: str | None = None
    source: str = ""
    license: str = ""


def registry_path() -> Path:
    return Path(os.environ.get(ENV_REGISTRY) or REPO_DATASETS / "registry.json").expanduser()


def data_home() -> Path:
    """Where prepared datasets and downloads live: CLASSIFIER_DATA_HOME, else the repo's datasets/."""
    home = os.environ.get(ENV_HOME)
    return Path(home).expanduser() if home else REPO_DATASETS


def load_registry() -> dict[str, Dataset]:
    path = registry_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))["datasets"]
        return {name: _parse_dataset(name, entry) for name, entry in sorted(raw.items())}
    except FileNotFoundError:
        raise UsageError(f"dataset registry {path} not found (set by {ENV_REGISTRY}?)") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UsageError(f"dataset registry {path} is not valid: {type(error).__name__}: {error}") from None


def _parse_dataset(name: str, raw: dict) -> Dataset:
    """A Dataset from its JSON entry; refuses names and layouts that could write outside the data home."""
    files = tuple(map(_parse_file, raw["files"]))
    if raw["kind"] not in KINDS or not files:
        raise ValueError(f"{name}: kind must be one of {', '.join(KINDS)}, with at least one file")
    if raw["kind"] == "pixels_csv" and any(f.split not in SPLITS for f in files):
        raise ValueError(f"{name}: each CSV file needs a split: {' or '.join(SPLITS)}")
    classes = raw.get("classes")
    return Dataset(
        name=name,
        kind=raw["kind"],
        folder=_plain_name(raw.get("folder", name)),
        files=files,
        counts=raw.get("counts", {}),
        title=raw.get("title", ""),
        classes=tuple(c if c is None else _plain_name(c) for c in classes) if classes else None,
        image_shape=tuple(raw.get("image_shape", (28, 28))),
        csv_dir_env=raw.get("csv_dir_env"),
        source=raw.get("source", ""),
        license=raw.get("license", ""),
    )


def _parse_file(raw: dict) -> SourceFile:
    return SourceFile(
        file=_plain_name(raw["file"]),
        url=raw.get("url"),
        sha256=raw.get("sha256"),
        size=raw.get("size"),
        aliases=tuple(map(_plain_name, raw.get("aliases", ()))),
        layout=tuple((src, _inside(dst)) for src, dst in raw.get("layout", {}).items()),
        split=raw.get("split"),
    )


def _plain_name(name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"{name!r} is not a plain file or folder name")
    return name


def _inside(path: str) -> str:
    if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
        raise ValueError(f"layout target {path!r} must stay inside the dataset folder")
    return path


def known_names() -> list[str]:
    return list(load_registry())


def get_dataset(name: str) -> Dataset:
    registry = load_registry()
    if name not in registry:
        raise UsageError(f"unknown dataset {name!r} (known: {', '.join(registry)})")
    return registry[name]


def prepared_folder(dataset: Dataset) -> Path:
    return data_home() / dataset.folder


def read_marker(folder: Path) -> dict | None:
    """The manifest of a prepared folder, or None when the folder is not (completely) prepared."""
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- preparing --------------------------------------------------------------------------------------


def resolve_data(spec: str, *, csv_dir: str | None = None, log: Log = say) -> Path:
    """Turn `--data` into a folder: an existing folder as is, a built-in name prepared on first use (progress
    through `log`)."""
    if Path(spec).is_dir():
        return Path(spec)
    names = known_names()
    if spec in names:
        return prepare(spec, csv_dir=csv_dir, log=log)
    raise UsageError(f"--data {spec}: no such folder, and not a built-in dataset (built-in: {', '.join(names)})")


def prepare(name: str, *, csv_dir: str | None = None, from_files: Sequence[str] = (), log: Log = say) -> Path:
    """Return the prepared folder of `name`, building it first if needed (no network when cached)."""
    dataset = get_dataset(name)
    if csv_dir and dataset.kind != "pixels_csv":
        raise UsageError(f"--csv-dir is for CSV datasets; {name} is downloaded as {dataset.kind}")
    target = prepared_folder(dataset)
    if read_marker(target) is not None:
        return target
    if target.exists():
        raise UsageError(
            f"{target} exists but is not a prepared copy of {name} (no {MARKER}); "
            "move it away and run again, or pass it with --data"
        )
    sources = _gather_sources(dataset, csv_dir=csv_dir, from_files=from_files, log=log)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{dataset.folder}.", suffix=".tmp"))
    try:
        counts = _build(dataset, sources, staging, log=log)
        _write_marker(staging, dataset, counts, sources)
        _move_into_place(staging, target)
    except (VerifyError, UsageError) as error:
        _forget_unverified(sources)
        raise UsageError(f"{name}: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"{name}: ready in {target} ({_describe_counts(counts)})")
    return target


@dataclass(frozen=True)
class _Source:
    spec: SourceFile
    path: Path
    cached: bool  # in our download cache, so ours to delete if its content proves bad


def _gather_sources(dataset: Dataset, *, csv_dir, from_files, log: Log) -> list[_Source]:
    """Find every file the dataset needs: --from-file, then the CSV folder, the cache, the network."""
    given = _match_given_files(dataset, from_files)
    folder = _csv_folder(dataset, csv_dir)
    sources = []
    for spec in dataset.files:
        path = given.get(spec.file) or (folder and _find_in(folder, spec))
        if path:
            _verify_given(dataset, spec, path)
            sources.append(_Source(spec, path, cached=False))
        else:
            sources.append(_Source(spec, _fetch(dataset, spec, folder, log=log), cached=True))
    return sources


def _match_given_files(dataset: Dataset, files: Sequence[str]) -> dict[str, Path]:
    matched = {}
    for path in map(Path, files):
        if not path.is_file():
            raise UsageError(f"--from-file {path}: no such file")
        spec = next((s for s in dataset.files if path.name in (s.file, *s.aliases)), None)
        if spec is None:
            expected = ", ".join(s.file for s in dataset.files)
            raise UsageError(f"--from-file {path}: not a file of {dataset.name} (expected {expected})")
        matched[spec.file] = path
    return matched


def _csv_folder(dataset: Dataset, csv_dir: str | None) -> Path | None:
    """The folder the user pointed at for CSVs: --csv-dir, else the dataset's environment variable."""
    env_value = os.environ.get(dataset.csv_dir_env) if dataset.csv_dir_env else None
    origin, value = ("--csv-dir", csv_dir) if csv_dir else (dataset.csv_dir_env, env_value)
    if not value or dataset.kind != "pixels_csv":
        return None
    if not Path(value).is_dir():
        raise UsageError(f"{origin} {value}: no such folder")
    return Path(value)


def _find_in(folder: Path, spec: SourceFile) -> Path | None:
    return next((folder / n for n in (spec.file, *spec.aliases) if (folder / n).is_file()), None)


def _verify_given(dataset: Dataset, spec: SourceFile, path: Path) -> None:
    try:
        verify_file(path, sha256=spec.sha256, size=spec.size)
    except VerifyError as error:
        raise UsageError(f"{dataset.name}: {error} ({path})") from None


def _fetch(dataset: Dataset, spec: SourceFile, csv_folder: Path | None, *, log: Log) -> Path:
    """The cached copy of `spec` if it still verifies, else a fresh download into the cache."""
    cached = data_home() / "downloads" / dataset.name / spec.file
    if cached.is_file():
        try:
            verify_file(cached, sha256=spec.sha256, size=spec.size)
            return cached
        except VerifyError:
            cached.unlink()
    url = url_of(spec)
    if url is None:
        raise _no_source(dataset, spec, csv_folder)
    log(f"{dataset.name}: downloading {url}")
    by_hand = (
        f"download it by hand and run `python -m classifier.datasets prepare {dataset.name} "
        "--from-file FILE`, or pass --data with a folder"
    )
    try:
        return download(url, cached, sha256=spec.sha256, size=spec.size, log=log)
    except DownloadError as error:
        advice = "no network? Then" if error.network else "run again to retry, or"
        raise UsageError(f"could not download {dataset.name} from {url} ({error}): {advice} {by_hand}") from None
    except VerifyError as error:
        raise UsageError(
            f"{dataset.name}: {error} (from {url}); the download was deleted. "
            f"If the file changed upstream, update sha256/size in {registry_path()}"
        ) from None


def url_of(spec: SourceFile) -> str | None:
    """The registry URL, or the same file name under CLASSIFIER_DATASETS_MIRROR when that is set."""
    mirror = os.environ.get(ENV_MIRROR)
    if not mirror:
        return spec.url
    name = PurePosixPath(urlsplit(spec.url).path).name if spec.url else spec.file
    return f"{mirror.rstrip('/')}/{name}"


def _no_source(dataset: Dataset, spec: SourceFile, csv_folder: Path | None) -> UsageError:
    if dataset.kind != "pixels_csv":
        return UsageError(
            f"{dataset.name}: no URL for {spec.file} in {registry_path()}; "
            f"run `python -m classifier.datasets prepare {dataset.name} --from-file FILE`"
        )
    env = f" or set {dataset.csv_dir_env}" if dataset.csv_dir_env else ""
    wanted = ", ".join(" or ".join((f.file, *f.aliases)) for f in dataset.files)
    missing = " or ".join((spec.file, *spec.aliases))
    where = f"{missing} is not in {csv_folder}" if csv_folder else "no CSV folder was given"
    return UsageError(
        f"{dataset.name} needs its CSV files ({wanted}) and {where}; they are distributed behind a "
        f"login at {dataset.source or 'the source'}: download them, then pass --csv-dir DIR{env}"
    )


def _forget_unverified(sources: list[_Source]) -> None:
    """Delete cached downloads whose content failed and that no checksum vouches for: refetch next time."""
    for source in sources:
        if source.cached and not source.spec.sha256:
            source.path.unlink(missing_ok=True)


def _build(dataset: Dataset, sources: list[_Source], staging: Path, *, log: Log) -> dict:
    """Unpack or convert every source into `staging`; return its image counts once they verify."""
    for source in sources:
        if dataset.kind == "zip":
            log(f"{dataset.name}: extracting {source.path.name}")
            extract_zip(source.path, staging, dict(source.spec.layout))
        else:
            log(f"{dataset.name}: converting {source.path.name} to {source.spec.split}/ PNGs")
            convert_pixels_csv(source.path, staging / source.spec.split, dataset.classes, dataset.image_shape)
    counts = count_images(staging)
    _check_counts(dataset, counts)
    return counts


def count_images(root: Path) -> dict[str, dict[str, int]]:
    """Images per class folder of each split under `root`, the shape the trainer will see."""
    counts = {}
    for split in SPLITS:
        if (root / split).is_dir():
            counts[split] = {
                d.name: sum(1 for f in d.iterdir() if is_image_file(f))
                for d in sorted((root / split).iterdir())
                if d.is_dir()
            }
    return counts


def _check_counts(dataset: Dataset, counts: dict) -> None:
    for split in SPLITS:
        if not sum(counts.get(split, {}).values()):
            raise VerifyError(f"no images in {split}/ after unpacking; the registry layout does not match the files")
    for split, want in dataset.counts.items():
        got = counts.get(split, {})
        if isinstance(want, int) and sum(got.values()) != want:
            raise VerifyError(f"expected {want} images in {split}/, found {sum(got.values())}")
        for cls in sorted(set(want) | set(got)) if isinstance(want, dict) else ():
            if want.get(cls, 0) != got.get(cls, 0):
                raise VerifyError(f"expected {want.get(cls, 0)} images in {split}/{cls}/, found {got.get(cls, 0)}")


def _write_marker(staging: Path, dataset: Dataset, counts: dict, sources: list[_Source]) -> None:
    """Record what was built from what; written last, and its presence alone means 'prepared'."""
    manifest = {
        "dataset": dataset.name,
        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "counts": counts,
        "sources": [{"file": s.path.name, "size": s.path.stat().st_size, "sha256": sha256_of(s.path)} for s in sources],
    }
    (staging / MARKER).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _move_into_place(staging: Path, target: Path) -> None:
    staging.chmod(0o755)  # mkdtemp makes it private; the dataset is not
    try:
        os.rename(staging, target)
    except OSError:
        if read_marker(target) is None:  # not a concurrent run that finished first
            raise


def _describe_counts(counts: dict) -> str:
    return ", ".join(f"{split} {n if isinstance(n, int) else sum(n.values())}" for split, n in counts.items())


def dataset_status(dataset: Dataset) -> tuple[str, str]:
    """("prepared" or "not prepared", its counts or the counts it expects): what `list` and `info` show."""
    marker = read_marker(prepared_folder(dataset))
    if marker is not None:
        return "prepared", _describe_counts(marker.get("counts", {}))
    return "not prepared", f"expects {_describe_counts(dataset.counts)}" if dataset.counts else ""
