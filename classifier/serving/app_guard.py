"""What a stranger can make the public app do: the limits, and the guards Gradio has no setting for.

The page is meant for the open internet, so every request is treated as hostile. Gradio's own
settings do most of the work (see `app_ui.launch`): every event goes through the queue (`api_open=False`),
the queue holds at most `Limits.max_queue` events and runs `Limits.concurrency` at once, uploads are
capped at `Limits.max_upload` bytes per file, and old uploads are deleted (`Limits.delete_cache`; the
limits are in limits.py). This module adds what those settings leave open:

- `upload_source` (`upload_path` / `inline_bytes`): an event's file payload is read only if it names a file Gradio
  received on `/upload` (inside its upload folder), or carries inline `data:` bytes no larger than
  an upload may be (checked before decoding). A path anywhere else (`/etc/passwd`, a `model.keras`)
  gets one message, whether or not the file exists, and is never opened.
- `no_fetch`: Gradio downloads an input whose path is an http(s) URL before the event runs (no
  size cap). The page's inputs refuse such a payload instead; the app never fetches anything.
- `ShownFiles`: the only files of a model folder the page shows (curves.png, confusion_matrix.png,
  examples/*) are copied into a per-process folder, the only folder `allowed_paths` names (Gradio also
  serves its own upload cache, where uploads and the copies it makes of shown files live);
  nothing else in a model folder (model.keras, metadata.json) can be fetched.
- `text_inputs`: the first call of every event handler; each text input is None or a string of at most
  `MAX_TEXT` characters, or the event is refused naming the input (and quoting at most a short prefix).
- `RequestGuard` (ASGI middleware): refuses `/file=<URL>` (Gradio would fetch and relay any public
  URL) and `/process_recording` (ffmpeg on an uploaded video, outside the queue), and caps every
  request body but `/upload`'s at what one inline image may need. In a JSON body (an event's inputs)
  every string is held to `MAX_TEXT` characters but an inline image's `data:` URL, and the values to
  `MAX_JSON_VALUES` (`body_problem`), before Gradio parses it: its own checks (a Dropdown's choices)
  would echo a long value back in full. When the app runs locally (bound to loopback), a request whose
  `Host` (or `Origin`) is not this machine's own address and port is refused: a DNS-rebinding page
  (attacker.example resolving to 127.0.0.1) gets no answer from the app, least of all from the folder
  box, which reads this machine's files.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal
from gradio_client.utils import is_http_url_like

from ..data.formats import is_image_file
from ..errors import QUOTED_CHARS, clipped, quoted
from .limits import DEFAULT_LIMITS, MAX_JSON_VALUES, MAX_TEXT, Limits

CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion_matrix.png"
EXAMPLES_DIR = "examples"
URL_REFUSED = "URLs are not accepted: upload the image itself (this app never downloads files)"


# --------------------------------------------------------------------------------------------
# Event payloads
# --------------------------------------------------------------------------------------------
def text_inputs(**inputs) -> None:
    """Refuse the event unless every input named here is None or a string of at most MAX_TEXT characters; the
    first line of every event handler, before anything reads them (the message quotes a short prefix only)."""
    for name, value in inputs.items():
        if value is not None and not isinstance(value, str):
            raise gr.Error(f"{name}: expected text, got {quoted(value)}", title="Not text", print_exception=False)
        if value is not None and len(value) > MAX_TEXT:
            raise gr.Error(f"{name}: {too_long(value)}", title="Text too long", print_exception=False)


def too_long(text: str) -> str:
    """Why a string is refused, quoting its start only."""
    return f"{len(text):,} characters, starting {quoted(text[:QUOTED_CHARS])}; this app takes at most {MAX_TEXT:,}"


def long_string(value) -> str | None:
    """The first string in a parsed JSON body (keys too) longer than MAX_TEXT characters, or None; an inline image's
    data: URL (the `url` of a file payload) is exempt: the body's cap bounds it, and inline_bytes checks it."""
    pending = [iter([(None, value)])]  # iterators of (key, value) pairs: no recursion, no copy of a long list
    while pending:
        pair = next(pending[-1], None)
        if pair is None:
            pending.pop()
            continue
        key, item = pair
        if isinstance(item, str):
            if len(item) > MAX_TEXT and not (key == "url" and item.startswith("data:")):
                return item
        elif isinstance(item, dict):
            pending += [zip(itertools.repeat(None), item), iter(item.items())]
        elif isinstance(item, list):
            pending.append(zip(itertools.repeat(None), item))
    return None


