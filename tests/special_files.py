"""Paths named like images that are no regular file, made in code: the readers must refuse each, saying what it is,
without reading or waiting. `unblocked` keeps a test whose reader does wait from hanging the suite."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

DEVICE = "a character device (through a symbolic link), not a regular file"


def make_special_files(folder: Path) -> dict[str, str]:
    """In `folder`: a symlink to /dev/zero (endless) and one to /dev/null, a FIFO (opening it for reading waits for
    a writer), a dangling symlink and a folder, each named `.png`; file name -> the reason a reader gives."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "null.png").symlink_to("/dev/null")
    os.mkfifo(folder / "fifo.png")
    (folder / "dangling.png").symlink_to(folder / "gone.png")
    (folder / "x.png").mkdir()
    return {
        "zero.png": DEVICE,
        "null.png": DEVICE,
        "fifo.png": "a FIFO (named pipe), not a regular file",
        "dangling.png": "a symbolic link whose target does not exist",
        "x.png": "a folder, not a file",
    }


@contextlib.contextmanager
def unblocked(fifos: list[Path], after: float = 60.0):
    """Within the block, a reader stuck opening or reading one of `fifos` is set free after `after` seconds: the
    FIFO gets a writer that closes at once, so the reader sees an empty file, and a broken reader fails its test
    instead of hanging it. Yields the list of FIFOs that had to be freed (empty when no reader waited)."""
    freed: list[Path] = []

    def free():
        for fifo in fifos:
            os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))  # read-write: opens at once, and wakes a reader
            freed.append(fifo)

    timer = threading.Timer(after, free)
    timer.daemon = True
    timer.start()
    try:
        yield freed
    finally:
        timer.cancel()
