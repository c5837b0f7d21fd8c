"""Image folders -> labelled file lists -> tf.data pipelines, with augmentation for training only.

A data folder is either one subfolder per class, or `train/` plus `validation/` (or `valid/`,
`val/`) holding the same class subfolders, optionally with a `test/` folder beside them (the same classes). The
test split (that folder, or `test_split` of each class held out of a flat folder or of train/, drawn by the seed
before validation is) is held out from everything training does; training only scores it once at the end.
Hidden files and folders (`.thumbnails/`) are ignored at any depth.
Every image is decoded once up front (in threads), as serving would decode it, so a
file that is corrupt, too large, not in an accepted format whatever its name, or that tf.data would
decode differently is reported by name with the reason and skipped, instead of killing training in
epoch 7. A class folder without images is a warning; a class none of whose images is usable is an error.

With a `ScanMemo` (training with the feature cache), each file is hashed instead and only content
the memo has not seen is decoded: a retrain after adding photos decodes the new photos alone, and
a new or changed file is always checked. The memo is one JSON file per data folder beside the
feature cache (content sha256 -> EXIF orientation and why it is skipped), rewritten atomically
with the files of the latest scan.
"""

from __future__ import annotations

import functools
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL

from .._tf import tf
from ..atomic import write_json
from ..console import Log, say
from ..errors import UsageError
from ..files import sha256_of
from .formats import IMAGE_EXTENSIONS
from .images import MAX_PIXELS, check_image_file, decode_rgb_tf, image_files, resize

VALIDATION_DIRS = ("validation", "valid", "val")
TEST_DIR = "test"  # the held-out test folder beside train/
# Part of the memo's key: bump it whenever images.check_image_file changes what it accepts or reports.
SCAN_FORMAT = 1


@dataclass
class Split:
    """Image files with their integer labels and EXIF orientations, in a fixed order."""

    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    orientations: list[int] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)  # content sha256 per file when the scan hashed them, else empty

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices) -> "Split":
        indices = list(indices)
        return Split(
            [self.paths[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.orientations[i] for i in indices],
            [self.hashes[i] for i in indices] if self.hashes else [],
        )

    def content_hashes(self) -> list[str]:
        """The sha256 of each file's content: the scan's, or computed now."""
        return self.hashes or content_hashes(self.paths)


def content_hashes(paths: list[str]) -> list[str]:
    with ThreadPoolExecutor(max_workers=4) as pool:  # hashlib releases the GIL on large reads
        return list(pool.map(sha256_of, paths))


class ScanMemo:
    """The scan's verdict on each file content it has decoded (EXIF orientation, why it is skipped or None),
    for one data folder, kept in `folder`: so a scan decodes only content it has not seen."""

    def __init__(self, folder: str | Path, data_dir: str | Path):
        data_dir = Path(data_dir).resolve()
        key = {"format": SCAN_FORMAT, "pillow": PIL.__version__, "max_pixels": MAX_PIXELS, "data": str(data_dir)}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(folder) / f"{data_dir.name}-{digest}.json"
        try:
            self.known = {sha: tuple(verdict) for sha, verdict in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError, TypeError, AttributeError):  # absent or unreadable: every file is decoded
            self.known = {}
        self.seen: dict[str, tuple[int, str | None]] = {}  # this scan's files: what the memo keeps

    def checked(self, paths: list[str], hashes: list[str]) -> list[tuple[int, str | None]]:
        """`check_image_file` of each path, decoding only content the memo has no verdict on."""
        verdicts = [self.known.get(sha) for sha in hashes]
        new = [i for i, verdict in enumerate(verdicts) if verdict is None]
        for i, verdict in zip(new, _check_files([paths[i] for i in new]), strict=True):
            verdicts[i] = verdict
        self.seen.update(zip(hashes, verdicts, strict=True))
        return verdicts

    def save(self) -> None:
        """Keep this scan's verdicts (files no longer in the folder drop out); atomic."""
        if self.seen != self.known:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, self.seen)


