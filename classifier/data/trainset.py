"""A model's training folder, as the web page fills it: `models/NAME.data/CLASS/<sha256>.<ext>`.

The Train tab saves every image it is given here (uploads per class, a zip of class folders, a
local folder), and corrections add to it; training reads it as any `--data` folder. Each image is
first checked with the training scan's rules (`images.check_image_file`: the accepted formats,
the pixel budget, what tf.data decodes as Pillow does), and a file that fails refuses the whole
batch, naming the file. Files are named by their content's sha256, so the same photo is stored
once: sent again to the same class it is already there, sent to another class it moves there
(the latest word on a photo wins).

A new folder is built beside its target and renamed into place when complete (atomic.staged_dir);
a correction's image is written to a hidden temporary name and renamed. A model name is letters,
digits, `-` and `_` (no dot, so `NAME.data` never names a model); a class name also allows spaces,
and is never `train` or `validation` (those mean splits to the training scan).

Every failure of a zip, a folder or a file is one `UsageError` (or `ImageError`) naming it as its sender
knows it, quoting at most a short prefix of a name it was sent, and no path of the server: a zip's
entries are checked before any is unpacked (encrypted, names too long or not valid UTF-8, a file that
is also a folder), and whatever unpacking or reading still fails says which and why.

The app keeps the models folder that holds them out of every model folder (`serving.limits.check_models_dir`),
so a visitor's model or photo never lands in a served model's folder. The limits a job is held to are
`data.limits.TrainsetLimits`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

from ..atomic import staged_dir
from ..errors import UsageError, clipped, quoted
from ..files import sha256_of
from .download import VerifyError, extract_zip
from .formats import FORMAT_NAMES, HEIF_HINT, is_heif, is_image_file
from .images import ImageError, check_image_file
from .limits import MAX_TEXT, TrainsetLimits, limit_hit
from .pipeline import VALIDATION_DIRS, class_folders, find_class_files, split_folders

DATA_SUFFIX = ".data"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
CLASS_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _-]{0,62}[A-Za-z0-9_-])?")
SPLIT_NAMES = ("train", *VALIDATION_DIRS)
HASH_CHARS = 32  # of the sha256 in a stored file's name: collisions are out of reach
SHOWN_PATH_CHARS = 200  # of a local folder's path, in a message about it (the page's folder box is local-only)
NAME_BYTES = 255  # of one file or folder name: what file systems take (NAME_MAX)
MACOS_FOLDER = "__MACOSX"  # what macOS's Compress adds to a zip beside its folders: resource forks, no images
ENCRYPTED = 0x1  # a zip entry's flag bit: encrypted (zipfile reads such an entry only with its password)
# What unpacking or reading may still raise after the checks: the OS (a name, a disk), zipfile (an unsupported
# compression method, a corrupt entry), zlib.
UNREADABLE = (OSError, RuntimeError, ValueError, NotImplementedError, EOFError, zlib.error, zipfile.BadZipFile)

Images = dict[str, list[tuple[Path, str]]]  # class -> (file on the server, the name its sender knows it by)


def data_folder(models_dir: str | Path, model: str) -> Path:
    return Path(models_dir) / f"{model}{DATA_SUFFIX}"


def data_folders(models_dir: str | Path) -> list[Path]:
    """The training folders of `models_dir` (one per model trained, or training, on the page)."""
    root = Path(models_dir)
    return sorted(path for path in root.glob(f"*{DATA_SUFFIX}") if path.is_dir()) if root.is_dir() else []


def check_model_name(name: str) -> str:
    if not MODEL_NAME.fullmatch(name or ""):
        raise UsageError(
            f"model name {quoted(name)}: use 1 to 64 letters, digits, '-' or '_' (starting with a letter or digit)"
        )
    return name


def check_class_name(name: str) -> str:
    if not CLASS_NAME.fullmatch(name or "") or name.lower() in SPLIT_NAMES:
        raise UsageError(
            f"class name {quoted(name)}: use 1 to 64 letters, digits, spaces, '-' or '_', and not "
            f"{', '.join(SPLIT_NAMES)}"
        )
    return name


def check_distinct_classes(names: list[str]) -> None:
    """Refuse two classes of the same name, or of names that differ only in case (folders of such names are one
    folder on some file systems): each class needs its own name."""
    seen: dict[str, str] = {}  # casefolded name -> the first class of that name
    for name in names:
        other = seen.get(name.casefold())
        if other is not None:
            same = f"the same name {quoted(name)}" if other == name else f"names {quoted(other)} and {quoted(name)}"
            raise UsageError(f"two classes have {same}: give each class its own name, or put their photos in one")
        seen[name.casefold()] = name


def check_limits(images: Images, limits: TrainsetLimits) -> None:
    """Refuse a job's images above `limits` (classes, images per class, bytes), before any is copied."""
    if len(images) > limits.max_classes:
        raise UsageError(limit_hit(limits, "max_classes", f"{len(images)} classes"))
    for label, files in images.items():
        if len(files) > limits.max_class_images:
            raise UsageError(limit_hit(limits, "max_class_images", f"class {label!r} has {len(files):,} images"))
    size = sum(path.stat().st_size for files in images.values() for path, _ in files)
    if size > limits.max_train_mb * 2**20:
        raise UsageError(limit_hit(limits, "max_train_mb", f"{size / 2**20:,.1f} MB of images"))


