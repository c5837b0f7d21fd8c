"""Cached backbone features: a frozen backbone's output for an image never changes, so compute it once.

Like TF-Hub's retrain.py "bottlenecks", but augmentation keeps working: each training image also
gets `augment_copies` augmented variants, each passed through the backbone once and cached. The
head then trains for many epochs on vectors, which costs next to nothing; each epoch takes every
training image once as one of its variants, drawn anew (`variant_epochs`).

The cache itself (shards and an index, content-addressed, on any `tf.io.gfile` filesystem) is
`featurecache.FeatureCache`; this module fills it from the backbone and reads the training set's
vectors back. Its model key hashes everything that changes features (backbone, resolved cut layer,
weights as `backbones.weights_key` names them, image size, pooling, versions), so leaving the cut
layer to the backbone and naming the same layer share entries; augmented copies are keyed by the
augmentation settings too. Entries are per file content, so editing one image recomputes that image
only; an entry that does not load as the extractor's vector is computed again.

With several workers (`--strategy multi-worker`, see distribute.FeatureShare) every worker computes
only its share of the missing entries into the shared cache, and a worker that trains waits until
the cache holds the others' shares (`training_features(..., share=...)`). Augmented copies are
random draws made per pass, so which worker computes an image's copy (or a partial recompute)
changes the draw, not its distribution.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ._tf import tf
from .augment import make_augmenter
from .config import TrainConfig
from .console import Log, Progress, say
from .data import Split, content_hashes, image_dataset  # noqa: F401 (content_hashes: part of this module's API)
from .errors import UsageError
from .featurecache import CACHE_FORMAT, SHARD_ROWS, FeatureCache, default_cache_dir, is_url  # noqa: F401 (API)

POLL_SECONDS = 2.0  # how often a waiting worker looks at the index for the other workers' shares


def scan_memo_dir(config: TrainConfig) -> Path:
    """Where the training scan keeps its verdicts on files (data.ScanMemo): beside the cached features when they
    are in a local folder, else in the local default cache (the memo is about this machine's files)."""
    folder = config.cache_dir if config.cache_dir and not is_url(config.cache_dir) else default_cache_dir()
    return Path(folder) / "scan"


def feature_cache_applies(config: TrainConfig) -> bool:
    """Only a frozen backbone has fixed features; `--weights none` trains the backbone itself."""
    return config.feature_cache and config.transfer


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

    `extract` is the extractor's traced call; `extract.shape` the shape of one image's vector.
    `on_progress` is `console.Progress`'s `on_update`, called after each batch of the backbone pass."""
    keys = [(sha, cache.variant(copy)) for sha in hashes]
    rows = [row if row is None or row.shape == extract.shape else None for row in cache.read(keys)]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        computed = compute(extract, split, keys, missing, cache, copy, config, log, on_progress)
        for i, row in zip(missing, computed, strict=True):
            rows[i] = row
    return np.stack(rows)


def compute(
    extract,
    split: Split,
    keys: list,
    indices: list[int],
    cache: FeatureCache,
    copy: int,
    config: TrainConfig,
    log: Log,
    on_progress=None,
) -> np.ndarray:
    """The vectors of `split`'s images at `indices` for one copy, written to the cache under their `keys`, a
    shard per SHARD_ROWS of them, by a second thread while the backbone runs on the next batch.

    What was computed is written even when the pass stops early (Ctrl-C, a failing batch)."""
    what = "images" if copy == 0 else f"augmented copy {copy}"
    log(f"feature cache: computing {len(indices)} of {len(keys)} ({what}) into {cache.root}")
    progress = Progress("backbone features", len(indices), log=log, unit="images", on_update=on_progress)
    batches, pending, writes = [], [], []  # every batch's vectors; those not yet handed to the writer; writes
    done = written = 0  # rows computed; rows handed to the writer
    with ThreadPoolExecutor(max_workers=1) as writer:

        def flush(rows: int) -> None:  # the next `rows` computed vectors as one shard
            nonlocal pending, written
            block = np.concatenate(pending)
            shard_keys = [keys[i] for i in indices[written : written + rows]]
            writes.append(writer.submit(cache.write, shard_keys, block[:rows]))
            pending, written = [block[rows:]], written + rows

        try:
            for vectors in backbone_batches(extract, split.subset(indices), config, copy):
                batches.append(vectors)
                pending.append(vectors)
                done += len(batches[-1])
                progress.update(done)
                while done - written >= SHARD_ROWS:
                    flush(SHARD_ROWS)
        finally:
            if done > written:
                flush(done - written)
    for write in writes:
        write.result()  # a failed write (disk full) fails the run here
    progress.close()
    return np.concatenate(batches)


def backbone_batches(extract, split: Split, config: TrainConfig, copy: int, seed: int | None = None):
    """The feature vectors of `split`'s images, a float32 (n, D) array per batch of `config.batch_size`, in order:
    copy 0 as the images are, copy k >= 1 through `make_augmenter(config, seed)` (by default seeded
    `config.seed + copy`; its draws follow the stream of batches, so the same images in the same order and
    batches get the same copies). Also the batch engine's computation (classifier/batch_features.py)."""
    augmenter = make_augmenter(config, seed=config.seed + copy if seed is None else seed) if copy else None
    for batch, _ in image_dataset(split, config.image_shape, config.batch_size, augmenter=augmenter):
        yield np.asarray(extract(batch), np.float32)


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


def feature_passes(data, config: TrainConfig) -> list[tuple[Split, list[str], int]]:
    """The backbone passes a training run reads, in order, as (split, its content hashes, copy): the training
    images as they are and as each augmented copy, then the validation images as they are."""
    copies = range(0, 1 + (config.augment_copies if config.augment else 0))
    train_hashes = data.train.content_hashes()
    return [(data.train, train_hashes, k) for k in copies] + [(data.validation, data.validation.content_hashes(), 0)]


def training_features(extractor, data, config: TrainConfig, log: Log = say, share=None, on_progress=None):
    """(x_train, y_train, x_val, y_val) from the cache: train = clean + each augmented copy (`on_progress`: see
    `cached_features`).

    With `share` (a distribute.FeatureShare: a multi-worker run) this worker first computes only its share of
    the entries the cache lacks. One that does not train (`share.trains` false) stops there and gets None; one
    that trains waits until the cache holds every worker's share, then reads them all (computing itself any
    entry that turns out damaged)."""
    cache = FeatureCache.for_config(config)
    extract = traced(extractor, config.image_shape)
    passes = feature_passes(data, config)
    if share is not None:
        for split, hashes, copy in passes:
            keys = [(sha, cache.variant(copy)) for sha in hashes]
            absent, owners = set(cache.missing(keys)), share.owners(hashes)
            mine = [i for i, key in enumerate(keys) if key in absent and owners[i] == share.index]
            if mine:
                compute(extract, split, keys, mine, cache, copy, config, log, on_progress)
        if not share.trains:
            return None
        wait_for_shares(cache, passes, share, config.worker_timeout, log)
    vectors = [
        cached_features(extract, split, hashes, cache, copy, config, log, on_progress) for split, hashes, copy in passes
    ]
    y_train = np.tile(np.asarray(data.train.labels), len(passes) - 1)  # every pass but validation's
    return np.concatenate(vectors[:-1]), y_train, vectors[-1], np.asarray(data.validation.labels)


def variant_epochs(x_train: np.ndarray, y_train: np.ndarray, photos: int, batch: int, seed: int):
    """The head's training batches, repeated without end: an epoch is every training photo once, in shuffled
    order, each as one of its cached variants (the image or one of its augmented copies) drawn at random anew
    every epoch, as the course's epoch sees each photo once in a fresh augmentation. `x_train` holds the
    variants one after the other (`training_features`), so photo i's variant v is row i + v * photos."""
    variants = len(x_train) // photos
    x, y = tf.constant(x_train), tf.constant(y_train)
    order = tf.data.Dataset.range(photos).shuffle(photos, seed=seed, reshuffle_each_iteration=True).batch(batch)
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(batch)  # int64, a batch a step
    # zip stops with `order` (one epoch); the last batch of an epoch is short, so its draws are cut to fit.
    rows = tf.data.Dataset.zip(order, draws).map(lambda i, r: i + photos * (r[: tf.shape(i)[0]] % variants))
    return rows.map(lambda r: (tf.gather(x, r), tf.gather(y, r))).repeat().prefetch(tf.data.AUTOTUNE)


def wait_for_shares(cache: FeatureCache, passes: list, share, timeout: float, log: Log = say) -> None:
    """Poll the index until it holds every entry of `passes` ((split, hashes, copy) each); a UsageError naming
    the workers whose share is missing when it has not grown for `timeout` seconds."""
    owner = {}  # key -> the worker whose share it is
    for _, hashes, copy in passes:
        owner.update(zip([(sha, cache.variant(copy)) for sha in hashes], share.owners(hashes), strict=True))
    keys, waiting, progressed = list(owner), None, time.monotonic()
    while missing := cache.missing(keys):
        if waiting is None:
            log(f"feature cache: waiting for {_by_worker(missing, owner)} in {cache.root}")
        if waiting is None or len(missing) < waiting:
            waiting, progressed = len(missing), time.monotonic()
        elif time.monotonic() - progressed > timeout:
            raise UsageError(
                f"--strategy multi-worker: {cache.root} still lacks {_by_worker(missing, owner)} after "
                f"{timeout:g} s without progress; start that worker with the same command and its TF_CONFIG, "
                "check that every worker reaches --cache-dir (one shared folder or gs:// path), or raise "
                "--worker-timeout"
            )
        time.sleep(min(POLL_SECONDS, timeout))


def _by_worker(missing: list, owner: dict) -> str:
    """ "worker 1's share (5 entries), ..." for the missing keys."""
    counts: dict[int, int] = {}
    for key in missing:
        counts[owner[key]] = counts.get(owner[key], 0) + 1
    return ", ".join(f"worker {worker}'s share ({n} entries)" for worker, n in sorted(counts.items()))
