"""Cached backbone features: a frozen backbone's output for an image never changes, so compute it once.

Like TF-Hub's retrain.py "bottlenecks", but augmentation keeps working: each training image also
gets `augment_copies` augmented variants, each passed through the backbone once and cached. The
head then trains for many epochs on vectors, which costs next to nothing.

On disk, under the cache folder:

    <model key>/clean/<content sha256>.npy          the image as it is (training and validation)
    <model key>/aug-<augmentation key>/<sha>-<k>.npy  its k-th augmented variant

The model key hashes everything that changes features (backbone, resolved cut layer, weights as
`backbones.weights_key` names them, image size, pooling, versions), so leaving the cut layer to
the backbone and naming the same layer share entries; the augmentation key hashes the augmentation
settings. Entries are per file content, so editing one image recomputes that image only, and
entries are written to a temporary name and renamed, so an interrupted fill never leaves a wrong
one. An entry that does not load as the extractor's vector (truncated, garbage, wrong shape) is
computed again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._tf import keras, tf
from .augment import AUGMENTATION_FIELDS, make_augmenter
from .backbones import weights_key
from .config import TrainConfig
from .console import Log, Progress, say
from .data import Split, content_hashes, image_dataset  # noqa: F401 (content_hashes: part of this module's API)

# Part of every key: bump it whenever decoding, resizing or augmentation code changes what an entry holds.
CACHE_FORMAT = 4  # 4: augmentation as ImageDataGenerator's (shear in degrees on one axis, two zoom factors)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "classifier" / "features"


def scan_memo_dir(config: TrainConfig) -> Path:
    """Where the training scan keeps its verdicts on files (data.ScanMemo): beside the cached features."""
    return Path(config.cache_dir or default_cache_dir()) / "scan"


def feature_cache_applies(config: TrainConfig) -> bool:
    """Only a frozen backbone has fixed features; `--weights none` trains the backbone itself."""
    return config.feature_cache and config.transfer


def _key(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FeatureCache:
    """The cache folder for one model configuration."""

    root: Path
    augmentation: str  # key of the augmentation settings

    @classmethod
    def for_config(cls, config: TrainConfig) -> "FeatureCache":
        """The cache of a resolved config (as `metadata.json` saves it)."""
        model_key = _key(
            {
                "format": CACHE_FORMAT,
                "backbone": config.backbone,
                "cut_layer": config.cut_layer,
                "weights": weights_key(config.backbone, config.weights, config.alpha),
                "image_size": config.image_shape,
                "pooling": config.head_pooling,
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
            }
        )
        augmentation = _key({name: getattr(config, name) for name in AUGMENTATION_FIELDS})
        return cls(Path(config.cache_dir or default_cache_dir()) / f"{config.backbone}-{model_key}", augmentation)

    def entry(self, sha: str, copy: int) -> Path:
        """Copy 0 is the image itself; copies 1..K are augmented variants."""
        if copy == 0:
            return self.root / "clean" / f"{sha}.npy"
        return self.root / f"aug-{self.augmentation}" / f"{sha}-{copy}.npy"


def cached_features(
    extract,
    split: Split,
    hashes: list[str],
    cache: FeatureCache,
    copy: int,
    config: TrainConfig,
    log: Log = say,
    on_progress=None,
) -> np.ndarray:
    """Features (N, D) of every image in `split` for one copy, computing and caching the missing ones.

    `extract` is the extractor's traced call; `extract.shape` the shape of one image's vector. New
    entries are written by a second thread while the backbone runs on the next batch. `on_progress`
    is `console.Progress`'s `on_update`, called after each batch."""
    paths = [cache.entry(sha, copy) for sha in hashes]
    header = _npy_header(extract.shape)
    rows = [_load_entry(path, extract.shape, header) for path in paths]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        what = "images" if copy == 0 else f"augmented copy {copy}"
        log(f"feature cache: computing {len(missing)} of {len(paths)} ({what}) into {cache.root}")
        progress = Progress("backbone features", len(missing), log=log, unit="images", on_update=on_progress)
        done, writes = 0, []
        with ThreadPoolExecutor(max_workers=1) as writer:
            for vectors in backbone_batches(extract, split.subset(missing), config, copy):
                indices = missing[done : done + len(vectors)]
                writes.append(writer.submit(_save_rows, [paths[i] for i in indices], vectors))
                for i, row in zip(indices, vectors, strict=True):
                    rows[i] = row
                done += len(vectors)
                progress.update(done)
        for write in writes:
            write.result()  # a failed write (disk full) fails the run here
        progress.close()
    return np.stack(rows)


def backbone_batches(extract, split: Split, config: TrainConfig, copy: int, seed: int | None = None):
    """The feature vectors of `split`'s images, a float32 (n, D) array per batch of `config.batch_size`, in order:
    copy 0 as the images are, copy k >= 1 through `make_augmenter(config, seed)` (by default seeded
    `config.seed + copy`; its draws follow the stream of batches, so the same images in the same order and
    batches get the same copies). Also the batch engine's computation (classifier/batch_features.py)."""
    augmenter = make_augmenter(config, seed=config.seed + copy if seed is None else seed) if copy else None
    for batch, _ in image_dataset(split, config.image_shape, config.batch_size, augmenter=augmenter):
        yield np.asarray(extract(batch), np.float32)


def _npy_header(shape: tuple) -> bytes:
    """The bytes `np.save` writes before the data of a float32 array of `shape`."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(shape, np.float32))
    return buffer.getvalue()[: -4 * int(np.prod(shape))]


def _load_entry(path: Path, shape: tuple, header: bytes) -> np.ndarray | None:
    """A cached feature vector, or None when it is absent or does not load as one (then it is recomputed).

    An entry that starts with `header` and is as long as the vector is read straight from its bytes, a
    tenth of np.load's cost; any other is left to np.load."""
    try:
        data = path.read_bytes()
    except OSError:  # absent
        return None
    if data.startswith(header) and len(data) == len(header) + 4 * int(np.prod(shape)):
        return np.frombuffer(data, np.float32, offset=len(header)).reshape(shape)
    try:
        row = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError):  # truncated, or not a .npy file
        return None
    return row if row.dtype == np.float32 and row.shape == shape else None


def _save_rows(paths: list[Path], rows: np.ndarray) -> None:
    for path, row in zip(paths, rows, strict=True):
        _save_atomically(path, row)


def _save_atomically(path: Path, array: np.ndarray) -> None:
    """Write `array` as float32 to `path` (temporary name, then rename)."""
    array = array.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "wb") as file:
        np.save(file, array)
    os.replace(temporary, path)


# The last extractor traced and its trace: a retrain in the same process gets the same extractor back from
# model.feature_extractor (the backbone is shared) and reuses its trace instead of tracing the network again.
_last_traced: list[tuple[object, tuple, object]] = []


def traced(extractor, size: tuple[int, int]):
    """`extractor` as one traced graph for every batch of images at `size` (no per-call Python or retracing),
    traced at its first call; its `shape` attribute is one image's feature vector shape, known without tracing."""
    if _last_traced and _last_traced[0][0] is extractor and _last_traced[0][1] == tuple(size):
        return _last_traced[0][2]
    extract = tf.function(
        lambda batch: extractor(batch, training=False), input_signature=[tf.TensorSpec([None, *size, 3], tf.float32)]
    )
    extract.shape = tuple(extractor.output.shape[1:])
    _last_traced[:] = [(extractor, tuple(size), extract)]
    return extract


def training_features(extractor, data, config: TrainConfig, log: Log = say, on_progress=None):
    """(x_train, y_train, x_val, y_val) from the cache: train = clean + each augmented copy (`on_progress`: see
    `cached_features`)."""
    cache = FeatureCache.for_config(config)
    extract = traced(extractor, config.image_shape)
    train_hashes = data.train.content_hashes()
    copies = range(0, 1 + (config.augment_copies if config.augment else 0))
    x_train = np.concatenate(
        [cached_features(extract, data.train, train_hashes, cache, k, config, log, on_progress) for k in copies]
    )
    y_train = np.tile(np.asarray(data.train.labels), len(copies))
    x_val = cached_features(
        extract, data.validation, data.validation.content_hashes(), cache, 0, config, log, on_progress
    )
    return x_train, y_train, x_val, np.asarray(data.validation.labels)
