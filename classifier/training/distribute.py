"""Where training runs and at what precision: TensorFlow's own strategies, chosen by the config.

    --strategy default       one device (TensorFlow's default strategy)
    --strategy mirrored      tf.distribute.MirroredStrategy over every local GPU (with no GPU, over
                             the logical CPU devices: one, unless the process split the CPU)
    --strategy multi-worker  several machines, cluster and role from TF_CONFIG (below)
    --mixed-precision        Keras' mixed_float16 policy, GPUs only; the softmax output stays float32

The model is built and compiled under `strategy.scope()` and Keras' `fit` does the rest: each
`--batch-size` batch is the global batch, split across replicas, and nothing is scaled by hand.

Multi-worker with the feature cache (a frozen backbone): the cost is the backbone pass, so the
workers share it (`FeatureShare`): each computes its share of the missing entries into the shared
`--cache-dir`. Without fine-tuning only the chief then trains the head, in one process under the
default strategy (plain Keras, no patch), and the other workers stop once their share is written.
Fine-tuning, or training on images (`--no-feature-cache`, `--weights none`), runs under
tf.distribute.MultiWorkerMirroredStrategy, where Keras 3 cannot start `fit` (keras-team/keras#20585):
`compat.multi_worker_fit` patches the two Keras steps that fail on that path alone, and training
itself stays Keras' and tf.distribute's. Only the chief keeps the model folder (`worker_out_dir`); a
taken port or a lost worker is one `error:` line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .._tf import keras, tf
from ..console import Log, say
from ..errors import UsageError
from .features import feature_cache_applies

STRATEGIES = ("default", "mirrored", "multi-worker")


def distribution_strategy(config, log: Log = say) -> "tf.distribute.Strategy":
    """The tf.distribute strategy `config.strategy` names; checks TF_CONFIG and mixed precision first."""
    if config.strategy not in STRATEGIES:
        raise UsageError(f"--strategy {config.strategy}: choose one of {', '.join(STRATEGIES)}")
    if config.mixed_precision and not tf.config.list_physical_devices("GPU"):
        raise UsageError(
            "--mixed-precision: TensorFlow sees no GPU, and float16 on a CPU is slower, not faster; drop the option "
            "on this machine"
        )
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    tf_config = read_tf_config()
    task, cluster = tf_config["task"], tf_config["cluster"]
    workers = sum(len(cluster.get(role) or []) for role in ("chief", "worker"))
    if chief_trains_alone(config):
        log(
            f"strategy: multi-worker, {task['type']} {task.get('index', 0)} of {workers} in TF_CONFIG: the workers "
            "share the feature pass, then the chief trains the head alone"
        )
        return tf.distribute.get_strategy()
    log(
        f"strategy: multi-worker, {task['type']} {task.get('index', 0)} of {workers} in TF_CONFIG; waiting until "
        "every worker has joined"
    )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except tf.errors.OpError as error:  # e.g. "Could not start gRPC server": the port is taken
        address = cluster[task["type"]][task.get("index", 0)]
        raise UsageError(
            f"TF_CONFIG: TensorFlow could not start {task['type']} {task.get('index', 0)} at {address} "
            f"({error.message}); "
            "the address must be this machine's and its port free"
        ) from None


def chief_trains_alone(config) -> bool:
    """Multi-worker with the feature cache and no fine-tuning: the workers share the feature pass, then the chief
    trains the head on its own (no MultiWorkerMirroredStrategy)."""
    return config.strategy == "multi-worker" and feature_cache_applies(config) and not config.fine_tune_epochs


@dataclass(frozen=True)
class FeatureShare:
    """This worker's part of a multi-worker feature pass. Of each pass's distinct images, sorted by content
    sha256, worker i computes every `workers`-th one from position i (those the cache lacks): every worker
    splits alike, whatever the cache held when it started."""

    index: int  # 0 is the chief: the `chief` task if the cluster has one, else worker 0
    workers: int
    trains: bool  # whether this worker trains afterwards (so it waits for the other shares)

    def owners(self, hashes: list[str]) -> list[int]:
        """The worker whose share each image (by content sha256) is."""
        position = {sha: i for i, sha in enumerate(sorted(set(hashes)))}
        return [position[sha] % self.workers for sha in hashes]


def feature_share(config) -> FeatureShare | None:
    """This worker's share of the feature pass in a multi-worker run with the feature cache; None otherwise.
    Refuses (one line) a TF_CONFIG it cannot use and a missing --cache-dir."""
    if config.strategy != "multi-worker" or not feature_cache_applies(config):
        return None
    tf_config = read_tf_config()
    if not config.cache_dir:
        raise UsageError(
            "--strategy multi-worker: set --cache-dir to one folder every worker reaches (a shared folder, or a gs:// "
            "or s3:// path): each worker computes its share of the backbone features there"
        )
    task, cluster = tf_config["task"], tf_config["cluster"]
    chiefs, workers = cluster.get("chief") or [], cluster.get("worker") or []
    index = task.get("index", 0) + (0 if task["type"] == "chief" else len(chiefs))
    return FeatureShare(index, len(chiefs) + len(workers), trains=index == 0 or not chief_trains_alone(config))


def replica_batch_size(batch_size: int, images: int, strategy, flag: str = "--batch-size") -> int:
    """A batch size for a split of `images` whose every batch gives each replica at least one image,
    and whose first batch divides evenly over the replicas.

    Keras 3.15 under tf.distribute fails otherwise: fit/evaluate reduce the first batch across
    replicas to build the model ("Inputs to operation AddN ... [8,75,75,3] != [7,75,75,3]"), and a
    replica handed an empty share of a last, short batch fails in BatchNormalization. So the global
    batch must be a multiple of the replicas, and where a split's last batch would leave a replica
    empty, a smaller multiple is used for that split. `flag` is the option that set `batch_size`.
    """
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return batch_size
    if batch_size % replicas:
        raise UsageError(
            f"{flag} {batch_size}: with {replicas} replicas in sync it must be a multiple of {replicas} "
            f"(every replica takes an equal share), e.g. {(batch_size // replicas + 1) * replicas}"
        )
    for size in range(min(batch_size, images // replicas * replicas), 0, -replicas):
        if images % size == 0 or images % size >= replicas:
            return size
    raise UsageError(
        f"--data: a split of {images} image(s) cannot give each of {replicas} replicas a share of every batch; add "
        "images or train on fewer devices"
    )


def read_tf_config() -> dict:
    """TF_CONFIG as a dict, refusing (one line, naming what is wrong) anything MultiWorkerMirroredStrategy
    cannot use."""
    raw = os.environ.get("TF_CONFIG", "")
    hint = 'e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
    if not raw.strip():
        raise UsageError(
            f"--strategy multi-worker: set TF_CONFIG on every worker to the cluster and that worker's task, {hint}"
        )
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise UsageError(f"TF_CONFIG: not valid JSON ({error}); {hint}") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not any(
        isinstance(cluster.get(role), list) and cluster[role] for role in ("chief", "worker")
    ):
        raise UsageError(f"TF_CONFIG: cluster lists no worker addresses; {hint}")
    if not isinstance(task, dict) or task.get("type") not in ("chief", "worker"):
        raise UsageError(f"TF_CONFIG: task must have type worker (or chief) and an index; {hint}")
    addresses = cluster.get(task["type"]) or []
    index = task.get("index", 0)
    if not isinstance(index, int) or not 0 <= index < len(addresses):
        raise UsageError(
            f"TF_CONFIG: task index {index} is not one of the cluster's {len(addresses)} {task['type']} address(es)"
        )
    return tf_config


# What TensorFlow's collectives raise when another worker dies or stops answering mid-run.
WORKER_LOST = (
    tf.errors.UnavailableError,
    tf.errors.AbortedError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
)


def worker_lost(error: Exception, kept: str) -> UsageError:
    """The one line for a multi-worker run that lost a worker; `kept` says how to resume ("" if nothing is kept)."""
    cause = (
        "--strategy multi-worker: another worker failed or stopped answering "
        f"({type(error).__name__}; see that worker's output)"
    )
    return UsageError(
        f"{cause}; {kept} (on every worker)"
        if kept
        else f"{cause}; no epoch had completed, so start every worker again"
    )


def is_chief(strategy) -> bool:
    """Whether this process writes the model: always, except on the non-chief workers of a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


@contextlib.contextmanager
def worker_out_dir(out: Path, strategy) -> Iterator[Path]:
    """Where this worker saves: `out` on the chief, a temporary folder deleted afterwards elsewhere.

    Every worker takes part in saving (TensorFlow's multi-worker guide), but only the chief's copy is kept.
    """
    if is_chief(strategy):
        yield out
        return
    scratch = Path(tempfile.mkdtemp(prefix="classifier-worker-"))
    try:
        yield scratch / out.name
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def precision_policy(mixed: bool) -> Iterator[None]:
    """Build layers under mixed_float16 when `mixed` (compile then adds loss scaling); restore the policy after."""
    if not mixed:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def describe(strategy, config, share: FeatureShare | None = None) -> dict:
    """What metadata.json records about where and how the model trained (and how many workers shared the
    feature pass)."""
    try:
        devices = list(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError, NotImplementedError):
        devices = []
    return {
        "strategy": config.strategy,
        "replicas": int(strategy.num_replicas_in_sync),
        "devices": devices,
        "mixed_precision": bool(config.mixed_precision),
        "feature_pass_workers": share.workers if share else 1,
    }
