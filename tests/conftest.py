"""Shared fixtures: small learnable datasets drawn on the spot, and one model trained once per session."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"  # real weights and photos beside the repo (absent on a user's clone)
sys.path.insert(0, str(ROOT))

from classifier.config import TrainConfig  # noqa: E402
from classifier.data.shapes import make_shapes_dataset  # noqa: E402
from classifier.training.pipeline import train  # noqa: E402

# Small everywhere: the whole suite runs on 2 CPU cores in a few minutes. Cutting at mixed2 halves
# graph-building time.
TINY = dict(weights="none", cut_layer="mixed2", image_size=75, batch_size=16, dense_units=32, learning_rate=1e-3)
# The cheapest frozen backbone, for tests of mechanics (the feature cache, strategies) where no network is under
# test: MobileNetV2's first blocks at its narrowest width and smallest size, with `random_mobilenet_weights`.
# (MobileNetV2 names every layer, so the cut's name holds in any process, however many models it built before.)
MOBILENET_STEM = dict(backbone="mobilenet_v2", alpha=0.35, cut_layer="block_1_expand_relu", image_size=32)


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory, worker_id):
    """The run's ~/.cache (XDG_CACHE_HOME, which commands started by a test inherit): the default feature cache and
    LiteRT conversions (model/litert.py) start empty, are shared by the run's tests, and never touch the user's own.
    The xdist workers share one (both caches are made for several writers: atomic files, a segment per writer), so a
    backbone both convert is converted once (a conversion is 10-30 s); a test that needs a cold cache sets its own."""
    root = tmp_path_factory.getbasetemp()
    folder = root.parent / "user-cache" if worker_id != "master" else root / "user-cache"  # the run's own folder
    folder.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield


def tiny_config(data, out, **overrides) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), **{**TINY, **overrides})


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """3 classes x 24 images, 64 px, one folder per class."""
    return make_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", per_class=24, size=64)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, shapes_dir):
    """One model trained for 2 epochs on `shapes_dir` (augmentation on), shared by many tests: a head on the
    MobileNetV2 stem with its bundled ImageNet weights, at 75 px, trained on cached features (one augmented
    copy per image). Seconds to train and to load; its accuracy is near chance (the stem sees no shapes)."""
    out = tmp_path_factory.mktemp("models") / "shapes"
    cache = tmp_path_factory.mktemp("feature-cache")
    stem = {**MOBILENET_STEM, "image_size": 75, "weights": "imagenet", "cache_dir": str(cache)}
    return train(tiny_config(shapes_dir, out, **stem, epochs=2, augment_copies=1), log=lambda *_: None)


@pytest.fixture(scope="session")
def model_dir(trained) -> Path:
    return trained.model_dir


def run_main(main, argv, capsys) -> tuple[int, str, str]:
    """Run a command's main(argv) in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory):
    """random_weights(backbone, alpha=1.0) -> a weights file of that backbone's random init, saved once per session.

    A frozen-backbone weights file without any download: it costs what ImageNet weights cost and
    puts the backbone on the feature-cache path (no backward pass through it is ever traced). Its
    features are meaningless, so tests with it check mechanics and exactness, never accuracy.
    """
    import keras

    from classifier.model.backbones import BACKBONES

    made = {}

    def weights(name: str, alpha: float = 1.0) -> Path:
        if (name, alpha) not in made:
            backbone = BACKBONES[name]
            path = tmp_path_factory.mktemp("weights") / f"{name}_{alpha}_random.weights.h5"
            keras.utils.set_random_seed(0)
            size = backbone.min_size  # the kernels do not depend on the input size
            backbone.build((size, size, 3), None, alpha).save_weights(path)
            made[name, alpha] = path
        return made[name, alpha]

    return weights


@pytest.fixture(scope="session")
def random_inception_weights(random_weights) -> Path:
    """InceptionV3's random init as a weights file (see `random_weights`)."""
    return random_weights("inception_v3")


@pytest.fixture(scope="session")
def random_mobilenet_weights(random_weights) -> Path:
    """The cheapest backbone with weights, MobileNetV2 at --alpha 0.35, random init (see `random_weights`): for tests
    of the feature cache's and the strategies' mechanics, where the network is not under test."""
    return random_weights("mobilenet_v2", alpha=0.35)


def holdout_folders(root: Path, per_class: int, validation_per_class: int, test_per_class: int, size: int) -> dict:
    """Shapes in train/, validation/ and test/ under root/clean, and the same under root/poisoned but for a poisoned
    test/: all but one square filed as circles, and a triangle replaced by noise made here (an image unlike any
    shape). A model trained on either must be the same: the test split never reaches training."""
    clean = make_shapes_dataset(root / "clean", per_class, size=size, seed=0, validation_per_class=validation_per_class)
    make_shapes_dataset(clean / "test", per_class=test_per_class, size=size, seed=5)
    poisoned = root / "poisoned"
    shutil.copytree(clean, poisoned)
    for path in sorted((poisoned / "test" / "square").iterdir())[1:]:
        path.rename(poisoned / "test" / "circle" / f"relabelled_{path.name}")
    noise = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(noise).save(sorted((poisoned / "test" / "triangle").iterdir())[0])
    return {"clean": clean, "poisoned": poisoned, "root": root}


def free_port() -> int:
    """A free loopback port for a test server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