@dataclass
class ImageData:
    """A training set, a validation set and (optionally) a held-out test set over the same classes."""

    root: Path
    class_names: list[str]
    train: Split
    validation: Split
    skipped: list[tuple[str, str]]  # (path, why) for files that could not be decoded
    validation_from: str  # "folder" or "split"
    test: Split | None = None  # held out from training, validation and every choice; None: no test split
    test_from: str | None = None  # "folder" (a test/ folder) or "split" (--test-split of each class)


def class_folders(folder: Path) -> list[Path]:
    """The visible subfolders of `folder`, sorted: one per class."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_class_files(folder: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for each subfolder of `folder` holding at least one image."""
    return {sub.name: files for sub in class_folders(folder) if (files := image_files(sub))}


def split_folders(root: Path) -> tuple[Path, Path | None]:
    """(training folder, validation folder or None) of a data folder: train/ and validation/ (or valid/, val/)
    when it has them, else the folder itself and no validation folder."""
    validation = next((root / name for name in VALIDATION_DIRS if (root / name).is_dir()), None)
    return (root / "train" if (root / "train").is_dir() else root), validation


def test_folder(root: Path) -> Path | None:
    """The data folder's test/ folder beside train/, or None."""
    return root / TEST_DIR if (root / TEST_DIR).is_dir() else None


def load_image_data(
    data_dir: str | Path,
    validation_split: float = 0.2,
    seed: int = 0,
    log: Log = say,
    memo: ScanMemo | None = None,
    test_split: float = 0.0,
) -> ImageData:
    """Find the classes and files under `data_dir`, drop undecodable files, and split train/validation (and the
    test split: a test/ folder, or `test_split` of each class); with `memo`, files are hashed and only content it
    does not know is decoded."""
    root = Path(data_dir)
    folders, classes = _layout(data_dir, log)  # (train, validation, test) folders and their class -> files
    class_names = sorted(classes[0])

    skipped: list[tuple[str, str]] = []
    train, validation, test = (
        _checked_split(found, class_names, skipped, memo) if folder else None
        for folder, found in zip(folders, classes, strict=True)
    )
    if memo is not None:
        memo.save()
    if skipped:
        log(f"warning: skipped {len(skipped)} unusable image(s):")
        for path, why in skipped:
            log(f"  {path}: {why}")
    for folder, split in zip(folders, (train, validation, test), strict=True):
        _refuse_empty_classes(folder, split, class_names)
    train, test, test_from = _hold_out_test(data_dir, train, test, test_split, seed)
    if validation is not None:
        source = "folder"
    else:
        if not 0.0 < validation_split < 1.0:
            raise UsageError(
                f"--validation-split {validation_split}: must be between 0 and 1 when the data has no validation folder"
            )
        train, validation = stratified_split(train, validation_split, seed)
        source = "split"
    if len(train) == 0 or len(validation) == 0:
        raise UsageError(f"--data {data_dir}: too few readable images to have both training and validation images")
    return ImageData(root, class_names, train, validation, skipped, source, test, test_from)


def _hold_out_test(
    data_dir: str | Path, train: Split, test: Split | None, test_split: float, seed: int
) -> tuple[Split, Split | None, str | None]:
    """(training images left, test split or None, "folder" or "split" or None): the test/ folder's images, or
    `test_split` of each class of the training images (drawn by `seed`), refused with both."""
    if test is not None:
        if test_split:
            raise UsageError(
                f"--test-split {test_split}: --data {data_dir} has a {TEST_DIR}/ folder, which is its test split; "
                "drop --test-split (or the folder)"
            )
        return train, test, "folder"
    if not test_split:
        return train, None, None
    train, test = stratified_split(train, test_split, seed)
    if len(test) == 0:
        raise UsageError(f"--test-split {test_split}: holds out no image of --data {data_dir}; raise it or add images")
    return train, test, "split"


