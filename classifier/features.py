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
from .data import Split, image_dataset
from .download import sha256_of

# Part of every key: bump it whenever decoding, resizing or augmentation code changes what an entry holds.
CACHE_FORMAT = 4  # 4: augmentation as ImageDataGenerator's (shear in degrees on one axis, two zoom factors)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "classifier" / "features"


def feature_cache_applies(config: TrainConfig) -> bool:
    """Only a frozen backbone has fixed features; `--weights none` trains the backbone itself."""
    return config.feature_cache and config.transfer


def content_hashes(paths: list[str]) -> list[str]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(sha256_of, paths))


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
    extract, split: Split, hashes: list[str], cache: FeatureCache, copy: int, config: TrainConfig, log: Log = say
) -> np.ndarray:
    """Features (N, D) of every image in `split` for one copy, computing and caching the missing ones."""
    paths = [cache.entry(sha, copy) for sha in hashes]
    shape = tuple(extract.get_concrete_function().structured_outputs.shape[1:])  # one image's feature vector
    rows = [_load_entry(path, shape) for path in paths]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        what = "images" if copy == 0 else f"augmented copy {copy}"
        log(f"feature cache: computing {len(missing)} of {len(paths)} ({what}) into {cache.root}")
        augmenter = make_augmenter(config, seed=config.seed + copy) if copy else None
        images = image_dataset(split.subset(missing), config.image_shape, config.batch_size, augmenter=augmenter)
        progress = Progress("backbone features", len(missing), log=log, unit="images")
        done = 0
        for batch, _ in images:
            for row in np.asarray(extract(batch)):
                rows[missing[done]] = _save_atomically(paths[missing[done]], row)
                done += 1
            progress.update(done)
        progress.close()
    return np.stack(rows)


def _load_entry(path: Path, shape: tuple) -> np.ndarray | None:
    """A cached feature vector, or None when it is absent or does not load as one (then it is recomputed)."""
    try:
        row = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # absent, truncated, or not a .npy file
        return None
    return row if row.dtype == np.float32 and row.shape == shape else None


def _save_atomically(path: Path, array: np.ndarray) -> np.ndarray:
    """Write `array` as float32 to `path` (temporary name, then rename); return what was written."""
    array = array.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "wb") as file:
        np.save(file, array)
    os.replace(temporary, path)
    return array


def training_features(extractor, data, config: TrainConfig, log: Log = say):
    """(x_train, y_train, x_val, y_val) from the cache: train = clean + each augmented copy."""
    cache = FeatureCache.for_config(config)
    size = config.image_shape
    # One traced graph for every batch: no per-call Python or retracing in the backbone pass.
    extract = tf.function(
        lambda batch: extractor(batch, training=False), input_signature=[tf.TensorSpec([None, *size, 3], tf.float32)]
    )
    train_hashes = content_hashes(data.train.paths)
    copies = range(0, 1 + (config.augment_copies if config.augment else 0))
    x_train = np.concatenate(
        [cached_features(extract, data.train, train_hashes, cache, k, config, log) for k in copies]
    )
    y_train = np.tile(np.asarray(data.train.labels), len(copies))
    x_val = cached_features(extract, data.validation, content_hashes(data.validation.paths), cache, 0, config, log)
    return x_train, y_train, x_val, np.asarray(data.validation.labels)
