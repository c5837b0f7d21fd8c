"""Open a path only when it is a regular file: never a device, a FIFO, a socket or a folder, and never a wait.

Every path a user names or a glob matches is read through `open_regular` (images.py's decoder,
`batch_predict`, content hashes), so a symlink to `/dev/zero` is not read without end and a FIFO
named `.png` does not hang the reader. The rule:

- symlinks are followed, and the file they lead to is what is checked;
- the path is checked before it is opened (a device is not even opened: opening some has effects);
- it is then opened with `O_NONBLOCK` (opening a FIFO for reading otherwise waits for a writer) and
  `O_NOCTTY`, and the opened descriptor's own `fstat` decides: a file swapped for something else
  between the check and the open is refused all the same, with no window between check and read.

Anything else raises `FileRefused`, an `OSError` whose `reason` says what the path is instead
("a FIFO (named pipe), not a regular file", "a symbolic link whose target does not exist", "a
folder, not a file"...) without naming a link's target.

`sha256_of` hashes a file's content through `open_regular` (downloads, weights, the training folder's names).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

# The kinds of non-regular file, by their stat test, as a message names them.
KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX; Windows has no FIFOs to open by path
# O_NOCTTY: a terminal opened does not become ours; O_BINARY: Windows' C runtime would translate line ends.
OPEN_FLAGS = os.O_RDONLY | NONBLOCK | sum(getattr(os, flag, 0) for flag in ("O_NOCTTY", "O_CLOEXEC", "O_BINARY"))


class FileRefused(OSError):
    """A path that is not a readable regular file (or too large to read); `reason` says why, without the path."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for binary reading (an ordinary blocking file object) when it leads to a regular file;
    otherwise `FileRefused` saying what it is. The caller closes the file."""
    _check_mode(path, _stat(path))  # the common case: a device or FIFO is refused without being opened
    try:
        fd = os.open(path, OPEN_FLAGS)  # O_NONBLOCK: a FIFO swapped in meanwhile opens at once, no writer needed
    except OSError as error:
        raise _refused(path, error) from None
    try:
        _check_mode(path, os.fstat(fd))  # what was opened is what counts: no check-then-open race
        if NONBLOCK:
            os.set_blocking(fd, True)  # a regular file: back to ordinary reads
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(file: BinaryIO, path: str | Path, limit: int) -> bytes:
    """All of an open file's bytes, or `FileRefused` when it holds more than `limit` (at most `limit` + 1 are read,
    whatever size it declared: a file that grows or lies about its size is still bounded)."""
    data = file.read(limit + 1)
    if len(data) > limit:
        raise FileRefused(path, f"larger than {limit // 2**20} MB")
    return data


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them (`FileRefused` otherwise, before reading any
    when its size says so)."""
    with open_regular(path) as file:
        if os.fstat(file.fileno()).st_size > limit:
            raise FileRefused(path, f"larger than {limit // 2**20} MB")
        return read_bounded(file, path, limit)


def sha256_of(path: Path) -> str:
    """The sha256 of a file's content (`FileRefused` when `path` is no regular file: nothing waits on a FIFO)."""
    digest = hashlib.sha256()
    with open_regular(path) as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stat(path: str | Path) -> os.stat_result:
    try:
        return os.stat(path)  # follows symlinks: the file a link leads to is what is checked
    except OSError as error:
        raise _refused(path, error) from None


def _check_mode(path: str | Path, info: os.stat_result) -> None:
    if stat.S_ISREG(info.st_mode):
        return
    kind = next((name for test, name in KINDS if test(info.st_mode)), "an unknown kind of file")
    what = "a file" if kind == "a folder" else "a regular file"
    link = " (through a symbolic link)" if os.path.islink(path) else ""
    raise FileRefused(path, f"{kind}{link}, not {what}")


def _refused(path: str | Path, error: OSError) -> FileRefused:
    """An OSError from stat or open -> FileRefused with a reason naming what is wrong, not the link's target."""
    if isinstance(error, FileNotFoundError) and os.path.islink(path):
        return FileRefused(path, "a symbolic link whose target does not exist")
    return FileRefused(path, (error.strerror or type(error).__name__).lower())