def upload_path(path, name: str) -> str:
    """`path` if it is a file Gradio received on /upload, else a `gr.Error`, without touching the file."""
    if is_http_url_like(path):
        raise gr.Error(URL_REFUSED, print_exception=False)
    if not isinstance(path, str) or not path or not is_in_or_equal(path, get_upload_folder()):
        # The same words for a file that exists and one that does not: no probing the server's disk.
        raise gr.Error(
            f"{clipped(name)}: not a file uploaded to this app; upload it first (gradio_client's handle_file does)",
            print_exception=False,
        )
    return path


def inline_bytes(url: str, name: str, limits: Limits) -> bytes:
    """The bytes of a `data:...;base64,` URL, refused before decoding when larger than an upload may be."""
    header, _, encoded = url.partition(",")
    if not header.endswith(";base64"):
        raise gr.Error(f"{name}: an inline image must be a base64 data: URL", print_exception=False)
    if len(encoded) > limits.max_inline:
        raise gr.Error(
            f"{name}: inline image above the {limits.max_upload / 2**20:g} MB upload limit", print_exception=False
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise gr.Error(f"{name}: the inline image is not valid base64", print_exception=False) from None


def upload_source(upload, limits: Limits = DEFAULT_LIMITS) -> tuple[str | bytes, str]:
    """A raw Gradio file payload -> (what the Predictor reads, the name to show the user).

    Only a file Gradio received on /upload, or inline `data:` bytes within the upload limit; a path
    anywhere else on the server or a URL is refused unread (`upload_path`, `inline_bytes`).
    """
    if not upload:
        raise gr.Error("No image: drop, upload, paste or capture one first.")
    if not isinstance(upload, dict):
        raise gr.Error("Not a file payload: send the image as gradio_client's handle_file does", print_exception=False)
    path, url = upload.get("path"), upload.get("url")
    name = clipped(upload.get("orig_name") or Path(str(path or "image")).name)  # as messages show it
    if not path and isinstance(url, str) and url.startswith("data:"):  # inline base64, as some webcams send it
        return inline_bytes(url, name, limits), name
    if not path and url:
        raise gr.Error(URL_REFUSED, print_exception=False)
    return upload_path(path, name), name


def no_fetch(component: gr.components.Component) -> gr.components.Component:
    """`component`, refusing an input file named by an http(s) URL instead of letting Gradio download it.

    Gradio calls this hook for every file in an event's input, before the event runs. It is set on
    the instance: a subclass would make Gradio write a .pyi stub beside this file on import. Gradio
    keeps using this instance for every session unless an event returns a new component for it
    (none of the page's events do for their inputs).
    """
    move_to_cache = component.async_move_resource_to_block_cache

    async def refuse_urls(url_or_file_path):
        if is_http_url_like(str(url_or_file_path)):
            raise gr.Error(URL_REFUSED, print_exception=False)
        return await move_to_cache(url_or_file_path)

    component.async_move_resource_to_block_cache = refuse_urls
    return component


# --------------------------------------------------------------------------------------------
# What the page shows
# --------------------------------------------------------------------------------------------
class ShownFiles:
    """Copies of the files the page shows, one subfolder per model, in a folder deleted at exit."""

    def __init__(self, models: dict[str, Path]):
        self._folder = tempfile.TemporaryDirectory(prefix="classifier-shown-")
        self.folder = Path(self._folder.name)
        for name, model_dir in models.items():
            self.publish(name, model_dir)

    def publish(self, model: str, model_dir: str | Path) -> None:
        """Copy the shown files of `model` from `model_dir`, replacing any copies of an earlier folder."""
        shutil.rmtree(self._of(model), ignore_errors=True)
        self._publish(Path(model_dir), self._of(model))

    def drop(self, model: str) -> None:
        """Delete the copies of `model`'s shown files (its folder was removed from the models folder)."""
        shutil.rmtree(self._of(model), ignore_errors=True)

    def path(self, model: str, file: str) -> Path | None:
        """The copy of `file` (curves.png, ...) of `model`, or None when the folder has none."""
        path = self._of(model) / file
        return path if path.is_file() else None

    def examples(self, model: str) -> list[Path]:
        folder = self._of(model) / EXAMPLES_DIR
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def _of(self, model: str) -> Path:
        """The copies' folder of `model`: a plain folder name only (no `..`, no `/`), whatever a caller sends."""
        if not model or model in (".", "..") or Path(model).name != model:
            raise ValueError(f"not a model name: {model[:60]!r}")
        return self.folder / model

    @staticmethod
    def _publish(model_dir: Path, out: Path) -> None:
        examples = model_dir / EXAMPLES_DIR
        wanted = [model_dir / CURVES_FILE, model_dir / CONFUSION_FILE]
        wanted += sorted(p for p in examples.iterdir() if is_image_file(p)) if examples.is_dir() else []
        for source in wanted:
            # No symlink on the way: examples/cat.png -> ../model.keras (or ~/.ssh/id_rsa) publishes nothing.
            if source.is_file() and source.resolve() == model_dir.resolve() / source.relative_to(model_dir):
                target = out / source.relative_to(model_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


# --------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------
FETCH_ROUTE = re.compile(r"/gradio_api/file[=/](.*)$")  # /file=<path or URL>, and its older /file/ spelling
UPLOAD_ROUTE = "/gradio_api/upload"  # multipart; Gradio itself caps each file at max_file_size
CLOSED_ROUTES = ("/gradio_api/process_recording",)  # the footer's screen recorder: ffmpeg outside the queue
SCHEMA_ROUTES = ("/config", "/config/", "/gradio_api/info", "/gradio_api/info/")  # what a new client reads first


class RequestGuard:
    """ASGI middleware in front of Gradio: refuses the routes above, caps request bodies and their strings, and
    with `hosts` (the app runs locally: the names it answers to) refuses requests addressed to any other name.
    `before_schema` (in a worker thread) runs before Gradio answers a request for the app's config or API schema:
    the app rescans its models folder, so a new client reads the models offered now."""

    def __init__(self, app, max_body: int, hosts: tuple[str, ...] | None = None, before_schema=None):
        self.app = app
        self.max_body = max_body
        self.hosts = {host.lower().strip("[]") for host in hosts} if hosts else None
        self.before_schema = before_schema

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):  # lifespan
            return await self.app(scope, receive, send)
        if self.hosts is not None and not self.own_address(scope):
            port = scope["server"][1] if scope.get("server") else ""
            detail = f"This app answers only at its own address on this machine: open http://127.0.0.1:{port}/"
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008, "reason": detail})
            return await _respond(send, 403, detail)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        fetched = FETCH_ROUTE.search(path)
        if fetched and is_http_url_like(fetched.group(1)):
            return await _respond(send, 403, URL_REFUSED)
        if path.endswith(CLOSED_ROUTES):
            return await _respond(send, 404, "Not served by this app")
        if self.before_schema is not None and scope["method"] == "GET" and path.endswith(SCHEMA_ROUTES):
            await anyio.to_thread.run_sync(self.before_schema)
        if scope["method"] not in ("POST", "PUT", "PATCH") or path.endswith(UPLOAD_ROUTE):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_body:
            return await _respond(send, 413, f"Request body above the {self.max_body:,}-byte limit")
        # Read the body here, counting (a chunked body declares no length), then hand it on. One growing buffer,
        # not a list of chunks: a large body is one block that goes back to the system when it is dropped.
        buffer, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            buffer += message.get("body", b"")
            more = message.get("more_body", False)
            if len(buffer) > self.max_body:
                return await _respond(send, 413, f"Request body above the {self.max_body:,}-byte limit")
        problem = body_problem(buffer)
        if problem:
            return await _respond(send, 413, problem)
        body = bytes(buffer)
        del buffer

        async def replay():
            nonlocal body
            if body is None:
                return await receive()  # after the body: wait for the disconnect, as the app expects
            message, body = {"type": "http.request", "body": body, "more_body": False}, None
            return message

        await self.app(scope, replay, send)

    def own_address(self, scope) -> bool:
        """Whether the request's Host, and its Origin when it has one, name this machine at the app's port."""
        headers = dict(scope["headers"])
        port = scope["server"][1] if scope.get("server") else None
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin", b"").decode("latin-1")
        addresses = [urlsplit(f"//{host}")] + ([urlsplit(origin)] if origin else [])
        try:
            return all(address.hostname in self.hosts and address.port in (port, None) for address in addresses)
        except ValueError:  # a port that is not a number
            return False


def body_problem(body: bytes | bytearray) -> str | None:
    """Why a request body is refused before Gradio reads it (too many values to check, a string too long), or None.
    A body that is not JSON passes: Gradio refuses it itself, quoting nothing of it."""
    if body.count(b",") >= MAX_JSON_VALUES:  # counted at C speed: walking tens of millions of values would not be
        return f"Request body of more than {MAX_JSON_VALUES:,} values; no call of this app takes that many"
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    long = long_string(parsed)
    return None if long is None else f"A text input of {too_long(long)}"


async def _respond(send, status: int, detail: str) -> None:
    """A JSON error in FastAPI's shape, {"detail": ...}, so clients show it as they show Gradio's own."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
