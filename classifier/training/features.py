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
only; an entry that does not load as the extractor's vector is computed again. Test-time flips measure the
validation images' mirror images, cached as one more variant ("mirror", `mirrored_features`). The backbone pass
runs in LiteRT or TensorFlow (engine.py), whose features are equal to float rounding (model/litert.check's
tolerance): the key does not name the engine, and an entry computed by either serves both.

With several workers (`--strategy multi-worker`, see distribute.FeatureShare) every worker computes
only its share of the missing entries into the shared cache, and a worker that trains waits until
the cache holds the others' shares (`training_features(..., share=...)`).

A run's missing entries are computed by ONE input pipeline (`compute`): each image that lacks any
entry is decoded once and yields its clean image and its missing augmented copies, and the backbone
sees batches that may mix them. An augmented copy is a draw made from `--seed`, the copy's number
and the image's content alone (`backbone_batches`), so it is the same draw whatever other images,
order, batches, worker or runner compute it. Entries that an earlier version drew per batch stay
valid: they are draws of the same augmentation, so the cache's keys did not change.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .._tf import tf
from ..config import TrainConfig
from ..console import Log, Progress, say
from ..data.augment import AUGMENTATION_FIELDS, augment_image
from ..data.pipeline import Split, content_hashes, copies_dataset  # noqa: F401 (content_hashes: this module's API)
from ..errors import UsageError
from .engine import backbone_pass, traced  # noqa: F401 (traced: this module's API, the Beam workers' pass)
from .featurecache import CACHE_FORMAT, MIRROR, SHARD_ROWS, FeatureCache, default_cache_dir, is_url  # noqa: F401 (API)

POLL_SECONDS = 2.0  # how often a waiting worker looks at the index for the other workers' shares


def scan_memo_dir(config: TrainConfig) -> Path:
    """Where the training scan keeps its verdicts on files (pipeline.ScanMemo): beside the cached features when they
    are in a local folder, else in the local default cache (the memo is about this machine's files)."""
    folder = config.cache_dir if config.cache_dir and not is_url(config.cache_dir) else default_cache_dir()
    return Path(folder) / "scan"


def feature_cache_applies(config: TrainConfig) -> bool:
    """Only a frozen backbone has fixed features; `--weights none` trains the backbone itself."""
    return config.feature_cache and config.transfer


def cached_features(
    extract, passes: list, cache: FeatureCache, config: TrainConfig, log: Log = say, on_progress=None
) -> list[np.ndarray]:
    """Features (N, D) of every image of each pass ((split, its content hashes, copy), as `feature_passes` lists
    them), computing and caching the missing ones in one backbone pass over them all (`compute`).

    `extract` is the extractor's batch call (engine.backbone_pass); `extract.shape` the shape of one image's vector.
    `on_progress` is `console.Progress`'s `on_update`, called after each batch of the backbone pass."""
    keys = pass_keys(passes, cache)
    found = iter(cache.read([key for entries in keys for key in entries]))  # one look at the index for every pass
    # Cut back into passes; a vector of another shape is a miss.
    rows = [
        [row if row is None or row.shape == extract.shape else None for row in (next(found) for _ in entries)]
        for entries in keys
    ]
    missing = [[i for i, row in enumerate(pass_rows) if row is None] for pass_rows in rows]
    computed = compute(extract, passes, keys, missing, cache, config, log, on_progress)
    for pass_rows, vectors in zip(rows, computed, strict=True):
        for i, row in vectors.items():
            pass_rows[i] = row
    return [np.stack(pass_rows) for pass_rows in rows]


def pass_keys(passes: list, cache: FeatureCache) -> list[list[tuple[str, str]]]:
    """The cache keys of each pass's images, pass by pass."""
    return [[(sha, cache.variant(copy)) for sha in hashes] for _, hashes, copy in passes]


