"""The Train tab's unsaved work on the server: a reload, or a closed browser tab, loses nothing typed or dropped.

What the user put in the Train tab before pressing Train (the model name, the class names, each class's photos, the
webcam's among them, the number of class slots shown, the backbone, image size and epochs) is a draft, one per
browser, kept in `models_dir/.drafts/TOKEN/` (a dot-folder: never a model, a training folder or a model name).

- The token is `secrets.token_urlsafe(24)`, made here when a browser's first draft is saved; the page keeps it in a
  `gr.BrowserState` (localStorage, key `STORAGE_KEY`, encrypted with `Drafts.secret`, which is kept in `.drafts/` so a
  restarted server still reads what browsers stored). A token from a client is checked against `TOKEN` before any
  path is built from it; one that names no draft is no draft (a save makes a new one, with a new token).
- `Drafts.save` (each change of a field of the tab, the latest only): every file must be an upload Gradio received
  (`upload_path`), else the save is refused and nothing is written. A new file is kept once, under a random name in
  the draft's `files/` (a hard link when the upload is on the same filesystem, else a copy); `draft.json` (written
  atomically) maps each upload path to its kept file, so saving again copies only new files; kept files no longer
  referenced are deleted after the new `draft.json` is in place (a kill never leaves it naming a missing file). A
  tab with no name, no class name and no photo deletes the draft.
- `Drafts.restore` (the page loads): each kept file is put back where uploads live, under its name as it was
  uploaded (a fresh folder of Gradio's upload folder), so the class boxes, their cards, Train and `upload_path` treat
  it as any upload. A missing, expired or garbled draft restores nothing: never an error on load.
- Caps (a public door: no visitor can fill the disk): a class keeps at most `--max-class-images` files and a draft
  at most `--max-train-mb` bytes (the files beyond are not kept, and the save says so once, naming the flag); at
  most `Limits.max_drafts` drafts exist (`--max-drafts`; 0 turns drafts off), the least recently used (saved or
  restored) deleted to make room for a new one; a draft untouched for `DRAFT_DAYS` is deleted (at start, when a
  draft is made, and when it is asked for). So drafts take at most max_drafts x max_train_mb of disk.
- One lock per draft (two tabs of one browser save the same draft; the last save wins), and one brief lock for
  making and evicting drafts: a save never waits for another browser's, and with nothing new it only reads and
  compares the draft's JSON file (no file is copied).

Gradio for the upload folder, `upload_path`'s refusal and the page's save event (`on_change`: its warnings); the
rest is tested without a page (tests/test_drafts.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import gradio as gr
from gradio.utils import get_upload_folder

from ..atomic import write_atomic, write_json
from ..files import open_regular
from .app_guard import text_inputs, upload_path
from .cards import file_payloads
from .limits import MAX_TEXT, Limits, limit_hit

DRAFTS_DIR = ".drafts"  # under the models folder
DRAFT_FILE, FILES_DIR, SECRET_FILE = "draft.json", "files", "secret"
DRAFT_DAYS = 7  # a draft untouched this long is deleted
STORAGE_KEY = "classifier-train-draft"  # the browser's localStorage key of its draft's token
TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")  # secrets.token_urlsafe(24): 24 random bytes, 32 characters
SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")  # a kept file's suffix, from its upload's name (Train reads it)
KEPT_NAME = re.compile(r"[0-9a-f]{16}(\.[A-Za-z0-9]{1,10})?")  # a kept file's name (`Drafts._keep`)


@dataclass
class Form:
    """What the Train tab holds before Train: the fields a draft keeps. `files`: each slot's upload paths."""

    name: str = ""
    backbone: str | None = None
    size: float | None = None
    epochs: float | None = None
    count: int = 0
    labels: list[str] = field(default_factory=list)
    files: list[list[str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing worth keeping: no name, no class name, no photo (the options alone are not a draft)."""
        return not self.name.strip() and not any(label.strip() for label in self.labels) and not any(self.files)


def number(value) -> float | None:
    """A number field's value as sent, or None when it is not a finite number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def text(value) -> str:
    """A text field's value as kept: a string of at most MAX_TEXT characters."""
    return value[:MAX_TEXT] if isinstance(value, str) else ""


class Drafts:
    """The drafts of one app, in `models_dir/.drafts/` (see the module's docstring)."""

    def __init__(self, models_dir: str | Path, limits: Limits, days: float = DRAFT_DAYS):
        self.root = Path(models_dir) / DRAFTS_DIR
        self.limits = limits
        self.max_age = days * 86400  # seconds
        self.root.mkdir(parents=True, exist_ok=True)
        self.secret = self._secret()
        self._guard = threading.Lock()  # making and evicting drafts, and the table of locks
        self._locks: dict[str, threading.Lock] = {}  # token -> its draft's lock
        with self._guard:
            self._sweep(room=0)  # what expired while the server was down

    def _secret(self) -> str:
        """The BrowserState's key, made once and kept: browsers' stored tokens still read after a restart."""
        path = self.root / SECRET_FILE
        with contextlib.suppress(OSError, UnicodeDecodeError):
            kept = path.read_text().strip()
            if TOKEN.fullmatch(kept):
                return kept
        made = secrets.token_urlsafe(24)
        write_atomic(path, made.encode())
        path.chmod(0o600)
        return made

    # -- saving ----------------------------------------------------------------------------------
    def save(self, token, form: Form) -> tuple[str, list[str]]:
        """Keep `form` as the draft of `token` (a new draft, and token, when it names none): (the token, what the
        caps left out, in words naming their flags: empty when nothing new was left out since the last save)."""
        known = _mapping((read_json(self.root / token / DRAFT_FILE) or {}).get("sources")) if valid(token) else {}
        for paths in form.files:
            for path in paths:
                if not (isinstance(path, str) and path in known):  # a path kept before was checked then
                    upload_path(path, Path(str(path)).name)  # every file an upload, before anything is written
        if form.empty:
            self.delete(token)
            return (token if valid(token) else ""), []
        with self._opened(token) as (token, folder):
            old = read_json(folder / DRAFT_FILE) or {}
            data, left_out = self._kept(form, folder, old)
            said = left_out if left_out != old.get("left_out") else []
            data["left_out"] = left_out
            if data == old:
                os.utime(folder / DRAFT_FILE)  # used now: the last to be evicted
            else:
                write_json(folder / DRAFT_FILE, data)
            for name in set(os.listdir(folder / FILES_DIR)) - data["stored"].keys():  # once draft.json is without them
                (folder / FILES_DIR / name).unlink(missing_ok=True)
        return token, said

    def _kept(self, form: Form, folder: Path, old: dict) -> tuple[dict, list[str]]:
        """draft.json's new content (new files kept in `folder`), and what the caps left out."""
        present = set(os.listdir(folder / FILES_DIR))  # one listing, not a stat a file
        before = (_mapping(old.get("sources")), _mapping(old.get("stored")), present)
        stored, sources, slots, left_out = {}, {}, [], []
        room, most, full = self.limits.max_train_mb * 2**20, self.limits.max_class_images, False
        labels = [text(label) for label in form.labels]
        for label, paths in zip(labels, form.files, strict=True):
            if full:  # the next classes' photos are not kept either
                slots.append([])
                continue
            if len(paths) > most:
                what = f"class {label or '(no name)'!r} has {len(paths):,} photos"
                left_out.append(f"{limit_hit(self.limits, 'max_class_images', what)}; a reload brings back {most:,}")
            slots.append([])
            for path in paths[:most]:
                name, meta = self._kept_file(path, folder, *before)
                if name is None:  # gone meanwhile, or not a regular file: not kept
                    continue
                if meta["bytes"] > room:
                    what = f"this tab's photos take more than {self.limits.max_train_mb:,} MB"
                    left_out.append(f"{limit_hit(self.limits, 'max_train_mb', what)}; a reload brings back fewer")
                    full = True
                    break
                room -= meta["bytes"]
                stored[name], sources[path] = meta, name
                slots[-1].append(name)
        fields = dict(name=text(form.name), backbone=text(form.backbone) or None, size=number(form.size))
        count = number(form.count)
        fields.update(epochs=number(form.epochs), count=0 if count is None else int(count))
        return dict(fields, labels=labels, files=slots, stored=stored, sources=sources), left_out

    def _kept_file(self, path: str, folder: Path, sources: dict, stored: dict, present: set) -> tuple:
        """(kept name, its facts) of an upload: kept before (by its path), or kept now; (None, None) if it cannot be."""
        name = sources.get(path)
        meta = stored.get(name) if isinstance(name, str) else None
        if isinstance(meta, dict) and isinstance(meta.get("bytes"), int) and name in present:
            return name, meta
        return self._keep(Path(path), folder / FILES_DIR)

    @staticmethod
    def _keep(source: Path, files: Path) -> tuple[str | None, dict | None]:
        """An upload kept in `files` under a random name: (its name, {its name as uploaded, bytes}), or (None, None)
        when it is gone or is not a regular file."""
        try:
            info = os.lstat(source)
        except OSError:
            return None, None
        if not stat.S_ISREG(info.st_mode):
            return None, None
        suffix = source.suffix if SUFFIX.fullmatch(source.suffix) else ""
        name = secrets.token_hex(8) + suffix
        try:
            _link_or_copy(source, files / name)
        except OSError:
            return None, None
        return name, {"name": source.name, "bytes": info.st_size}

    # -- restoring -------------------------------------------------------------------------------
    def restore(self, token) -> Form | None:
        """The draft of `token` with its files put back as uploads, or None (no such draft, expired, garbled)."""
        if not valid(token) or not (self.root / token / DRAFT_FILE).is_file():
            return None
        with self._opened(token, make=False) as opened:
            folder = None if opened is None else opened[1]
            data = None if folder is None else read_json(folder / DRAFT_FILE)
            if data is None:
                return None
            if time.time() - _used(folder) > self.max_age:
                shutil.rmtree(folder, ignore_errors=True)
                return None
            upload_root = Path(get_upload_folder())
            upload_root.mkdir(parents=True, exist_ok=True)
            fresh = Path(tempfile.mkdtemp(prefix="draft-", dir=upload_root))  # where uploads live
            try:
                form, restored = _unpacked(data, folder, fresh)
                data["sources"] = {**data["sources"], **restored}  # saving again copies nothing
            except (KeyError, TypeError, ValueError, AttributeError, OSError):  # garbled: nothing comes back
                shutil.rmtree(fresh, ignore_errors=True)
                return None
            write_json(folder / DRAFT_FILE, data)  # used now, too
            return form

    def on_change(self, token, name, backbone, size, epochs, count, *boxes):
        """The page's save event (payloads as sent; `boxes`: each slot's name, then each slot's files): the draft's
        token, new or as it was (skipped), and a warning for each cap that left files out."""
        labels, uploads = boxes[: len(boxes) // 2], boxes[len(boxes) // 2 :]
        named = {f"class {slot}": label for slot, label in enumerate(labels, start=1)}
        text_inputs(draft=token, name=name, backbone=backbone, **named)
        files = [[file.get("path") for file in file_payloads(box)] for box in uploads]
        form = Form(name or "", backbone, number(size), number(epochs), count, [label or "" for label in labels], files)
        saved, said = self.save(token, form)
        for line in said:
            gr.Warning(line)
        return gr.skip() if saved == token else saved

    # -- the drafts' folders and locks ------------------------------------------------------------
    def delete(self, token) -> None:
        """Delete the draft of `token`, if there is one."""
        if not valid(token) or not (self.root / token).exists():
            return
        with self._opened(token, make=False) as opened:
            if opened is not None:
                shutil.rmtree(opened[1], ignore_errors=True)

    @contextlib.contextmanager
    def _opened(self, token, make: bool = True) -> Iterator:
        """(token, folder) of the draft of `token` with its lock held; with `make`, a new draft (a new token) when
        `token` names none, else None."""
        while True:
            with self._guard:
                folder = self.root / token if valid(token) else None
                missing = folder is None or not folder.is_dir()
                if missing and make:
                    self._sweep(room=1)
                    token = secrets.token_urlsafe(24)
                    folder = self.root / token
                    (folder / FILES_DIR).mkdir(parents=True)
                lock = None if missing and not make else self._locks.setdefault(token, threading.Lock())
            if lock is None:
                yield None
                return
            with lock:  # another tab's save of this draft: waited for
                if folder.is_dir():  # not evicted while we waited
                    (folder / FILES_DIR).mkdir(exist_ok=True)
                    yield token, folder
                    return

    def _sweep(self, room: int) -> None:
        """Under the guard: delete expired drafts, then the least recently used until `room` more fit within
        max_drafts. A draft being saved or restored (its lock held) is left alone."""
        now, drafts = time.time(), []
        self.root.mkdir(parents=True, exist_ok=True)  # deleted by hand meanwhile: made again
        for folder in self.root.iterdir():
            if folder.is_dir() and TOKEN.fullmatch(folder.name):
                drafts.append((_used(folder), folder))
        drafts.sort()
        excess = len(drafts) + room - self.limits.max_drafts
        for used, folder in drafts:
            if now - used <= self.max_age and excess <= 0:
                break
            lock = self._locks.get(folder.name) or threading.Lock()
            if lock.acquire(blocking=False):
                try:
                    shutil.rmtree(folder, ignore_errors=True)
                    excess -= 1
                finally:
                    lock.release()
        for token in [token for token, lock in self._locks.items() if not lock.locked()]:
            if not (self.root / token).is_dir():
                del self._locks[token]

    def count(self) -> int:
        """How many drafts exist."""
        return sum(1 for folder in self.root.iterdir() if folder.is_dir() and TOKEN.fullmatch(folder.name))


def valid(token) -> bool:
    """Whether a client's token has a draft token's form (nothing else builds a path)."""
    return isinstance(token, str) and TOKEN.fullmatch(token) is not None


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`, or None when missing or garbled."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _unpacked(data: dict, folder: Path, fresh: Path) -> tuple[Form, dict[str, str]]:
    """(the form, restored upload path -> kept name) of a draft's `data`, its files put back in `fresh` (a new folder
    of Gradio's upload folder) under their names as uploaded, each in its own folder (two photos may share a name)."""
    files, restored = [], {}
    for slot in data["files"]:
        paths = []
        for name in slot:
            shown = data["stored"][name]["name"]
            if not KEPT_NAME.fullmatch(name) or not isinstance(shown, str) or shown in ("", "..") or "/" in shown:
                raise ValueError(f"not a kept file: {name!r}, {shown!r}")
            kept = folder / FILES_DIR / name
            if not kept.is_file():  # gone: the others come back
                continue
            target = fresh / str(len(restored)) / shown
            target.parent.mkdir()
            _link_or_copy(kept, target)
            restored[str(target)] = name
            paths.append(str(target))
        files.append(paths)
    labels = [text(label) for label in data["labels"]]
    if len(labels) != len(files):
        raise ValueError("as many class names as classes")
    form = Form(text(data["name"]), text(data["backbone"]) or None, number(data["size"]), number(data["epochs"]))
    form.count, form.labels, form.files = int(data["count"]), labels, files
    return form, restored


def _mapping(value) -> dict:
    """A draft.json's mapping, or an empty one when it is garbled."""
    return value if isinstance(value, dict) else {}


def _used(folder: Path) -> float:
    """When a draft was last saved or restored (its draft.json's time; a draft being made: its folder's)."""
    for path in (folder / DRAFT_FILE, folder):
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
    return 0.0


def _link_or_copy(source: Path, target: Path) -> None:
    """`source` at `target`: a hard link on the same filesystem (no second copy of the bytes), else a copy."""
    try:
        os.link(source, target, follow_symlinks=False)
        return
    except OSError:
        pass
    with open_regular(source) as file, open(target, "xb") as out:
        shutil.copyfileobj(file, out)
