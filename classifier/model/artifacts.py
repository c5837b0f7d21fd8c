"""The model folder: `model.keras`, `metadata.json`, `labels.txt` (and `hub/` for a hub: backbone), written atomically.

`save_model_dir` writes one, `read_metadata` reads its `metadata.json` as a `ModelMetadata`
(classifier/model/metadata.py says what it holds), `load_model` loads its network.

Every folder we write (a model, an export, a staged Space) is built beside its target as
`.NAME.partial-XXXX` and put in place only when complete, so it is never seen half-written:

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
later call. Small files rewritten in place (`write_json`) go through `.NAME.XXXX.tmp` and a
rename; such a file older than an hour is a leftover (a live write lasts milliseconds) and goes too.

`--overwrite` replaces only a folder of the kind being written (or an empty one): `--out models`
holding other models is refused, never deleted.

Nothing here imports TensorFlow until a model is loaded or saved, so a save of files can be driven
(and killed) cheaply.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import IO, Callable, Iterator

from ..errors import UsageError
from .metadata import ModelMetadata

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
LABELS_FILE = "labels.txt"
TMP_SUFFIX = ".tmp"
# What runs a served model's backbone (inference/runtime.py): LiteRT, converting it on first use; LiteRT only where that
# conversion is cached, else TensorFlow; TensorFlow.
ENGINES = ("litert", "auto", "tensorflow")
DEFAULT_ENGINE = "litert"  # Predictor's, the app's and every library default; the predict command's is auto
TMP_MAX_AGE = 3600  # seconds: an in-place write's temp file older than this belongs to a dead writer
TRUST_HUB_HELP = (
    "load a hub: backbone from wherever the model's model.keras says (a URL, another folder), not only from the "
    "model folder's own hub/, and whatever ops its SavedModel runs (files, Python...: see "
    "classifier/model/hubcheck.py); only for model folders you trust"
)


def is_model_dir(path: str | Path) -> bool:
    """Whether `path` is a model folder (after moving back one an interrupted replace left aside)."""
    path = Path(path)
    recover(path)
    return _holds_model(path)


def _holds_model(path: Path) -> bool:
    return (path / METADATA_FILE).is_file() and (path / MODEL_FILE).is_file()


def model_dir_around(path: str | Path) -> Path | None:
    """The model folder that `path` is or lies inside (links resolved: itself or its nearest ancestor that holds a
    model), or None; for refusing to write anything among a model's files. Only looks (no `recover`)."""
    resolved = Path(path).resolve()
    return next((folder for folder in (resolved, *resolved.parents) if _holds_model(folder)), None)


def check_output_dir(
    out: str | Path, overwrite: bool, is_kind: Callable[[Path], bool] = is_model_dir, kind: str = "model folder"
) -> Path:
    """Refuse an existing `out` up front (before any training) unless `overwrite`, and even then anything but an
    empty folder or a `kind` folder (`is_kind`), whose replacing would delete someone's other files."""
    out = Path(out)
    recover(out)
    if out.exists() and not overwrite:
        raise UsageError(
            f"--out {out}: already exists; pass --overwrite to replace it (the old {kind} stays until the new one is "
            "complete)"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not is_kind(out):
        raise UsageError(
            f"--out {out}: not a {kind}, and --overwrite replaces only a {kind} (this would delete everything in "
            f"it); choose a new --out, e.g. {out / 'NAME'}"
        )
    return out


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


def save_model_dir(out: str | Path, model, metadata: ModelMetadata, extra=None) -> Path:
    """Write the model, its metadata and labels (in prediction order) atomically to `out`; a hub: backbone's
    SavedModel is copied in as `hub/`, so the folder needs nothing outside itself.

    `extra(folder)` may add more files (plots, metrics) before the folder is moved into place.
    """
    from .hub import bundle_hub_models

    with staged_dir(out) as folder:
        model.save(folder / MODEL_FILE)
        bundle_hub_models(model, folder)
        write_json(folder / METADATA_FILE, metadata.to_dict())
        write_labels(folder, metadata.class_names)
        if extra is not None:
            extra(folder)
    return Path(out)


def write_labels(folder: Path, class_names: list[str]) -> None:
    """labels.txt: one class name a line, in the model's output order (model folders and exports alike)."""
    (folder / LABELS_FILE).write_text("".join(f"{name}\n" for name in class_names))


def read_metadata(model_dir: str | Path) -> ModelMetadata:
    """The model folder's metadata.json (read without loading the network); UsageError naming the folder or file."""
    recover(model_dir)
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise UsageError(
            f"{model_dir}: not a model folder (no {METADATA_FILE}); train one with python -m classifier.train"
        )
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not valid JSON ({error})") from None
    return ModelMetadata.from_dict(values, str(path))


def load_model(model_dir: str | Path, trust_hub_handle: bool = False):
    """The Keras model of a model folder, loaded in Keras' safe mode (no Lambda code, no TFSMLayer). A hub:
    backbone loads only from the folder's own hub/ unless `trust_hub_handle` (see classifier.model.hub)."""
    from .._tf import keras
    from .hub import loading_from

    recover(model_dir)
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise UsageError(f"{model_dir}: no {MODEL_FILE} in it; train a model with python -m classifier.train")
    with loading_from(model_dir, trust_hub_handle):
        return keras.models.load_model(path, compile=False)


def add_trust_flag(parser) -> None:
    """--trust-hub-handle, the same on every command that loads a model folder."""
    parser.add_argument("--trust-hub-handle", action="store_true", help=TRUST_HUB_HELP)


def add_engine_flag(parser, default: str = DEFAULT_ENGINE, env: str | None = None) -> None:
    """--engine, the same on every command that serves a model folder; `env`: an environment variable that sets
    it too, the flag winning."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=os.environ.get(env, default) if env else default,
        help=(
            "what runs the backbone: litert (about twice as fast on a CPU; converted on first use, 15-20 s, then "
            "cached in ~/.cache/classifier/litert), auto (litert where that conversion is cached, else tensorflow) "
            f"or tensorflow ({f'env {env}; ' if env else ''}default: {default})"
        ),
    )


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


def versions() -> dict[str, str]:
    from .. import __version__
    from .._tf import keras, tf

    return {
        "classifier": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }
