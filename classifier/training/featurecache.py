"""The feature cache's storage: backbone feature vectors in shard files plus an index, on any filesystem
`tf.io.gfile` reaches (a local or shared folder; `gs://`, and `s3://` where tensorflow-io registers it).

An entry is one float32 vector keyed by (content sha256 of the image file, variant): variant "clean" is
the image as it is, "aug-<augmentation key>-<k>" its k-th augmented copy, "mirror" the image mirrored left-right
(test-time flips). Per model configuration:

    <cache dir>/<backbone>-<model key>/shards/<name>.npy   up to SHARD_ROWS vectors: one float32 array (rows, *shape)
    <cache dir>/<backbone>-<model key>/index/<name>.json   that shard's index segment: the key of each row ("sha
                                                           variant" lines in one string, quick to parse), the
                                                           vector shape, the shard's crc32, who wrote it

The whole API, numpy in and numpy out, with no TensorFlow state (any process may fill a cache, e.g.
the Beam pipeline of classifier.batch_predict):

    cache = FeatureCache.for_config(config)     # or FeatureCache(root, augmentation) for a folder or URL
    cache.variant(copy) -> str                  # "clean" for copy 0, "mirror" for MIRROR, else that augmented copy's
    cache.missing(keys) -> list[key]            # the keys (sha256, variant) the index lacks, in order, once each
    cache.write(keys, vectors) -> list[str]     # adds entries: one shard and its segment per SHARD_ROWS of them
    cache.read(keys) -> list[array | None]      # each key's vector, None where absent or unreadable

Why it is safe to share, even between machines writing at once:
- Nothing is ever rewritten. Each `write` puts a new shard, then its segment, each under a temporary
  name renamed into place; the segment is the commit, so a reader never sees half an entry. Names are
  unique per writer (random) and call, so concurrent writers never collide; readers merge every segment.
- Entries are content-addressed: the same photo in another dataset, or a rerun, finds its entry; an
  edited photo gets a new sha256, so only it is computed again. Two writers computing the same key
  add two identical copies; either serves.
- Damage is a miss, never a crash: a segment that does not parse is skipped; a segment whose shard is
  gone is deleted (healed); a shard that is truncated, fails its crc32 or has the wrong shape is
  skipped. Their entries read as None (another copy of the key is used if the index has one) and are
  computed and written again.

Old caches (CACHE_FORMAT 4 and before: one `.npy` per entry) live in other folders, since the model
key hashes the format, and are never read; delete them. Only local folders and TensorFlow's in-memory
`ram://` filesystem were tried here; `gs://` and `s3://` go through the same calls, untested.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import secrets
import socket
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._tf import keras, tf
from ..config import user_cache_dir
from ..data.augment import AUGMENTATION_FIELDS
from ..model.backbones import backbone_key, weights_key

# Part of every model key: bump it whenever decoding, resizing, augmentation or this layout changes what an entry is.
CACHE_FORMAT = 5  # 5: shards with an index (4: augmentation as ImageDataGenerator's, one .npy per entry)
SHARD_ROWS = 4096  # vectors per shard file at most: file count, listings and requests stay small
CLEAN = "clean"  # the variant of an image as it is
MIRROR = "mirror"  # the variant (and a feature pass's copy) of an image mirrored left-right: test-time flips

Key = tuple[str, str]  # (content sha256, variant)
gfile = tf.io.gfile
# What tf.io.gfile raises for a missing, unreadable or unwritable file.
FILE_ERRORS = (tf.errors.OpError, OSError)


def join(*parts: str) -> str:
    """A path or URL under a folder (`gs://bucket/x` keeps its double slash)."""
    return "/".join([parts[0].rstrip("/"), *parts[1:]])


def is_url(path) -> bool:
    return "://" in str(path)


def default_cache_dir() -> Path:
    return user_cache_dir("features")


def cache_dir(config) -> str:
    """The cache folder (or URL) a config names: --cache-dir, or the user's default."""
    return str(config.cache_dir or default_cache_dir())


