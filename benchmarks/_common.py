"""Small helpers the benchmark scripts share: import path, machine line, subsets of a data folder, ports.

`--code DIR` on a script's command line (read here, before anything imports `classifier`) runs it on
the `classifier` package of another checkout, e.g. `--code ../main` for before/after figures.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def code_root(argv: list[str]) -> Path:
    """The checkout whose `classifier` the script runs: `--code DIR` if given, else this one."""
    for i, arg in enumerate(argv):
        if arg == "--code" and i + 1 < len(argv):
            return Path(argv[i + 1]).resolve()
        if arg.startswith("--code="):
            return Path(arg.split("=", 1)[1]).resolve()
    return ROOT


CODE = code_root(sys.argv)
sys.path.insert(0, str(CODE))


def machine() -> str:
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), {platform.system()}, Python {platform.python_version()}"


def subset(data_dir: Path, out: Path, per_class: int, split: str = "train") -> Path:
    """Symlink the first `per_class` images of each class of `data_dir/split` into `out/split` (no copying)."""
    for class_dir in sorted(p for p in (data_dir / split).iterdir() if p.is_dir()):
        target = out / split / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(class_dir.iterdir())[:per_class]:
            (target / image.name).symlink_to(image.resolve())
    return out


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def uptime_load() -> str:
    """The 1-, 5- and 15-minute load averages, for the line under each figure."""
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
