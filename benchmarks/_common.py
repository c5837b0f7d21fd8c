"""Small helpers the benchmark scripts share: import path, machine line, subsets of a data folder."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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
