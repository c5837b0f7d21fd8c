"""The app's temporary files, all in one folder per process that goes when the process goes.

`scratch_folder()` (app.py, around the whole run) makes `$TMPDIR/classifier-app-<pid>-XXXX/` the process's
temporary folder (`tempfile.tempdir`, and TMPDIR for anything it starts): every temporary file or folder
of the app lands in it, whoever makes it: downloads, an inline upload written as a file, an unpacked
zip, a TFLite conversion, copies of the files the page shows, and Gradio's own cache of uploads
(its default, `<temp>/gradio`; a GRADIO_TEMP_DIR the user set is theirs and left alone).

The folder is removed when the run ends, normally or by SIGTERM (turned into Ctrl-C, so Gradio closes
its server and the block unwinds). A kill leaves it behind; the next start removes it with `sweep()`: every
`classifier-app-<pid>-*` folder of this user whose process no longer runs (`os.kill(pid, 0)`). So after a
crash or a kill at any instant (mid-upload, mid-unpack), a clean restart leaves nothing behind.

Imports nothing heavy: app.py calls it before Gradio or TensorFlow is imported.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator

PREFIX = "classifier-app-"


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A fresh scratch folder as this process's temporary folder while the block runs (SIGTERM ends the block as
    Ctrl-C does); removed after it, and at exit should the block never end (os._exit aside)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")).resolve()
    remove = functools.partial(shutil.rmtree, folder, ignore_errors=True)
    atexit.register(remove)
    before = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(folder)  # tempfile's documented default for every mkstemp/mkdtemp/TemporaryDirectory
    os.environ["TMPDIR"] = str(folder)  # and for anything this process starts
    main_thread = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    handler = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        yield folder
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, handler)
        tempfile.tempdir = before[0]
        if before[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before[1]
        remove()
        atexit.unregister(remove)


def sweep(temp_dir: str | Path | None = None) -> list[Path]:
    """Remove the scratch folders of this user's processes that no longer run (what a kill left); returns them."""
    root = Path(temp_dir or tempfile.gettempdir())
    removed = []
    for entry in root.glob(f"{PREFIX}*"):
        pid = entry.name[len(PREFIX) :].split("-")[0]
        try:
            mine = entry.is_dir() and not entry.is_symlink() and entry.lstat().st_uid == os.getuid()
        except OSError:  # gone meanwhile
            continue
        if mine and pid.isdigit() and not is_running(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def is_running(pid: int) -> bool:
    """Whether a process `pid` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C is: Gradio's launch closes its server on it; a caller that sees it (the signal came
    before or after Gradio's wait) ends as normally as a stop should."""


def _interrupt(signum, frame) -> None:
    """SIGTERM as Ctrl-C: Gradio's launch closes its server, then the exit handlers remove the scratch folder."""
    raise Terminated("terminated (SIGTERM)")
