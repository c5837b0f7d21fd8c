"""Built-in datasets by name: `--data cats_dogs` fetches, verifies and unpacks once, then works offline.

Each dataset is defined in `datasets/registry.json` (where to get it, how its archive is laid out,
how many images each split must hold) and prepared into `<data home>/<folder>/` with `train/` and
`validation/` class folders. A folder is prepared when it holds `.prepared.json`; that marker is
written inside a temporary folder which is renamed into place only after the counts match, so an
interrupted run never leaves something a later run mistakes for complete.

    python -m classifier.datasets list
    python -m classifier.datasets info NAME
    python -m classifier.datasets prepare NAME [--csv-dir DIR] [--from-file FILE ...]

Environment: CLASSIFIER_DATA_HOME (where data goes), CLASSIFIER_DATASETS_REGISTRY (another registry
file), CLASSIFIER_DATASETS_MIRROR (base URL that replaces every download's location).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from .data.datasets import (
    dataset_status,
    get_dataset,
    known_names,
    load_registry,
    prepare,
    prepared_folder,
    read_marker,
    resolve_data,
    url_of,
)
from .data.pixels_csv import convert_pixels_csv
from .errors import ArgumentParser, cli

__all__ = ["convert_pixels_csv", "known_names", "load_registry", "main", "prepare", "resolve_data"]


def _list() -> None:
    for dataset in load_registry().values():
        status, counts = dataset_status(dataset)
        print(f"{dataset.name:<14} {status:<13} {counts:<38} {prepared_folder(dataset)}")


def _info(name: str) -> None:
    dataset = get_dataset(name)
    status, counts = dataset_status(dataset)
    rows = [
        ("title", dataset.title),
        ("kind", dataset.kind),
        ("folder", str(prepared_folder(dataset))),
        ("status", f"{status} ({counts})" if counts else status),
        ("expected", json.dumps(dataset.counts)),
        ("source", dataset.source),
        ("license", dataset.license),
    ]
    for spec in dataset.files:
        details = [
            f"url {url_of(spec) or '(none: bring the file yourself)'}",
            f"size {spec.size or '?'}",
            f"sha256 {spec.sha256 or '?'}",
        ] + ([f"also named {', '.join(spec.aliases)}"] if spec.aliases else [])
        rows.append(("file", f"{spec.file}: " + "; ".join(details)))
    for source in (read_marker(prepared_folder(dataset)) or {}).get("sources", []):
        rows.append(("built from", f"{source['file']} ({source['size']} bytes, sha256 {source['sha256']})"))
    print(name)
    for key, value in rows:
        print(f"  {key + ':':<12}{value}")


@cli
def main(argv: Sequence[str] | None = None) -> int:
    """`python -m classifier.datasets list | info NAME | prepare NAME [--csv-dir DIR] [--from-file FILE...]`."""
    parser = ArgumentParser(prog="python -m classifier.datasets", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="each dataset, whether it is prepared, where, and its counts")
    commands.add_parser("info", help="everything the registry and the prepared copy say").add_argument("name")
    prep = commands.add_parser("prepare", help="download/convert now, so training later needs no network")
    prep.add_argument("name")
    prep.add_argument("--csv-dir", help="folder holding the dataset's CSV files (pixels CSV datasets)")
    prep.add_argument("--from-file", nargs="+", default=[], metavar="FILE", help="use files downloaded by hand")
    args = parser.parse_args(argv)
    if args.command == "list":
        _list()
    elif args.command == "info":
        _info(args.name)
    else:
        print(prepare(args.name, csv_dir=args.csv_dir, from_files=args.from_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
