"""Pixel CSVs (a `label` column, then `pixel1` .. `pixelN`) -> a class-folder dataset of PNGs.

Sign Language MNIST ships this way (28x28 grey, labels 0..24 for the letters A..Y without J);
any CSV of the same shape converts the same way, so training treats it like any image folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UsageError


def convert_pixels_csv(csv_path, out_dir, class_names=None, image_shape=(28, 28)) -> dict[str, int]:
    """Write each row of a `label,pixel1..pixelN` CSV as a grayscale PNG in `out_dir/<class>/<row>.png`.

    `class_names[label]` names the class folder (None marks a label that must not occur); without
    class_names the label number does. Returns images written per class. A CSV with the wrong
    columns, or labels or pixel values out of range, raises UsageError before anything is written.
    """
    csv_path, out_dir = Path(csv_path), Path(out_dir)
    labels, pixels = read_pixels_csv(csv_path, image_shape)
    names = _label_folders(csv_path, labels, class_names)
    width = len(str(len(labels) - 1))
    counts: dict[str, int] = {}
    for row, (name, flat) in enumerate(zip(names, pixels, strict=True)):
        if name not in counts:
            (out_dir / name).mkdir(parents=True, exist_ok=True)
            counts[name] = 0
        Image.fromarray(flat.reshape(image_shape)).save(out_dir / name / f"{row:0{width}d}.png")
        counts[name] += 1
    return dict(sorted(counts.items()))


def read_pixels_csv(csv_path: Path, image_shape=(28, 28)) -> tuple[np.ndarray, np.ndarray]:
    """Labels (int) and pixel rows (uint8, row-major) of a pixels CSV, checked for shape and range."""
    n_pixels = int(np.prod(image_shape))
    expected = ["label"] + [f"pixel{i}" for i in range(1, n_pixels + 1)]
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as file:
            header = [c.strip().strip('"') for c in file.readline().rstrip("\r\n").split(",")]
            order = _column_order(csv_path, header, expected, image_shape)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy warns on a header-only file; we say so below
                table = np.loadtxt(file, delimiter=",", dtype=np.int32, ndmin=2)
    except OSError as error:
        raise UsageError(f"{csv_path}: cannot read ({error.strerror or error})") from None
    except ValueError as error:
        raise UsageError(f"{csv_path}: not a pixels CSV: {error}") from None
    if table.shape[0] == 0 or table.shape[1] != len(expected):
        raise UsageError(
            f"{csv_path}: expected rows of {len(expected)} numbers under the header, "
            f"found {table.shape[0]} rows of {table.shape[1]}"
        )
    table = table if order is None else table[:, order]
    pixels = table[:, 1:]
    outside = (pixels < 0) | (pixels > 255)
    if outside.any():
        row, col = map(int, np.argwhere(outside)[0])
        raise UsageError(f"{csv_path}: pixel values must be 0-255; data row {row + 1} has {pixels[row, col]}")
    return table[:, 0].astype(np.int64), pixels.astype(np.uint8)


def _column_order(csv_path: Path, header: list[str], expected: list[str], image_shape) -> list[int] | None:
    """None when the columns are in the usual order, else the permutation that puts them there."""
    if header == expected:
        return None
    if len(header) == len(expected) and set(header) == set(expected):
        return [header.index(c) for c in expected]
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    detail = "; ".join(
        f"{what}: {', '.join(cols[:3])}{', ...' if len(cols) > 3 else ''} ({len(cols)})"
        for what, cols in (("missing", missing), ("unexpected", extra))
        if cols
    )
    shape = "x".join(map(str, image_shape))
    raise UsageError(
        f"{csv_path}: not a pixels CSV for {shape} images: expected columns label, "
        f"pixel1..pixel{len(expected) - 1}; {detail or 'duplicate columns'}"
    )


def _label_folders(csv_path: Path, labels: np.ndarray, class_names) -> list[str]:
    """The class folder of every row; refuses a label with no class."""
    if class_names is None:
        ok, allowed = labels >= 0, "non-negative integers"
    else:
        valid = [i for i, n in enumerate(class_names) if n is not None]
        ok, allowed = np.isin(labels, valid), _spans(valid)
    if not ok.all():
        row = int(np.argmin(ok))
        raise UsageError(f"{csv_path}: label {labels[row]} in data row {row + 1} is out of range (valid: {allowed})")
    if class_names is None:
        return [str(v) for v in labels]
    return [class_names[v] for v in labels]


def _spans(numbers: list[int]) -> str:
    """[0, 1, 2, 4] -> '0-2, 4'."""
    spans, start = [], None
    for i, n in enumerate(numbers):
        start = n if start is None else start
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            spans.append(f"{start}-{n}" if n != start else f"{n}")
            start = None
    return ", ".join(spans)
