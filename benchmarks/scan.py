"""What the training scan costs at 3,000 and at 100,000 files: listing, hashing, checking.

    python benchmarks/scan.py [--sizes 3000 100000] [--work DIR]

For each size, a synthetic JPEG folder shaped like cats_and_dogs_filtered (train/ and validation/,
two classes, 280-500 px; ../shared/bench/make_synthetic.py) is written into --work, or reused if
it is there (100,000 files take a while to write and 3.7 GB). Then, each timed on its own:
listing the files (the scan's `find_class_files`), hashing them (sha256 of every byte, as the
feature cache and the scan memo key files), the whole scan with an empty memo (a first training
run: hash and decode every file), with the memo that run left (a retrain: hash every file, decode
none), and without a memo (decode every file, as `evaluate` scans). The files are in the page
cache (each file is read once before the timing starts), as on a machine that retrains a folder it trained on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine, uptime_load

from classifier.console import silent
from classifier.data.pipeline import ScanMemo, content_hashes, find_class_files, load_image_data

GENERATOR = ROOT.parent / "shared" / "bench" / "make_synthetic.py"


def synthetic(folder: Path, files: int) -> Path:
    """`files` synthetic JPEGs in `folder` (2/3 train, 1/3 validation, two classes), written unless present."""
    per_train, per_val = -(-files // 3), files // 6
    if not (folder / "validation").is_dir():
        print(f"writing {files:,} synthetic images into {folder} ...", flush=True)
        subprocess.run([sys.executable, str(GENERATOR), str(folder), str(per_train), str(per_val)], check=True)
    return folder


def timed(what: str, function) -> None:
    started = time.perf_counter()
    result = function()
    print(f"  {what:50} {time.perf_counter() - started:7.2f} s{result or ''}", flush=True)


def measure(folder: Path) -> None:
    splits = [folder / "train", folder / "validation"]
    paths = [str(path) for split in splits for files in find_class_files(split).values() for path in files]
    gigabytes = sum(Path(path).stat().st_size for path in paths) / 1e9
    print(f"{len(paths):,} files ({gigabytes:.2f} GB); {uptime_load()}")
    content_hashes(paths)  # every file read once, untimed: into the page cache
    timed("listing", lambda: [find_class_files(split) for split in splits] and None)
    timed("hashing (sha256 of every file, 4 threads)", lambda: content_hashes(paths) and None)
    with tempfile.TemporaryDirectory() as memo_dir:

        def scan(memo: bool = True) -> str:
            data = load_image_data(folder, log=silent, memo=ScanMemo(memo_dir, folder) if memo else None)
            return f"   ({len(data.train) + len(data.validation):,} usable, {len(data.skipped)} skipped)"

        timed("scan, empty memo (first run: hash, decode all)", scan)
        timed("scan, its memo (retrain: hash all, decode none)", scan)
        timed("scan without a memo (decode all)", lambda: scan(memo=False))
    print(f"  {uptime_load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 100_000], help="files per folder")
    parser.add_argument("--work", type=Path, help="where the synthetic folders are kept (default: a temporary one)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as temporary:
        for size in args.sizes:
            measure(synthetic((args.work or Path(temporary)) / f"synthetic_{size}", size))


if __name__ == "__main__":
    main()