def _layout(data_dir: str | Path, log: Log) -> tuple[list[Path | None], list[dict]]:
    """([training folder, validation folder or None, test folder or None], their class -> files) of `data_dir`,
    refused unless it holds at least 2 classes and every folder the same classes; empty class folders are warned
    of."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UsageError(f"--data {data_dir}: no such folder")
    train_dir, validation_dir = split_folders(root)
    test_dir = test_folder(root)
    test_classes = find_class_files(test_dir) if test_dir is not None else {}
    if test_dir is not None and train_dir != root and not test_classes:  # e.g. unlabelled images
        log(f"warning: {test_dir}/ holds no class folders with images; it is not used as a test split")
        test_dir = None
    for beside in (validation_dir, test_dir):
        if beside is not None and train_dir == root:
            raise UsageError(f"--data {data_dir}: has {beside.name}/ but no train/ folder beside it")

    train_classes = find_class_files(train_dir)
    if not train_classes:
        raise UsageError(
            f"--data {data_dir}: no images found; expected one subfolder per class holding "
            f"{'/'.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)} files, or train/ and validation/ folders"
        )
    if len(train_classes) < 2:
        raise UsageError(
            f"--data {train_dir}: found only one class ({next(iter(train_classes))}); a classifier needs at least 2 "
            "class subfolders"
        )

    folders = [train_dir, validation_dir, test_dir]
    validation_classes = find_class_files(validation_dir) if validation_dir else {}
    classes = [train_classes, validation_classes, test_classes if test_dir else {}]
    for folder, found in zip(folders, classes, strict=True):
        for sub in class_folders(folder) if folder else []:
            if sub.name not in found:
                log(f"warning: {sub}/ holds no image files; it is not a class")
        if folder and folder != train_dir and set(found) != set(train_classes):
            only_train = sorted(set(train_classes) - set(found)) or ["-"]
            only_there = sorted(set(found) - set(train_classes)) or ["-"]
            raise UsageError(
                f"--data {data_dir}: train/ and {folder.name}/ have different classes "
                f"(only in train: {', '.join(only_train)}; only in {folder.name}: {', '.join(only_there)}); make "
                "them match"
            )
    return folders, classes


def _refuse_empty_classes(folder: Path | None, split: Split | None, class_names: list[str]) -> None:
    """A class left with no usable image (every file skipped) cannot be learnt or checked: say which."""
    if split is None:
        return
    counts = np.bincount(np.asarray(split.labels, dtype=int), minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
    if empty:
        raise UsageError(
            f"--data {folder}: no usable image in {', '.join(f'{name}/' for name in empty)} (every file was "
            "skipped, see the warnings above); fix or remove those files, or remove the class folder"
        )


def _checked_split(
    classes: dict[str, list[Path]], class_names: list[str], skipped: list, memo: ScanMemo | None
) -> Split:
    """Check every file (decoded once, or its content's verdict from `memo`) and keep the readable ones."""
    items = [(str(path), class_names.index(name)) for name, files in classes.items() for path in files]
    paths = [path for path, _ in items]
    hashes = content_hashes(paths) if memo is not None else []
    results = memo.checked(paths, hashes) if memo is not None else _check_files(paths)
    split = Split()
    for i, ((path, label), (orientation, problem)) in enumerate(zip(items, results, strict=True)):
        if problem:
            skipped.append((path, problem))
            continue
        split.paths.append(path)
        split.labels.append(label)
        split.orientations.append(orientation)
        split.hashes.extend(hashes[i : i + 1])
    return split


def _check_files(paths: list[str]) -> list[tuple[int, str | None]]:
    """`check_image_file` of each path, in threads (Pillow releases the GIL while decoding)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda path: check_image_file(Path(path)), paths))


def stratified_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out `fraction` of each class (at least one image where a class has two or more)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(split.labels)
    train_idx, val_idx = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n_val = int(round(len(members) * fraction))
        n_val = min(max(n_val, 1 if len(members) > 1 else 0), len(members) - 1)
        val_idx.extend(members[:n_val])
        train_idx.extend(members[n_val:])
    return split.subset(sorted(train_idx)), split.subset(sorted(val_idx))


def image_dataset(
    split: Split, image_size: tuple[int, int], batch_size: int, shuffle: bool = False, seed: int = 0, augmenter=None
):
    """A batched tf.data pipeline of (float pixels 0..255 at `image_size`, label).

    Decoding and resizing run in parallel inside TensorFlow; `augmenter` (training only) runs on
    whole batches after them.
    """
    files = tf.data.Dataset.from_tensor_slices((split.paths, split.orientations, split.labels))
    if shuffle:
        files = files.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)

    def load(path, orientation, label):
        return resize(decode_rgb_tf(path, orientation, max(image_size)), image_size), label

    images = files.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle).batch(batch_size)
    if augmenter is not None:
        images = images.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return images.prefetch(tf.data.AUTOTUNE)


def copies_dataset(split: Split, wanted, image_size: tuple[int, int], batch_size: int, augment=None, seeds=None):
    """A batched tf.data pipeline of (float pixels 0..255 at `image_size`, image index, copy) over every pair
    (image i of `split`, copy k) with `wanted[i][k]` true, in order of images then copies: each image is read
    and decoded once, its copy 0 is the image itself and copy k >= 1 is `augment(image, k, seeds[i])`.

    Decoding, resizing and augmenting run image by image in parallel inside TensorFlow (deterministic order),
    so a backbone batch may mix images and copies; one pipeline serves every copy of a run. `augment` must be
    one object for one augmentation (the traced step is kept per `image_copies` arguments)."""
    wanted = np.asarray(wanted, bool).reshape(len(split), -1)  # (images, copies)
    rows = np.flatnonzero(wanted.any(axis=1))  # the images with at least one copy to make
    seeds = np.zeros(len(split), np.int64) if seeds is None else np.asarray(seeds, np.int64)
    columns = (np.asarray(split.paths, str)[rows], np.asarray(split.orientations, np.int32)[rows], wanted[rows])
    files = tf.data.Dataset.from_tensor_slices((*columns, seeds[rows], rows.astype(np.int64)))
    load = image_copies(tuple(image_size), wanted.shape[1], augment)

    def is_wanted(image, want, row, copy):
        return want

    def without_want(image, want, row, copy):
        return image, row, copy

    pairs = files.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    pairs = pairs.filter(is_wanted).map(without_want)
    return pairs.batch(batch_size).prefetch(tf.data.AUTOTUNE)


@functools.lru_cache(maxsize=4)
def image_copies(image_size: tuple[int, int], copies: int, augment):
    """`copies_dataset`'s step, one image -> (all its copies (copies, *size, 3), want, row, copy per copy), as
    one function traced once per process: the next pipeline with the same arguments (a retrain) embeds
    the trace instead of tracing the decoding and augmentation graph again, which costs seconds."""
    signature = [
        tf.TensorSpec([], tf.string),  # path
        tf.TensorSpec([], tf.int32),  # EXIF orientation
        tf.TensorSpec([copies], tf.bool),  # which copies to make
        tf.TensorSpec([], tf.int64),  # the image's seed
        tf.TensorSpec([], tf.int64),  # its row in the split
    ]

    @tf.function(input_signature=signature, autograph=False)  # every branch is an explicit tf.cond
    def load(path, orientation, want, seed, row):
        image = resize(decode_rgb_tf(path, orientation, max(image_size)), image_size)

        def copy(k):  # copy k of the image, or zeros (no work) when it is not wanted: dropped after
            return tf.cond(want[k], lambda: augment(image, k, seed), lambda: tf.zeros_like(image))

        made = tf.stack([image, *(copy(k) for k in range(1, copies))])
        return made, want, tf.fill([copies], row), tf.range(copies, dtype=tf.int64)

    return load
