"""Atomic writes: a folder or a file is never seen half-written, whatever kills the writer.

Every folder we write (a model, an export, a staged Space, a training folder) is built beside its target as
`.NAME.partial-XXXX` (`staged_dir`) and put in place only when complete:

- no target yet: one rename;
- a target to replace: on Linux, `renameat2(RENAME_EXCHANGE)` swaps the two folders in one step, so
  there is no instant without a folder at the target; the old one, now under the temporary name, is
  then deleted. Where the kernel or filesystem cannot swap, two renames: the old folder into
  `.NAME.old-XXXX/NAME`, then the new one into place.

A kill at any instant therefore leaves the old or the new complete folder at the target, except
between the two fallback renames, where the target is missing and the old folder waits in
`.NAME.old-XXXX/`: `recover`, run by every load and save of that target, moves it back. `recover`
also deletes what killed writers left (`.NAME.partial-*`, `.NAME.old-*`), but only when no writer is
live: writers hold a shared `flock` on the parent folder while they stage, and cleaning needs it
exclusively and never waits for it. The kernel drops a killed process's lock, so the next load or
save after a crash cleans at once; a live writer anywhere in that folder postpones cleaning to a
later call. Small files rewritten in place (`write_json`, `write_atomic`, `atomic_file`) go through
`.NAME.XXXX.tmp` and a rename; such a file older than an hour is a leftover (a live write lasts
milliseconds) and goes too.

Plumbing: imports nothing of ours but `errors`, and no TensorFlow.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator

from .errors import UsageError

TMP_SUFFIX = ".tmp"


TMP_MAX_AGE = 3600  # seconds: an in-place write's temp file older than this belongs to a dead writer


@contextlib.contextmanager
def staged_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; on success put it at `out`, replacing what was there (see above)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recover(out)  # what a killed writer left, before staging beside it
    with _folder_lock(out.parent, exclusive=False):  # held while staging: cleaners leave our entries alone
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        try:
            _step("started")
            yield staging
            _step("staged")
            _put_in_place(staging, out)
        finally:
            _remove(staging)  # the unfinished folder, or the old one after a swap


def _put_in_place(staging: Path, out: Path) -> None:
    if not os.path.lexists(out):
        os.rename(staging, out)
        return
    if _exchange(staging, out):  # one atomic step: `out` is the new folder, `staging` the old one
        _step("exchanged")
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, aside / out.name)
    _step("moved-aside")  # the one instant with no folder at `out`: recover() puts `aside` back
    os.rename(staging, out)
    _step("replaced")
    _remove(aside)


def _load_renameat2():
    """libc's renameat2, or None where there is none (not Linux, or a libc without it)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_renameat2 = _load_renameat2()


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # from <fcntl.h> and <linux/fs.h>


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False when this system or filesystem cannot (nothing was changed)."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):  # not supported here
        return False
    raise OSError(error, os.strerror(error), str(a), None, str(b))


def recover(target: str | Path) -> None:
    """Finish what a killed writer of `target` left: put back a folder moved aside by an interrupted replace when
    `target` is missing, delete `.NAME.partial-*` and `.NAME.old-*` beside it and stale `.tmp` files in it.
    Does nothing while a writer is staging in the same parent folder, or where the folder cannot be locked."""
    target = Path(target)
    leftovers, stale = _leftovers(target), _stale_temp_files(target)
    if not leftovers and not stale:
        return
    with _folder_lock(target.parent, exclusive=True) as locked:
        if not locked:
            return
        aside = [entry / target.name for entry in leftovers if entry.name.startswith(f".{target.name}.old-")]
        aside = [path for path in aside if path.is_dir() and not path.is_symlink()]
        if aside and not os.path.lexists(target):  # killed between the two renames of a replace
            kept = max(aside, key=lambda path: path.stat().st_mtime)
            try:
                os.rename(kept, target)
            except OSError as error:
                raise UsageError(
                    f"{target}: an interrupted replace left the previous folder at {kept}, and moving it back failed "
                    f"({error.strerror}); move it back by hand"
                ) from None
        for path in [*leftovers, *stale]:
            _remove(path)


def _leftovers(target: Path) -> list[Path]:
    prefixes = (f".{target.name}.partial-", f".{target.name}.old-")
    try:
        return [entry for entry in target.parent.iterdir() if entry.name.startswith(prefixes)]
    except OSError:  # no parent folder, or not readable: nothing we could clean
        return []


def _stale_temp_files(folder: Path) -> list[Path]:
    old = time.time() - TMP_MAX_AGE
    try:
        temporary = [
            entry for entry in folder.iterdir() if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX)
        ]
        return [entry for entry in temporary if entry.lstat().st_mtime < old]
    except OSError:  # not a folder (yet), not readable, or a file gone meanwhile: nothing to clean now
        return []


@contextlib.contextmanager
def _folder_lock(folder: Path, exclusive: bool) -> Iterator[bool]:
    """flock on a folder: shared (waits for a cleaner to finish) or exclusive (never waits). Yields whether it is
    held; False where locks are unavailable (no fcntl, a filesystem without them), which turns cleaning off."""
    try:
        import fcntl
    except ImportError:  # Windows: writers go unlocked and nothing is cleaned automatically
        yield False
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
            held = True
        except OSError:  # a live writer holds it (or the filesystem has no locks)
            held = False
        yield held
    finally:
        os.close(fd)  # releases the lock


def _remove(path: Path) -> None:
    """Delete a file, symlink or folder, as far as permissions allow (cleaning never fails a load)."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


def _step(name: str) -> None:
    """Test hook (tests/test_artifacts.py): CLASSIFIER_TEST_KILL_AT=STEP SIGKILLs this process at that step."""
    if os.environ.get("CLASSIFIER_TEST_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def write_json(path: Path, data) -> None:
    """`data` as JSON at `path`, atomically (`write_atomic`)."""
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


def write_atomic(path: Path, data: bytes) -> None:
    """`data` at `path`, through a temporary file and a rename: readers see the old file or the new one."""
    with atomic_file(path) as file:
        file.write(data)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", **options) -> Iterator[IO]:
    """A new file to write (`open`'s `mode` "wb" or "w" and `options`) that replaces `path` in one rename when the
    block ends without error; until then `path` is the old file, and an error or a kill leaves it untouched (a
    killed writer's `.NAME.*.tmp` is a leftover, which `recover` deletes in a model folder)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        # A fresh name ("x"), created with the usual permissions (not mkstemp's 0600).
        with open(temporary, mode.replace("w", "x"), **options) as file:
            yield file
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
