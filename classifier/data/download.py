"""Fetch a file over HTTP and unpack a zip without trusting either.

A download streams into `NAME.<random>.part` beside its destination and is renamed to `NAME` only
after every byte the server promised arrived and the size and sha256 (when known) match, so a file
under its final name is always complete. Extraction refuses any archive holding an absolute path,
a `..` component or a symlink before it writes a single file.

This module knows nothing about datasets: it raises `DownloadError` (the bytes did not arrive) or
`VerifyError` (they arrived but are not what was expected), and the caller words the advice.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from ..console import Log, Progress, say
from ..errors import quoted
from ..files import sha256_of

TIMEOUT_SECONDS = 60
CHUNK_BYTES = 1 << 16


class DownloadError(Exception):
    """The file could not be fetched; `network` is True when the cause looks like no connectivity."""

    def __init__(self, message: str, *, network: bool):
        super().__init__(message)
        self.network = network


class VerifyError(Exception):
    """A file or archive is not the one expected: wrong checksum or size, corrupt, or unsafe."""


def download(url: str, dest: Path, *, sha256: str | None = None, size: int | None = None, log: Log = say) -> Path:
    """Fetch `url` to `dest` atomically, its progress through `log`; on any failure nothing is left under `dest`'s
    name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, part_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as out:
            received, digest = _stream(url, out, Progress(dest.name, size, log=log))
        _check(dest.name, received, digest, sha256=sha256, size=size)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _stream(url: str, out, progress: Progress) -> tuple[int, str]:
    """Copy the response body to `out`; return (bytes received, sha256 hex). Raise on a cut transfer."""
    response = _open(url)
    with response:
        try:
            received, digest, promised = _copy_body(response, out, progress)
        finally:
            progress.close()
    if promised is not None and received != promised:
        raise DownloadError(f"transfer stopped after {received} of {promised} bytes", network=False)
    return received, digest


def _copy_body(response, out, progress: Progress) -> tuple[int, str, int | None]:
    """Copy the body chunk by chunk; return (bytes received, sha256 hex, bytes the server promised)."""
    promised = response.headers.get("Content-Length")
    promised = int(promised) if promised and promised.isdigit() else None
    progress.total = progress.total or promised
    digest, received = hashlib.sha256(), 0
    while True:
        try:
            chunk = response.read(CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as error:
            raise DownloadError(f"connection lost after {received} bytes: {_reason(error)}", network=True) from None
        if not chunk:
            break
        out.write(chunk)
        digest.update(chunk)
        received += len(chunk)
        progress.update(received)
    return received, digest.hexdigest(), promised


def _open(url: str):
    """Open `url`, translating the many ways that fails into one `DownloadError`."""
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"HTTP {error.code} {error.reason}", network=False) from None
    except urllib.error.URLError as error:
        raise DownloadError(_reason(error.reason), network=True) from None
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(_reason(error), network=True) from None
    except ValueError as error:  # "unknown url type" and friends
        raise DownloadError(str(error), network=False) from None


def _reason(error: object) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text or type(error).__name__


def verify_file(path: Path, *, sha256: str | None = None, size: int | None = None) -> None:
    """Check a file already on disk (a cached download, a file the user brought) like a fresh one."""
    _check(path.name, path.stat().st_size, sha256_of(path) if sha256 else "", sha256=sha256, size=size)


def _check(name: str, actual_size: int, actual_sha: str, *, sha256: str | None, size: int | None) -> None:
    if size is not None and actual_size != size:
        raise VerifyError(f"{name} is {actual_size} bytes, expected {size}")
    if sha256 and actual_sha.lower() != sha256.lower():
        raise VerifyError(f"checksum mismatch for {name}: sha256 {actual_sha}, expected {sha256}")


def extract_zip(archive: Path, dest: Path, layout: Mapping[str, str]) -> None:
    """Copy the archive members under each `layout` key (a folder in the zip) to `dest/<value>`.

    Members outside every key are skipped; an unsafe member anywhere refuses the whole archive.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _refuse_unsafe(archive.name, info)
            for info in members:
                target = _mapped(info.filename, layout)
                if target is None:
                    continue
                out = dest.joinpath(*target.parts)
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK_BYTES)
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise VerifyError(f"{archive.name} is not a readable zip ({error}); truncated or corrupt download?") from None


def _refuse_unsafe(archive_name: str, info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise VerifyError(f"{archive_name} refused: entry {quoted(name)} would land outside the target folder")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise VerifyError(f"{archive_name} refused: entry {quoted(name)} is a symbolic link")


def _mapped(member: str, layout: Mapping[str, str]) -> PurePosixPath | None:
    """Where `member` goes under the destination, or None when no layout folder contains it."""
    path = PurePosixPath(member)
    for source, target in layout.items():
        source_path = PurePosixPath(source) if source else PurePosixPath()
        if source and path != source_path and source_path not in path.parents:
            continue
        rest = path.relative_to(source_path)
        return PurePosixPath(target) / rest
    return None
