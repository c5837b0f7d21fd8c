"""Training on tf.distribute: mirrored over two logical CPUs and two workers on localhost for real,
and the checks around it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import MOBILENET_STEM, ROOT, TINY, run_main, tiny_config

from classifier import train as train_module
from classifier._tf import keras, tf
from classifier.config import TrainConfig
from classifier.errors import UsageError
from classifier.model.network import build_model
from classifier.predict import Predictor
from classifier.shapes import make_shapes_dataset
from classifier.training.distribute import is_chief, precision_policy, replica_batch_size
from classifier.training.features import FeatureCache

# The strategy is under test, not the network: the smallest one, which trains from scratch.
FROM_SCRATCH = dict(backbone="simple_cnn", cut_layer="top", image_size=16)


def _flags(**overrides):
    flags = []
    for name, value in {**TINY, **overrides}.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def test_mirrored_strategy_trains_over_two_logical_cpu_devices(tmp_path, shapes_dir):
    out = tmp_path / "mirrored"
    argv = [
        sys.executable,
        str(ROOT / "tests" / "logical_cpus.py"),
        "2",
        "--data",
        str(shapes_dir),
        "--out",
        str(out),
        "--strategy",
        "mirrored",
        "--epochs",
        "1",
        "--no-augment",
        *_flags(**FROM_SCRATCH),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "strategy: mirrored, 2 replica(s) in sync" in done.stdout
    distribution = json.loads((out / "metadata.json").read_text())["distribution"]
    assert distribution["strategy"] == "mirrored" and distribution["replicas"] == 2
    assert [device.rsplit("/", 1)[-1] for device in distribution["devices"]] == ["device:CPU:0", "device:CPU:1"]
    probabilities = Predictor(out).predict_proba(sorted(shapes_dir.glob("*/*.png"))[:4])
    assert probabilities.shape == (4, 3) and np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all bound at once, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _run_workers(argv, tmp_path, workers: int, timeout: float) -> list[tuple[int, str, str]]:
    """Run `argv` as every worker of a localhost cluster (its own TF_CONFIG, `{index}` in argv
    filled in); (exit code, stdout, stderr) per worker. A worker that fails stops the others, which
    would otherwise wait for it until the timeout."""
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(workers)]}
    processes, logs = [], []
    for index in range(workers):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        out, err = tmp_path / f"worker{index}.out", tmp_path / f"worker{index}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            processes.append(
                subprocess.Popen(
                    [arg.format(index=index) for arg in argv],
                    cwd=ROOT,
                    env=env,
                    stdout=stdout,
                    stderr=stderr,
                    text=True,
                )
            )
        logs.append((out, err))
    deadline = time.monotonic() + timeout
    while any(process.poll() is None for process in processes):
        if time.monotonic() > deadline or any(process.poll() for process in processes):
            break
        time.sleep(0.5)
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
    return [
        (process.returncode, out.read_text(), err.read_text())
        for process, (out, err) in zip(processes, logs, strict=True)
    ]


def _worker_command(tmp_path, data) -> list[str]:
    """Training on `data` as a worker of a multi-worker run (`{index}` in its --out), with one shared cache."""
    return [
        sys.executable,
        "-m",
        "classifier.train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "worker{index}"),
        "--strategy",
        "multi-worker",
        "--cache-dir",
        str(tmp_path / "cache"),  # one cache for every worker: each computes its share of the features
        "--no-augment",  # (an augmented copy is a random draw per pass: which worker draws it changes it)
    ]


def test_multi_worker_strategy_trains_two_workers_on_localhost(tmp_path, shapes_dir, random_mobilenet_weights):
    """Fine-tuning: two worker processes under MultiWorkerMirroredStrategy, one replica each. They share the
    feature pass, the head trains on the cached features in sync and fine-tuning on images (a tf.data
    pipeline); only worker 0 keeps the model."""
    argv = [
        *_worker_command(tmp_path, shapes_dir),
        "--epochs",
        "1",
        "--fine-tune-epochs",
        "1",
        "--fine-tune-from",
        "block_1_expand",  # the stem's last convolution
        *_flags(**MOBILENET_STEM, weights=random_mobilenet_weights),
    ]
    (code0, out0, err0), (code1, out1, err1) = _run_workers(argv, tmp_path, workers=2, timeout=300)
    assert code0 == 0 and code1 == 0, f"worker 0: {err0[-2000:]}\nworker 1: {err1[-2000:]}"
    assert "strategy: multi-worker, 2 replica(s) in sync" in out0 and "fine-tuning:" in out0
    assert _computed(out0) + _computed(out1) == len(sorted(shapes_dir.glob("*/*.png")))  # each image once
    epochs = [re.sub(r"\(.*? s\)", "", line) for line in out0.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and epochs == [
        re.sub(r"\(.*? s\)", "", line) for line in out1.splitlines() if line.startswith("epoch ")
    ]  # metrics all-reduced
    assert "the chief worker saves the model" in out1
    assert not (tmp_path / "worker1").exists() and not (tmp_path / "worker1.checkpoint").exists()
    out = tmp_path / "worker0"
    assert not (tmp_path / "worker0.checkpoint").exists()
    distribution = json.loads((out / "metadata.json").read_text())["distribution"]
    assert distribution["strategy"] == "multi-worker" and distribution["replicas"] == 2
    probabilities = Predictor(out).predict_proba(sorted(shapes_dir.glob("*/*.png"))[:4])
    assert probabilities.shape == (4, 3) and np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def _computed(out: str) -> int:
    """How many feature vectors a worker's output says it computed."""
    return sum(int(line.split()[3]) for line in out.splitlines() if line.startswith("feature cache: computing"))


