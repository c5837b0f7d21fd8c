"""The feature cache at scale, on synthetic vectors: file count, fill and read times from 1,000 to 100,000 entries.

    python benchmarks/cache_scale.py [--dir FOLDER_OR_URL] [--sizes 1000 10000 100000] [--dim 1280]

For each size: a fresh cache is filled as the feature pass fills it (one `write` per SHARD_ROWS entries),
then a new `FeatureCache` (a new process's view: nothing memoised) lists and reads it: `missing` over every
key (the index alone), and `read` of every vector. Then the head fit's case: 6,000 vectors (a 2,000-image
training set with 2 augmented copies) read from that cache. The old layout (one `.npy` per entry,
CACHE_FORMAT 4) is timed beside it, filled and read the way features.py did, up to --old-max entries.
Vectors are --dim float32 (1280: MobileNetV2's); sizes above --big use --big-dim to bound disk use.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time

import numpy as np
from _common import machine, uptime_load

from classifier.training.featurecache import SHARD_ROWS, FeatureCache, gfile

HEAD_FIT_VECTORS = 6000


class Seconds(float):
    """Wall seconds, printed with the process's CPU seconds beside them (steadier on a loaded machine)."""

    cpu = 0.0

    def __format__(self, spec: str) -> str:
        return f"{float(self):{spec}} s (cpu {self.cpu:.2f})"


def timed(call):
    started, cpu = time.perf_counter(), time.process_time()
    result = call()
    seconds = Seconds(time.perf_counter() - started)
    seconds.cpu = time.process_time() - cpu
    return result, seconds


def files_under(folder: str) -> int:
    return sum(len(names) for _, _, names in gfile.walk(folder))


def new_layout(folder: str, keys: list, vectors: np.ndarray) -> str:
    """Fill, list and read the sharded cache; one line of figures."""
    cache = FeatureCache(folder)
    _, fill = timed(
        lambda: [
            cache.write(keys[i : i + SHARD_ROWS], vectors[i : i + SHARD_ROWS]) for i in range(0, len(keys), SHARD_ROWS)
        ]
    )
    fresh = FeatureCache(folder)
    missing, index = timed(lambda: fresh.missing(keys))
    rows, read = timed(lambda: FeatureCache(folder).read(keys))
    assert not missing and all(row is not None for row in rows)
    head = keys[:: max(1, len(keys) // HEAD_FIT_VECTORS)][:HEAD_FIT_VECTORS]
    _, head_read = timed(lambda: np.stack(FeatureCache(folder).read(head)))
    return (
        f"shards: {files_under(folder):6d} files, fill {fill:5.2f}, index of all keys {index:4.2f}, read all "
        f"{read:5.2f}, read {len(head)} {head_read:4.2f}"
    )


def old_layout(folder: str, keys: list, vectors: np.ndarray) -> str:
    """Fill and read one .npy per entry (the CACHE_FORMAT 4 layout), as features.py did."""
    os.makedirs(folder)

    def fill():
        for (sha, _), row in zip(keys, vectors, strict=True):
            path = os.path.join(folder, f"{sha}.npy")
            with open(path + ".tmp", "wb") as file:
                np.save(file, row)
            os.replace(path + ".tmp", path)

    def read(subset):
        return [np.load(io.BytesIO(open(os.path.join(folder, f"{sha}.npy"), "rb").read())) for sha, _ in subset]

    _, fill_time = timed(fill)
    _, read_time = timed(lambda: read(keys))
    head = keys[:: max(1, len(keys) // HEAD_FIT_VECTORS)][:HEAD_FIT_VECTORS]
    _, head_read = timed(lambda: read(head))
    return (
        f"one .npy each: {len(os.listdir(folder)):6d} files, fill {fill_time:5.2f}, read all {read_time:5.2f}, "
        f"read {len(head)} {head_read:4.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="where to build the caches (a folder or a gs:// URL; default: a temp folder)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--dim", type=int, default=1280, help="floats per vector (default 1280)")
    parser.add_argument("--big", type=int, default=10000, help="sizes above this use --big-dim (default 10000)")
    parser.add_argument("--big-dim", type=int, default=128, help="floats per vector above --big (default 128)")
    parser.add_argument("--old-max", type=int, default=100000, help="time the old layout up to this size")
    args = parser.parse_args()
    print(f"machine: {machine()}; {uptime_load()}; SHARD_ROWS {SHARD_ROWS}")
    work = args.dir or tempfile.mkdtemp(prefix="cache-scale-")
    rng = np.random.default_rng(0)
    for size in args.sizes:
        dim = args.dim if size <= args.big else args.big_dim
        keys = [(f"{i:064x}", "clean") for i in range(size)]
        vectors = rng.normal(size=(size, dim)).astype(np.float32)
        print(f"{size:7d} entries x {dim} floats: {new_layout(f'{work}/shards-{size}', keys, vectors)}", flush=True)
        if size <= args.old_max and not args.dir:
            print(f"{'':7s}{'':{len(str(dim)) + 19}s} {old_layout(f'{work}/old-{size}', keys, vectors)}", flush=True)
    print(uptime_load())
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