def model_key(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Segment:
    """One index segment: the keys of its shard's rows, their vector shape, the shard's crc32 and its writer."""

    keys: list[Key]
    shape: tuple[int, ...]
    crc32: int
    writer: str

    @classmethod
    def parse(cls, data: bytes) -> "Segment":
        """The segment in `data`; ValueError (or TypeError, KeyError, AttributeError) when it is not one."""
        raw = json.loads(data)
        words = raw["keys"].split()  # "sha variant" per row
        if len(words) % 2:
            raise ValueError("an index segment's keys come in pairs")
        return cls(
            list(zip(words[0::2], words[1::2], strict=True)),
            tuple(int(n) for n in raw["shape"]),
            int(raw["crc32"]),
            raw["writer"],
        )

    def dump(self) -> bytes:
        keys = "".join(f"{sha} {variant}\n" for sha, variant in self.keys)
        return json.dumps({"keys": keys, "shape": self.shape, "crc32": self.crc32, "writer": self.writer}).encode()


@dataclass
class FeatureCache:
    """Feature vectors of one model configuration under `root` (a folder or URL); see the module docstring."""

    root: str
    augmentation: str = ""  # key of the augmentation settings, part of augmented copies' variants
    writer: str = field(default_factory=lambda: f"{socket.gethostname()} pid {os.getpid()}")  # recorded per segment
    # Parsed segments by name: a segment never changes once written, so each is read once per process.
    _segments: dict[str, Segment] = field(default_factory=dict, repr=False)
    # The index merged from the segments last listed: (their names, first place of each key, further places).
    _merged: tuple = field(default=((), {}, {}), repr=False)
    # This writer's file names: random per instance, numbered per shard.
    _names: itertools.count = field(default_factory=itertools.count, repr=False)
    _prefix: str = field(default_factory=lambda: secrets.token_hex(8), repr=False)

    @classmethod
    def for_config(cls, config) -> "FeatureCache":
        """The cache of a resolved config (as `metadata.json` saves it)."""
        backbone = backbone_key(config.backbone)  # a keras: file by its content, wherever it lies
        folder = re.sub(r"[^\w.-]+", "_", backbone)[:40]  # hub:https://... as a folder name
        augmentation = model_key({name: getattr(config, name) for name in AUGMENTATION_FIELDS})
        key = model_key(
            {
                "format": CACHE_FORMAT,
                "backbone": backbone,
                "cut_layer": config.cut_layer,
                "weights": weights_key(config.backbone, config.weights, config.alpha),
                "image_size": config.image_shape,
                "pooling": config.head_pooling,
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
            }
        )
        return cls(join(cache_dir(config), f"{folder}-{key}"), augmentation)

    def variant(self, copy: int | str) -> str:
        """Copy 0 is the image itself; copies 1..K are augmented variants; MIRROR is the image mirrored left-right."""
        return CLEAN if copy == 0 else MIRROR if copy == MIRROR else f"aug-{self.augmentation}-{copy}"

    def missing(self, keys) -> list[Key]:
        """The keys the index lacks, in order, each once. (An entry whose shard turns out damaged is not
        among them: `read` gives None for it.)"""
        first, _ = self._index()
        return list(dict.fromkeys(key for key in map(tuple, keys) if key not in first))

    def write(self, keys, vectors) -> list[str]:
        """Add an entry per key (vectors: (len(keys), *shape), made float32): one shard, then its index
        segment, per SHARD_ROWS entries; the names of the shards written."""
        keys = [(str(sha), str(variant)) for sha, variant in keys]
        vectors = np.ascontiguousarray(vectors, np.float32)
        if len(vectors) != len(keys):
            raise ValueError(f"FeatureCache.write: {len(keys)} keys but {len(vectors)} vectors")
        if any(len(sha.split()) != 1 or len(variant.split()) != 1 for sha, variant in keys):
            raise ValueError("FeatureCache.write: a sha256 or variant is empty or holds whitespace")
        names = []
        for start in range(0, len(keys), SHARD_ROWS):
            name = f"{self._prefix}-{next(self._names):06d}"
            buffer = io.BytesIO()
            np.save(buffer, vectors[start : start + SHARD_ROWS])
            shard = buffer.getvalue()
            segment = Segment(keys[start : start + SHARD_ROWS], vectors.shape[1:], zlib.crc32(shard), self.writer)
            _put(join(self.root, "shards", f"{name}.npy"), shard)  # the shard first: a segment is the commit
            _put(join(self.root, "index", f"{name}.json"), segment.dump())
            names.append(name)
        return names

    def read(self, keys) -> list[np.ndarray | None]:
        """Each key's vector, or None where the index lacks it or every shard holding it is unreadable."""
        first, more = self._index()
        keys = [tuple(key) for key in keys]
        vectors: list[np.ndarray | None] = [None] * len(keys)
        shards: dict[str, np.ndarray | None] = {}  # loaded (None: unreadable) during this call
        for attempt in itertools.count():  # the first copy of each key, then the next where that one failed
            wanted: dict[str, list[tuple[int, int]]] = {}
            for i, key in enumerate(keys):
                extra = more.get(key, ()) if attempt else ()
                place = first.get(key) if attempt == 0 else extra[attempt - 1] if attempt <= len(extra) else None
                if vectors[i] is None and place is not None:
                    wanted.setdefault(place[0], []).append((i, place[1]))
            if not wanted:
                return vectors
            for name, rows in wanted.items():
                if name not in shards:
                    shards[name] = self._load_shard(name)
                if shards[name] is not None:
                    for i, row in rows:
                        vectors[i] = shards[name][row]

    def segments(self) -> dict[str, Segment]:
        """Every readable index segment (keys, shape, crc32, writer), by name: for inspection."""
        self._index()
        return dict(self._segments)

    def _index_names(self) -> list[str]:
        return sorted(_list(join(self.root, "index"), ".json"))

    def _index(self) -> tuple[dict[Key, tuple[str, int]], dict[Key, list[tuple[str, int]]]]:
        """Each key's first place (shard name, row) and its further places, if stored more than once, merged from
        every segment; reads only segments not seen before, and merges again only when the listing changed."""
        names = self._index_names()
        shards = set(_list(join(self.root, "shards"), ".npy"))  # listed after the index: a shard precedes its segment
        for name in names:
            if name not in shards:  # its shard is gone: drop the segment (heal), its entries get computed again
                _remove(join(self.root, "index", f"{name}.json"))
                self._segments.pop(name, None)
            elif name not in self._segments:
                try:
                    self._segments[name] = Segment.parse(_get(join(self.root, "index", f"{name}.json")))
                except (*FILE_ERRORS, ValueError, TypeError, KeyError, AttributeError):  # not a segment: skipped
                    pass
        usable = tuple(name for name in names if name in shards and name in self._segments)
        for gone in self._segments.keys() - set(usable):
            del self._segments[gone]
        if usable != self._merged[0]:
            first: dict[Key, tuple[str, int]] = {}
            more: dict[Key, list[tuple[str, int]]] = {}
            for name in usable:
                places = {key: (name, row) for row, key in enumerate(self._segments[name].keys)}
                for key in first.keys() & places.keys():  # stored again (two writers, or a recomputed entry)
                    more.setdefault(key, []).append(places.pop(key))
                first.update(places)
            self._merged = (usable, first, more)
        return self._merged[1], self._merged[2]

    def _load_shard(self, name: str) -> np.ndarray | None:
        """A shard's vectors, or None when it does not match its segment (absent, truncated, altered)."""
        segment = self._segments[name]
        try:
            data = _get(join(self.root, "shards", f"{name}.npy"))
            if zlib.crc32(data) != segment.crc32:
                return None
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (*FILE_ERRORS, ValueError, EOFError):
            return None
        return array if array.dtype == np.float32 and array.shape == (len(segment.keys), *segment.shape) else None


def _get(path: str) -> bytes:
    with gfile.GFile(path, "rb") as file:
        return file.read()


def _put(path: str, data: bytes) -> None:
    """`data` at `path` through a temporary name and a rename: readers see the whole file or none."""
    temporary = f"{path}.tmp-{secrets.token_hex(4)}"
    gfile.makedirs(path.rsplit("/", 1)[0])
    try:
        with gfile.GFile(temporary, "wb") as file:
            file.write(data)
        gfile.rename(temporary, path, overwrite=True)  # (names are unique; some filesystems refuse otherwise)
    finally:
        if gfile.exists(temporary):
            gfile.remove(temporary)


def _remove(path: str) -> None:
    try:
        gfile.remove(path)
    except FILE_ERRORS:  # another reader healed it first
        pass


def _list(folder: str, suffix: str) -> list[str]:
    """The names (without `suffix`) of the files in `folder` ending in `suffix`; none if it does not exist."""
    try:
        names = gfile.listdir(folder)
    except tf.errors.NotFoundError:
        return []
    return [name[: -len(suffix)] for name in names if name.endswith(suffix)]