def test_two_workers_share_the_feature_pass_and_the_chief_trains_as_one_worker_would(
    tmp_path, shapes_dir, random_mobilenet_weights
):
    """The default multi-worker path: each worker computes half of the features into one cache, then worker 0
    alone trains the head (no MultiWorkerMirroredStrategy); its model predicts as a single worker's does."""
    options = dict(**MOBILENET_STEM, weights=str(random_mobilenet_weights), epochs=2)
    argv = [*_worker_command(tmp_path, shapes_dir), *_flags(**options)]
    (code0, out0, err0), (code1, out1, err1) = _run_workers(argv, tmp_path, workers=2, timeout=300)
    assert code0 == 0 and code1 == 0, f"worker 0: {err0[-2000:]}\nworker 1: {err1[-2000:]}"
    assert "the chief (worker 0) trains the head and writes the model" in out1 and "epoch 1/2" not in out1
    assert not (tmp_path / "worker1").exists() and "epoch 2/2" in out0
    images = sorted(shapes_dir.glob("*/*.png"))
    assert _computed(out0) + _computed(out1) == len(images) and abs(_computed(out0) - _computed(out1)) <= 2
    # The index segments say the same: who wrote how many entries.
    metadata = json.loads((tmp_path / "worker0" / "metadata.json").read_text())
    cache = FeatureCache.for_config(TrainConfig.from_dict(metadata["config"]))
    written = Counter()
    for segment in cache.segments().values():
        written[segment.writer] += len(segment.keys)
    assert sorted(written.values()) == sorted([_computed(out0), _computed(out1)])
    assert metadata["distribution"]["replicas"] == 1 and metadata["distribution"]["feature_pass_workers"] == 2

    own = dict(augment=False, cache_dir=str(tmp_path / "own"), feature_engine="tensorflow")  # as the workers' pass
    config = tiny_config(shapes_dir, tmp_path / "one", **options, **own)
    single = train_module.train(config, log=lambda *_: None)  # one worker, its own cache: computes every vector
    np.testing.assert_allclose(
        Predictor(tmp_path / "worker0").predict_proba(images[::6]),
        Predictor(single.model_dir).predict_proba(images[::6]),
        atol=1e-5,
    )


def test_a_missing_worker_share_is_one_line_naming_it(tmp_path, monkeypatch, random_mobilenet_weights):
    """Worker 0 of 2 alone: it computes its half, waits for worker 1's, and gives up after --worker-timeout."""
    data = make_shapes_dataset(
        tmp_path / "data", per_class=4, size=32, classes=["circle", "square"], validation_per_class=1
    )
    cluster = {"worker": ["localhost:1", "localhost:2"]}  # (no server starts on this path)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    lines = []
    config = tiny_config(
        data,
        tmp_path / "m",
        **MOBILENET_STEM,
        weights=str(random_mobilenet_weights),
        strategy="multi-worker",
        cache_dir=str(tmp_path / "cache"),
        augment=False,
        worker_timeout=1,
    )
    with pytest.raises(UsageError, match=r"still lacks worker 1's share \(5 entries\) after 1 s without progress"):
        train_module.train(config, log=lines.append)
    assert _computed("\n".join(lines)) == 5 and not (tmp_path / "m").exists()