def _merged_passes(passes: list, todo: list) -> tuple[Split, np.ndarray, dict]:
    """The passes' images as one split, each split once (the training passes share theirs); which (image, copy) of it
    are wanted; and for each the pass entry it computes: (pass, index into its split)."""
    offsets: dict[int, int] = {}  # id(split) -> where its images start
    paths, orientations, hashes = [], [], []
    for split, split_hashes, _ in passes:
        if id(split) not in offsets:
            offsets[id(split)] = len(paths)
            paths, orientations, hashes = paths + split.paths, orientations + split.orientations, hashes + split_hashes
    images = Split(paths, [0] * len(paths), orientations, hashes)  # labels: not part of a feature
    wanted = np.zeros((len(images), 1 + max(_column(copy) for _, _, copy in passes)), bool)
    entry = {}  # (image, copy) -> (pass, index into its split)
    for p, ((split, _, copy), indices) in enumerate(zip(passes, todo, strict=True)):
        for i in indices:
            wanted[offsets[id(split)] + i, _column(copy)] = True
            entry[offsets[id(split)] + i, _column(copy)] = (p, i)
    return images, wanted, entry


def _column(copy: int | str) -> int:
    """The pipeline's copy that a pass's copy reads: a MIRROR pass reads the image as it is (copy 0), which its own
    extractor mirrors (`mirrored_features`), so it is computed alone, never beside a pass of copy 0."""
    return 0 if copy == MIRROR else copy


def compute(
    extract, passes: list, keys: list, todo: list, cache: FeatureCache, config: TrainConfig, log: Log, on_progress=None
) -> list[dict[int, np.ndarray]]:
    """The vectors of the images at `todo[p]` (indices into its split) of each pass p, written to the cache under
    their `keys[p]`, by ONE input pipeline for them all: each image decoded once, its clean and augmented copies
    made from it, the backbone fed batches that may mix them. Each pass's vectors go to its own shards, one per
    SHARD_ROWS of them, written by a second thread while the backbone runs on the next batch.

    What was computed is written even when the pass stops early (Ctrl-C, a failing batch)."""
    for (_, _, copy), indices, entries in zip(passes, todo, keys, strict=True):
        if indices:
            what = "images" if copy == 0 else "mirror images" if copy == MIRROR else f"augmented copy {copy}"
            log(f"feature cache: computing {len(indices)} of {len(entries)} ({what}) into {cache.root}")
    results: list[dict[int, np.ndarray]] = [{} for _ in passes]  # per pass: image index -> its vector
    total = sum(map(len, todo))
    if not total:
        return results
    images, wanted, entry = _merged_passes(passes, todo)
    extract.start(total)  # LiteRT or TensorFlow, now that the pass's size is known (engine.py)

    progress = Progress("backbone features", total, log=log, unit="images", on_update=on_progress)
    pending: list[list[int]] = [[] for _ in passes]  # per pass: indices computed, not yet handed to the writer
    writes, done = [], 0
    with ThreadPoolExecutor(max_workers=1) as writer:

        def flush(p: int) -> None:  # pass p's pending vectors as one shard
            block = np.stack([results[p][i] for i in pending[p]])
            writes.append(writer.submit(cache.write, [keys[p][i] for i in pending[p]], block))
            pending[p] = []

        try:
            for vectors, rows, copies in backbone_batches(extract, images, config, wanted):
                for vector, row, copy in zip(vectors, rows, copies, strict=True):
                    p, i = entry[row, copy]
                    results[p][i] = vector
                    pending[p].append(i)
                    if len(pending[p]) == SHARD_ROWS:
                        flush(p)
                done += len(vectors)
                progress.update(done)
        finally:
            for p in range(len(passes)):
                if pending[p]:
                    flush(p)
    for write in writes:
        write.result()  # a failed write (disk full) fails the run here
    progress.close()
    return results


def backbone_batches(extract, split: Split, config: TrainConfig, wanted):
    """The feature vectors of every pair (image i of `split`, copy k) with `wanted[i][k]` true, in order of images
    then copies: per batch of `config.batch_size` pairs, a float32 (n, D) array with the pairs' image indices and
    copies ((n,) arrays each). Copy 0 is the image as it is, copy k >= 1 `augment.augment_image` drawn from the
    seed (`config.seed` + k, the image's content hash): an image's copy k is the same draw
    whatever images, order, batches or worker it is computed with. Also the Beam runner's computation
    (classifier/batch/features.py)."""
    seeds = [int(sha[:15], 16) for sha in split.content_hashes()]  # 60 bits of each image's sha256: an int64
    augment = augmentation(tuple(getattr(config, name) for name in AUGMENTATION_FIELDS), config.seed)
    batches = copies_dataset(split, wanted, config.image_shape, config.batch_size, augment, seeds)
    for images, rows, copies in batches:
        yield np.asarray(extract(images), np.float32), rows.numpy(), copies.numpy()