def build(models_dir: str | Path, model: str, images: Images, limits: TrainsetLimits) -> Path:
    """`models_dir/model.data` holding `images` (checked, deduplicated), replacing any folder there, atomically."""
    check_model_name(model)
    for label in images:
        check_class_name(label)
    check_distinct_classes(list(images))
    if len(images) < 2:
        raise UsageError(f"{len(images)} class(es) with images: a classifier needs at least 2")
    check_limits(images, limits)
    suffixes = check_images(images)
    with staged_dir(data_folder(models_dir, model)) as folder:
        for label, files in images.items():
            for path, shown in files:
                store(folder, label, path, suffixes[path], shown)
    return data_folder(models_dir, model)


def check_images(images: Images) -> dict[Path, str]:
    """Each image's stored suffix, every file checked before any is copied. A class none of whose files is usable
    is refused naming the class (and its first file's problem); otherwise the first unusable file refuses the
    whole batch, naming that file."""
    suffixes: dict[Path, str] = {}
    first: ImageError | None = None
    for label, files in images.items():
        problems = []
        for path, shown in files:
            try:
                suffixes[path] = checked_suffix(path, shown)
            except ImageError as error:
                problems.append(error)
        if problems and len(problems) == len(files):
            raise UsageError(f"class {quoted(label)} has no usable photo ({problems[0]}): add photos it can read")
        first = first or (problems[0] if problems else None)
    if first is not None:
        raise first
    return suffixes


def add(folder: Path, label: str, source: Path, shown: str) -> tuple[Path, bool]:
    """Save the image `source` (its sender calls it `shown`) under `folder/label/`: (where it is, whether it is
    new there). An image already stored under another class moves to `label`."""
    check_class_name(label)
    return store(folder, label, Path(source), checked_suffix(Path(source), shown), shown)


def checked_suffix(source: Path, shown: str) -> str:
    """The suffix `source` is stored with (its sender's name's), after the training scan's checks; ImageError naming
    it as `shown` when training could not read it."""
    suffix = Path(shown).suffix.lower()
    if is_heif(shown):
        raise ImageError(shown, HEIF_HINT)
    if not is_image_file(Path(f"image{suffix}")):
        raise ImageError(shown, f"not a {FORMAT_NAMES} file name; training reads only those")
    problem = check_image_file(source)[1]
    if problem:
        raise ImageError(shown, problem)
    return suffix


def store(folder: Path, label: str, source: Path, suffix: str, shown: str) -> tuple[Path, bool]:
    """`add` of an image already checked (`checked_suffix`)."""
    target = folder / label / f"{sha256_of(Path(source))[:HASH_CHARS]}{suffix}"
    stored = stored_copy(folder, target.stem)
    if stored == target:
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    if stored is not None:  # the same photo under another class: the latest word wins
        os.replace(stored, target)
        return target, True
    temporary = target.with_name(f".{target.name}.tmp")  # hidden: a scan meanwhile skips it
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except OSError as error:  # the file went away or cannot be read, or the disk is full: say which file
        temporary.unlink(missing_ok=True)
        raise UsageError(f"{clipped(shown)}: cannot be saved ({_reason(error)})") from None
    return target, True


def stored_copy(folder: Path, stem: str) -> Path | None:
    """The file of `folder` whose content hash is `stem`, in any class, or None."""
    return next((path for sub in class_folders(folder) for path in sub.glob(f"{stem}.*")), None)


def class_counts(folder: Path) -> dict[str, int]:
    """Images per class of a training folder."""
    return {label: len(files) for label, files in find_class_files(folder).items()} if folder.is_dir() else {}


def folder_bytes(folder: Path) -> int:
    """Bytes of the files in a training folder, hidden temporary ones too (they are on the disk as well)."""
    return sum(
        os.lstat(os.path.join(root, file)).st_size for root, _, files in os.walk(folder) for file in files
    )  # os.walk does not enter symlinked folders; lstat: a link counts as itself