def test_default_training_records_one_replica(trained):
    distribution = trained.metadata.distribution
    assert (distribution["strategy"], distribution["replicas"], distribution["mixed_precision"]) == (
        "default",
        1,
        False,
    )


def test_batches_divide_evenly_over_replicas():
    two = SimpleNamespace(num_replicas_in_sync=2)
    assert replica_batch_size(32, 1000, SimpleNamespace(num_replicas_in_sync=1)) == 32
    assert replica_batch_size(16, 57, two) == 16  # 16 16 16 9: every replica gets images
    assert replica_batch_size(16, 15, two) == 12  # not 14, which would leave a last batch of 1 for 2 replicas
    assert 15 % replica_batch_size(16, 15, two) >= 2


def test_chief_is_the_chief_task_or_worker_0():
    def strategy(cluster, task_type, task_id):
        spec = tf.train.ClusterSpec(cluster)
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(spec, task_type=task_type, task_id=task_id)
        return SimpleNamespace(cluster_resolver=resolver)

    workers = {"worker": ["a:1", "b:1"]}
    assert is_chief(strategy(workers, "worker", 0)) and not is_chief(strategy(workers, "worker", 1))
    with_chief = {"chief": ["c:1"], "worker": ["a:1"]}
    assert is_chief(strategy(with_chief, "chief", 0)) and not is_chief(strategy(with_chief, "worker", 0))
    assert is_chief(tf.distribute.get_strategy())


def test_mixed_precision_computes_in_float16_but_outputs_float32_probabilities(tmp_path):
    with precision_policy(True):
        model = build_model(tiny_config(tmp_path, tmp_path / "m", cut_layer="mixed0"), 3)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored for whatever comes next
    assert (
        model.get_layer("head").get_layer("dense").compute_dtype == "float16"
        and model.get_layer("head").get_layer("dense").variable_dtype == "float32"
    )
    probabilities = model(np.zeros((2, 75, 75, 3), np.float32), training=False)
    assert probabilities.dtype == "float32"
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="refusal is for machines without a GPU")
def test_mixed_precision_without_a_gpu_is_refused(tmp_path, shapes_dir, capsys):
    code, _, err = run_main(
        train_module.main, ["--data", shapes_dir, "--out", tmp_path / "m", "--mixed-precision"], capsys
    )
    assert (
        code == 2
        and err.startswith("error: --mixed-precision: TensorFlow sees no GPU")
        and len(err.strip().splitlines()) == 1
    )


@pytest.mark.parametrize(
    "tf_config, message",
    [
        (None, "set TF_CONFIG on every worker"),
        ("{not json", "TF_CONFIG: not valid JSON"),
        (json.dumps({"cluster": {}, "task": {"type": "worker", "index": 0}}), "cluster lists no worker addresses"),
        (
            json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "ps", "index": 0}}),
            "task must have type worker",
        ),
        (
            json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}),
            "task index 3 is not one of",
        ),
        (
            json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}}),
            "--strategy multi-worker: set --cache-dir to one folder every worker reaches",
        ),
    ],
)
def test_multi_worker_needs_a_usable_tf_config(tmp_path, shapes_dir, capsys, monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    code, _, err = run_main(
        train_module.main, ["--data", shapes_dir, "--out", tmp_path / "m", "--strategy", "multi-worker"], capsys
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m").exists()


def test_multi_worker_address_in_use_is_one_line(tmp_path, shapes_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cluster = {"worker": [f"localhost:{busy.getsockname()[1]}", f"localhost:{_free_ports(1)[0]}"]}
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})}
        argv = [
            sys.executable,
            "-m",
            "classifier.train",
            "--data",
            str(shapes_dir),
            "--out",
            str(tmp_path / "m"),
            "--strategy",
            "multi-worker",
            "--no-feature-cache",  # training on images: under MultiWorkerMirroredStrategy, which starts a server
        ]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    assert done.stderr.startswith(f"error: TF_CONFIG: TensorFlow could not start worker 0 at {cluster['worker'][0]} (")
    assert not (tmp_path / "m").exists()


def test_unknown_strategy_and_uneven_batch_are_refused(tmp_path, shapes_dir, capsys):
    code, _, err = run_main(train_module.main, ["--data", shapes_dir, "--strategy", "tpu"], capsys)
    assert code == 2 and "--strategy: invalid choice: 'tpu'" in err
    with pytest.raises(Exception, match="--batch-size 15: with 2 replicas in sync it must be a multiple of 2"):
        replica_batch_size(15, 100, SimpleNamespace(num_replicas_in_sync=2))