@functools.lru_cache(maxsize=4)
def augmentation(settings: tuple, seed: int):
    """`backbone_batches`' augment(image, copy, image seed) for the AUGMENTATION_FIELDS values `settings`, one
    object per settings and seed, so that pipeline.copies_dataset reuses its traced step (pipeline.image_copies)."""
    knobs = SimpleNamespace(**dict(zip(AUGMENTATION_FIELDS, settings, strict=True)))

    def augment(image, copy, image_seed):
        return augment_image(image, knobs, tf.stack([tf.constant(seed, tf.int64) + copy, image_seed]))

    return augment


def feature_passes(data, config: TrainConfig) -> list[tuple[Split, list[str], int]]:
    """The backbone passes a training run reads, in order, as (split, its content hashes, copy): the training
    images as they are and as each augmented copy, then the validation images as they are."""
    copies = range(0, 1 + (config.augment_copies if config.augment else 0))
    train_hashes = data.train.content_hashes()
    return [(data.train, train_hashes, k) for k in copies] + [(data.validation, data.validation.content_hashes(), 0)]


def training_features(
    extractor, data, config: TrainConfig, log: Log = say, share=None, on_progress=None, in_subprocess: bool = False
):
    """(x_train, y_train, x_val, y_val) from the cache: train = clean + each augmented copy (`on_progress`: see
    `cached_features`). The backbone pass runs in LiteRT or TensorFlow (engine.py; `in_subprocess`: a conversion
    runs in a child process, for a server).

    With `share` (a distribute.FeatureShare: a multi-worker run) this worker first computes only its share of
    the entries the cache lacks. One that does not train (`share.trains` false) stops there and gets None; one
    that trains waits until the cache holds every worker's share, then reads them all (computing itself any
    entry that turns out damaged)."""
    cache = FeatureCache.for_config(config)
    extract = backbone_pass(extractor, config.image_shape, config, log, in_subprocess)
    passes = feature_passes(data, config)
    if share is not None:
        keys = pass_keys(passes, cache)
        absent = set(cache.missing([key for entries in keys for key in entries]))
        owners = {id(split): share.owners(hashes) for split, hashes, _ in passes}  # per split: each image's worker
        mine = [
            [i for i, key in enumerate(entries) if key in absent and owners[id(split)][i] == share.index]
            for (split, _, _), entries in zip(passes, keys, strict=True)
        ]
        compute(extract, passes, keys, mine, cache, config, log, on_progress)
        if not share.trains:
            return None
        wait_for_shares(cache, passes, share, config.worker_timeout, log)
    vectors = cached_features(extract, passes, cache, config, log, on_progress)
    y_train = np.tile(np.asarray(data.train.labels), len(passes) - 1)  # every pass but validation's
    return np.concatenate(vectors[:-1]), y_train, vectors[-1], np.asarray(data.validation.labels)


def mirrored_features(
    extractor, split: Split, config: TrainConfig, log: Log = say, on_progress=None, in_subprocess: bool = False
) -> np.ndarray:
    """Features (N, D) of each image of `split` mirrored left-right, for test-time flips (model/flips.py): cached as
    the variant MIRROR, computed by a pass of their own whose extractor mirrors each batch of images (in LiteRT or
    TensorFlow, as engine.backbone_pass chooses)."""
    extract = backbone_pass(extractor, config.image_shape, config, log, in_subprocess)

    def mirrored(images):
        return extract(np.flip(np.asarray(images), axis=2))  # (N, H, W, 3): axis 2 is the width

    mirrored.shape, mirrored.start = extract.shape, extract.start
    passes = [(split, split.content_hashes(), MIRROR)]
    return cached_features(mirrored, passes, FeatureCache.for_config(config), config, log, on_progress)[0]


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
