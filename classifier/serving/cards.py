"""The Train tab's class cards: each class's photo count and a strip of thumbnails, and photos captured from the webcam.

- `Thumbnails.card` (a class box's files changed): "N photos" and a strip of small JPEG thumbnails made here, inline
  as `data:` URLs in the card's HTML, so no file of the server is ever named or served to show them. A file the
  Train button would refuse (not an image, a HEIC, corrupt, too large: `trainset.checked_suffix`, the very check
  training runs) is one marked tile with its reason, and every other photo stays shown. Every path is an upload
  Gradio received (`upload_path`); anything else is a tile saying so, never opened. At most `SHOWN` thumbnails a
  card (the bad files always among them); made ones are kept by file (path, size, mtime), at most `KEPT` of them.
- `capture` (the card's webcam took a photo: one press, one photo): the frame joins the class box's files, the
  webcam is cleared for the next press; refused beyond `--max-class-images` with a warning naming the flag.
- `Preview` (the live preview beside training): a webcam stream or a dropped image classified with the model in
  training's folder (the job's model once it exists, else the picked one), at most one prediction every
  `PREVIEW_SECONDS` per visitor; frames between are skipped. It takes the predictor as the predict tab does
  (`App.predictor`: a model being loaded is refused at once, never waited for), so it never stalls other users.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder
from PIL import Image

from ..data import trainset
from ..data.images import ImageError, thumbnail
from ..errors import clipped
from .app_guard import upload_path, upload_source
from .limits import Limits, limit_hit

THUMB_SIDE = 72  # px, the longer side of a thumbnail (shown at 56 css px: sharp on a 1.25x screen)
SHOWN = 40  # thumbnails a card shows at most; "+N more" after them
KEPT = 2000  # thumbnails kept made (about 2-4 KB each)
PREVIEW_SECONDS = 0.4  # one live prediction per visitor at most this often (about 2.5 a second)
EMPTY = '<div class="class-card-empty">No photos yet: drop some above or take them with the webcam.</div>'
# The card's look (gr.HTML's css_template: scoped to the card). Tiles wrap; a long class scrolls inside the card.
CSS = """
.class-card-count { font-weight: 600; margin: 6px 0 4px; }
.class-card-empty { opacity: 0.7; margin: 6px 0; font-size: 0.9em; }
.class-card-strip { display: flex; flex-wrap: wrap; gap: 4px; max-height: 188px; overflow-y: auto; }
.class-card-thumb { width: 56px; height: 56px; object-fit: cover; border-radius: 4px; }
.class-card-bad { flex: 1 1 100%; box-sizing: border-box; padding: 4px 6px; border: 2px solid #dc2626;
  border-radius: 4px; color: #b91c1c; background: #fef2f2; font-size: 0.85em; overflow-wrap: anywhere; }
.class-card-more { align-self: center; font-size: 0.85em; padding: 0 6px; }
"""


def file_payloads(files) -> list[dict]:
    """A class box's value as sent (preprocess=False): a list of file payloads (a lone one, or none, too)."""
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [file if isinstance(file, dict) else {"path": file} for file in files]


def _shown_name(file: dict) -> str:
    return clipped(file.get("orig_name") or Path(str(file.get("path") or "file")).name)


class Thumbnails:
    """The cards' thumbnails, made once per file (`KEPT` at most, the least recently shown go first)."""

    def __init__(self):
        self._made: OrderedDict[tuple, tuple[str | None, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def tile(self, file: dict) -> tuple[str | None, str | None]:
        """(a thumbnail as a data: URL or None, why training would refuse the file or None) of one upload."""
        shown = _shown_name(file)
        try:
            path = Path(upload_path(file.get("path"), shown))
            stat = path.stat()
        except (gr.Error, OSError) as error:  # not an upload of this app (never opened), or gone meanwhile
            return None, str(error)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._made:
                self._made.move_to_end(key)
                return self._made[key]
        made = self._make(path, shown)
        with self._lock:
            self._made[key] = made
            while len(self._made) > KEPT:
                self._made.popitem(last=False)
        return made

    @staticmethod
    def _make(path: Path, shown: str) -> tuple[str | None, str | None]:
        try:
            trainset.checked_suffix(path, shown)  # what Train will say of this file
            pixels = thumbnail(path, THUMB_SIDE)
        except ImageError as error:
            return None, error.reason
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), None

    def card(self, files) -> str:
        """The card's HTML for a class box's files: the count, the bad files' tiles, then thumbnails."""
        files = file_payloads(files)
        if not files:
            return EMPTY
        tiles = [(_shown_name(file), *self.tile(file)) for file in files]
        bad = [tile for tile in tiles if tile[2] is not None]
        good = [tile for tile in tiles if tile[2] is None]
        shown = bad + good[: max(0, SHOWN - len(bad))]
        usable = f"{len(good)} photo{'s' if len(good) != 1 else ''}"
        count = usable + (f", {len(bad)} unusable: remove {'it' if len(bad) == 1 else 'them'} to train" if bad else "")
        more = len(tiles) - len(shown)
        strip = "".join(_tile_html(*tile) for tile in shown)
        more_html = f'<span class="class-card-more">+{more} more</span>' if more else ""
        return (
            f'<div class="class-card-count">{html.escape(count)}</div>'
            f'<div class="class-card-strip">{strip}{more_html}</div>'
        )


def _tile_html(name: str, url: str | None, reason: str | None) -> str:
    """One tile: a thumbnail titled with its file name, or a marked tile saying why the file cannot be used."""
    if reason is None:
        return f'<img class="class-card-thumb" src="{url}" alt="{html.escape(name)}" title="{html.escape(name)}">'
    text = html.escape(f"{name}: {reason}")
    return f'<div class="class-card-bad" title="{text}" role="img" aria-label="{text}">&#x2715; {text}</div>'


def capture(frame, files, limits: Limits):
    """The card's webcam took a photo: it joins the class box's files (as a path Gradio received), and the webcam is
    cleared for the next one. A cleared webcam (no frame) changes nothing."""
    if not frame:
        return gr.skip(), gr.skip()
    kept = [upload_path(file.get("path"), _shown_name(file)) for file in file_payloads(files)]
    if len(kept) >= limits.max_class_images:
        gr.Warning(limit_hit(limits, "max_class_images", f"this class has {len(kept):,} photos"))
        return gr.skip(), None
    source, shown = upload_source(frame, limits)
    if isinstance(source, bytes):  # an inline frame: written where uploads go, so the class box can hold it
        folder = tempfile.mkdtemp(dir=get_upload_folder())
        path = os.path.join(folder, f"webcam-{time.time_ns()}.png")
        Path(path).write_bytes(source)
        source = path
    return [*kept, source], None


class Preview:
    """The live preview's pace: at most one prediction every `PREVIEW_SECONDS` per visitor (Gradio's session)."""

    def __init__(self, seconds: float = PREVIEW_SECONDS):
        self.seconds = seconds
        self._last: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def due(self, visitor: str) -> bool:
        """Whether `visitor` may have a prediction now (and if so, the clock starts again)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(visitor, float("-inf")) < self.seconds:
                return False
            self._last[visitor] = now
            self._last.move_to_end(visitor)
            while len(self._last) > 10_000:  # visitors long gone
                self._last.popitem(last=False)
        return True
