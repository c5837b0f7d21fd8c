"""The rows of `classifier.batch_predict`'s CSV, and the merge of Beam's shards into one file (no Beam here).

    path, prediction, probability, class_1, probability_1, ... class_K, probability_K, error

A prediction fills every field but `error`; a file that cannot be used fills `path` and `error` only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..atomic import atomic_file
from ..model.confidence import NOT_SURE, Answer


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


def merge_shards(shards: list[Path], out: Path) -> int:
    """The shards' rows under one header, sorted by path, written to `out` atomically; how many rows."""
    rows, head = [], None
    for shard in shards:
        with open(shard, newline="", encoding="utf-8") as file:  # Beam's WriteToText writes UTF-8
            reader = csv.reader(file)
            head = next(reader, head)
            rows.extend(reader)
    rows.sort(key=lambda row: row[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(head)
        writer.writerows(rows)
    return len(rows)