def folder_images(folder: str | Path, shown: str | None = None) -> Images:
    """Class -> images of a folder of class folders (train/ and validation/ merged, when it has them); `~` is the
    user's home. UsageError naming the folder as `shown` (default: `folder` as given, a path of the user's own
    machine) when it is no folder, cannot be read, or holds no class folder with images."""
    shown = clipped(shown or str(folder), SHOWN_PATH_CHARS)
    try:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise UsageError(f"{shown}: no such folder on this machine")
        train, validation = split_folders(root)
        images: Images = {}
        folders = set()
        for split in filter(None, (train, validation)):
            folders.update(sub.name for sub in class_folders(split) if sub.name not in SPLIT_NAMES)
            for label, files in find_class_files(split).items():
                images.setdefault(label, []).extend((path, path.name) for path in files)
    except (OSError, RuntimeError) as error:  # unreadable inside (/proc/self), or ~user with no home
        raise UsageError(f"{shown}: cannot be read as a folder of class folders ({_reason(error)})") from None
    if not images:
        raise UsageError(f"{shown}: no class folders with {FORMAT_NAMES} images in it; give one folder per class")
    empty = sorted(folders - set(images))
    if empty:  # a class folder with no image in any split is a class the user meant, not one to drop silently
        raise UsageError(
            f"{shown}: class folder {quoted(empty[0])} has no {FORMAT_NAMES} images: add some or remove the folder"
        )
    return images


@contextlib.contextmanager
def unpacked_zip(archive: Path, shown: str, limits: TrainsetLimits) -> Iterator[Images]:
    """The class folders of a zip (at its top, or in its one top folder), unpacked to a temporary folder that is
    deleted after. The declared sizes are checked against `limits` first (zipfile reads no more than declared),
    and download.extract_zip refuses absolute paths, `..` and symlinks."""
    shown = clipped(shown)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
    except UnicodeDecodeError:  # the UTF-8 flag is set on a name that is not UTF-8
        raise UsageError(f"{shown}: an entry's name is not valid UTF-8, as the zip says it is; zip it again") from None
    except UNREADABLE:
        raise UsageError(f"{shown}: not a readable zip file") from None
    unpacked = sum(info.file_size for info in members)
    if unpacked > limits.max_train_mb * 2**20:
        raise UsageError(limit_hit(limits, "max_train_mb", f"{shown} unpacks to {unpacked / 2**20:,.1f} MB"))
    if len(members) > limits.max_zip_entries:
        raise UsageError(limit_hit(limits, "max_zip_entries", f"{shown} holds {len(members):,} entries"))
    problem = zip_problem(members)
    if problem:
        raise UsageError(f"{shown}: {problem}")
    with tempfile.TemporaryDirectory(prefix="classifier-zip-") as work:
        root = Path(work)
        try:
            extract_zip(archive, root, {"": ""})
        except VerifyError as error:
            raise UsageError(str(error).replace(archive.name, shown)) from None
        except UNREADABLE as error:  # past the checks above: say what, never where (a path of the server)
            raise UsageError(f"{shown}: cannot be unpacked ({_reason(error)})") from None
        shutil.rmtree(root / MACOS_FOLDER, ignore_errors=True)  # macOS's resource forks: not a class
        while len(class_folders(root)) == 1 and not (root / "train").is_dir():  # one top folder: look inside
            root = class_folders(root)[0]
        yield folder_images(root, shown)


def zip_problem(members: list[zipfile.ZipInfo]) -> str | None:
    """Why a zip's entries cannot be unpacked as a folder (an encrypted entry, a name too long, a file that another
    entry puts files in), or None."""
    files = {info.filename.rstrip("/") for info in members if not info.is_dir()}
    for info in members:
        name = info.filename
        if info.flag_bits & ENCRYPTED:
            return f"entry {quoted(name)} is encrypted; zip the images without a password"
        parts = name.rstrip("/").split("/")
        if len(name) > MAX_TEXT or any(len(part.encode("utf-8", "surrogateescape")) > NAME_BYTES for part in parts):
            return (
                f"entry {quoted(name)} has too long a name: at most {MAX_TEXT} characters, {NAME_BYTES} bytes per "
                "folder or file name"
            )
        folders = parts if info.is_dir() else parts[:-1]  # the folders this entry makes
        clash = next(
            ("/".join(folders[:n]) for n in range(1, len(folders) + 1) if "/".join(folders[:n]) in files), None
        )
        if clash is not None:
            return f"{quoted(clash)} is both a file and a folder (entry {quoted(name)})"
    return None


def _reason(error: BaseException) -> str:
    """What went wrong, in words that name no path of the server (an OSError's text names its file)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return quoted(str(error)) if str(error) else type(error).__name__
