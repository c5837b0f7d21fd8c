"""Training jobs for the page: the queue, cancel, the training folder's limits, and when training is allowed.

Real training runs (the bundled MobileNetV2 0.35 at 32 px, one epoch, shapes drawn on the spot).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import run_main

import app as app_cli
from classifier.data import trainset
from classifier.data.images import ImageError
from classifier.errors import UsageError
from classifier.model.artifacts import read_metadata
from classifier.model.backbones import get_backbone, resolve
from classifier.serving.limits import Limits, training_allowed
from classifier.serving.workbench import (
    CANCELLED,
    CANCELLED_MESSAGE,
    DONE,
    QUEUED,
    Workbench,
    retrain_config,
    tab_config,
)
from classifier.train import train
from classifier.training.control import Cancelled

LIMITS = Limits(training=True, max_train_queue=1)


@pytest.fixture(scope="module")
def models(shapes_dir, tmp_path_factory) -> Path:
    """models/ holding shapes.data: two classes of the session's drawn shapes."""
    root = tmp_path_factory.mktemp("models")
    images = {label: files[:12] for label, files in trainset.folder_images(shapes_dir).items() if label != "triangle"}
    trainset.build(root, "shapes", images, LIMITS)
    return root


def config(models: Path, name: str = "shapes", **more):
    cache = models.parent / "cache"
    options = dict(image_size=32, epochs=1, augment_copies=0, dense_units=16, cache_dir=str(cache))
    return tab_config(trainset.data_folder(models, "shapes"), models / name, **{**options, **more})


def test_jobs_run_one_at_a_time_and_a_full_queue_says_which_flag(models):
    gate, busy = threading.Event(), threading.Event()

    def hold(job, result):  # the worker stays on the first job until the test lets it go
        busy.set()
        gate.wait(timeout=120)

    bench = Workbench(LIMITS, on_done=hold)
    first = bench.submit("first", config(models, "first"))
    with pytest.raises(UsageError, match="'first' is already training"):
        bench.submit("first", config(models, "first"))
    assert busy.wait(timeout=300)
    second = bench.submit("second", config(models, "second"))
    assert second.state == QUEUED and bench.position(second) == 1
    with pytest.raises(UsageError) as full:
        bench.submit("third", config(models, "third"))
    assert "1 training jobs already wait: above this app's limit of 1 (--max-train-queue sets it)" in str(full.value)
    gate.set()
    assert bench.wait(second.id, timeout=300).state == DONE and bench.wait(first.id).state == DONE
    assert first.finished <= second.started  # never two at once
    assert read_metadata(models / "second").class_names == ["circle", "square"]


def test_cancel_keeps_the_previous_model_and_writes_nothing(models):
    bench = Workbench(LIMITS)
    done = bench.wait(bench.submit("kept", config(models, "kept")).id, timeout=300)
    assert done.state == DONE
    before = {path.name: path.read_bytes() for path in (models / "kept").iterdir() if path.is_file()}

    waiting = bench.submit("kept", config(models, "kept", epochs=3))
    waiting.cancel_requested.set()  # as Workbench.cancel does, but let the worker start it: the running path
    assert bench.wait(waiting.id, timeout=300).state == CANCELLED and waiting.message == CANCELLED_MESSAGE
    after = {path.name: path.read_bytes() for path in (models / "kept").iterdir() if path.is_file()}
    assert after == before
    assert sorted(p.name for p in models.iterdir() if p.name.startswith((".kept", "kept."))) == []


def test_train_hooks_stop_a_run_in_the_feature_pass_or_an_epoch(models):
    out = models / "hooked"

    def stop(progress):
        assert progress.total and progress.done <= progress.total
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        train(config(models, "hooked", cache_dir=str(models.parent / "fresh-cache")), on_progress=stop, log=print)
    import keras

    class StopAtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        train(config(models, "hooked", epochs=2), callbacks=[StopAtEpochEnd()], log=print)
    assert not out.exists() and not out.with_name("hooked.checkpoint").exists()


def test_training_folder_checks_dedups_and_limits(shapes_dir, tmp_path):
    circles = sorted(shapes_dir.glob("circle/*.png"))[:3]
    folder = trainset.build(
        tmp_path, "m", {"a": [(p, p.name) for p in circles[:2]], "b": [(circles[2], "x.png")]}, LIMITS
    )
    assert trainset.class_counts(folder) == {"a": 2, "b": 1}
    assert trainset.add(folder, "a", circles[0], "again.png")[1] is False  # the same content: stored once
    assert trainset.add(folder, "b", circles[0], "again.png")[1] is True  # moved: the latest word wins
    assert trainset.class_counts(folder) == {"a": 1, "b": 2}
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ImageError, match="junk.png"):
        trainset.add(folder, "a", junk, "junk.png")
    for bad in ("train", "../x", ".hidden", ""):
        with pytest.raises(UsageError, match="class name"):
            trainset.check_class_name(bad)
    with pytest.raises(UsageError, match="model name"):
        trainset.check_model_name("a.data")

    small = Limits(training=True, max_classes=2, max_class_images=2, max_train_mb=1)
    three = {label: [(circles[0], "c.png")] for label in "abc"}
    with pytest.raises(UsageError, match=r"3 classes: above this app's limit of 2 \(--max-classes sets it\)"):
        trainset.check_limits(three, small)
    many = {"a": [(p, p.name) for p in circles], "b": []}
    with pytest.raises(UsageError, match=r"class 'a' has 3 images: .* limit of 2 \(--max-class-images sets it\)"):
        trainset.check_limits(many, small)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/zeros.png", b"\0" * (2 * 2**20))  # 2 MB unpacked, a few KB packed
    with pytest.raises(UsageError, match=r"big.zip unpacks to 2.0 MB: .* limit of 1 \(--max-train-mb sets it\)"):
        with trainset.unpacked_zip(archive, "big.zip", small):
            pass


def test_zip_of_class_folders_in_one_top_folder(shapes_dir, tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(shapes_dir.glob("*/*_00[01].png")):
            zf.write(path, f"photos/{path.parent.name}/{path.name}")
    with trainset.unpacked_zip(archive, "photos.zip", LIMITS) as images:
        assert {label: len(files) for label, files in images.items()} == {"circle": 2, "square": 2, "triangle": 2}


def test_training_is_off_on_a_public_deployment_unless_allowed(monkeypatch, capsys):
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert training_allowed(None, "127.0.0.1", share=False)
    assert not training_allowed(False, "127.0.0.1", share=False)  # --no-allow-training
    assert not training_allowed(None, "0.0.0.0", share=False)
    assert not training_allowed(None, "127.0.0.1", share=True)
    assert training_allowed(True, "0.0.0.0", share=True)  # --allow-training
    monkeypatch.setenv("SPACE_ID", "someone/space")
    limits = app_cli.app_limits(app_cli.parse_args([]))
    assert not limits.training and not limits.local
    limits = app_cli.app_limits(app_cli.parse_args(["--allow-training", "--max-classes", "5"]))
    assert limits.training and not limits.local and limits.max_classes == 5
    code, _, err = run_main(app_cli.main, ["--max-train-queue", "0"], capsys)
    assert code == 2 and "--max-train-queue 0: must be at least 1" in err


def test_a_job_turned_away_is_refused_before_anything_and_a_failed_one_is_reported(tmp_path):
    full = Workbench(Limits(training=True, max_train_queue=0))
    with pytest.raises(UsageError, match="--max-train-queue sets it"):
        full.check_room("any")  # what the Train tab asks before it copies a job's images
    ended = []
    bench = Workbench(LIMITS, on_failed=ended.append)
    job = bench.submit("gone", tab_config(tmp_path / "no-such-folder", tmp_path / "gone", image_size=32, epochs=1))
    assert bench.wait(job.id, timeout=120).state == "failed" and ended == [job]  # the page drops its folder then


def test_a_class_that_would_be_dropped_or_merged_is_refused_naming_it(shapes_dir, tmp_path):
    """Issue 26 item 3, the data layer: a class with no usable photo, a class folder with no image, and two names
    one folder on some file systems are each refused naming the class, and no training folder is made."""
    circles, squares = sorted(shapes_dir.glob("circle/*.png"))[:2], sorted(shapes_dir.glob("square/*.png"))[:2]
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    good = {"circle": [(p, p.name) for p in circles], "square": [(p, p.name) for p in squares]}
    for images, words in [
        ({**good, "Circle": [(squares[0], "s.png")]}, "two classes have names 'circle' and 'Circle'"),
        ({**good, "junk": [(junk, "junk.png"), (junk, "copy.heic")]}, "class 'junk' has no usable photo (junk.png"),
    ]:
        with pytest.raises(UsageError, match=re.escape(words)):
            trainset.build(tmp_path / "models", "m", images, LIMITS)
    with pytest.raises(ImageError, match="junk.png"):  # one bad file among good ones: the batch, naming the file
        trainset.build(tmp_path / "models", "m", {**good, "square": [*good["square"], (junk, "junk.png")]}, LIMITS)
    assert not (tmp_path / "models").exists()
    with pytest.raises(UsageError, match="two classes have the same name 'a'"):
        trainset.check_distinct_classes(["a", "b", "a"])

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in [*circles, *squares]:
            zf.write(path, f"photos/{path.parent.name}/{path.name}")
        zf.writestr("__MACOSX/photos/circle/._a.png", b"resource fork")  # macOS's Compress adds these: no class
        zf.writestr("photos/empty/notes.txt", "no image here")
    with pytest.raises(UsageError, match=re.escape("photos.zip: class folder 'empty' has no ")):
        with trainset.unpacked_zip(archive, "photos.zip", LIMITS):
            pass
    folder = tmp_path / "folder"
    for label, files in good.items():
        (folder / "train" / label).mkdir(parents=True)
        (folder / "validation" / label).mkdir(parents=True)
        for path, _ in files:
            shutil.copy(path, folder / "train" / label)  # no validation image of a class is no empty class
    assert {label: len(files) for label, files in trainset.folder_images(folder).items()} == {"circle": 2, "square": 2}
    (folder / "train" / "Square").mkdir()
    shutil.copy(circles[0], folder / "train" / "Square")
    with pytest.raises(UsageError, match="two classes have names 'Square' and 'square'"):
        trainset.build(tmp_path / "models", "m", trainset.folder_images(folder), LIMITS)


def test_retrain_rebuilds_a_page_choice_or_a_combined_backbone_from_its_saved_config(tmp_path):
    """The Train tab's retrain: a page backbone by its label, a combined one (trained by the CLI into the models
    folder) with its parts and sizes as saved; another backbone is the CLI's to retrain."""
    page = resolve(tab_config(tmp_path, tmp_path / "m", image_size=96, epochs=3))
    assert resolve(retrain_config(page.to_dict(), tmp_path, tmp_path / "m")) == page
    folder = tmp_path / "weights"  # its parts' files by their documented names (resolving reads no file)
    folder.mkdir()
    for name, alpha in (("inception_v3", 1.0), ("mobilenet_v2", 0.35)):
        (folder / get_backbone(name).weights_files(alpha, 160)[0]).touch()
    # As the CLI would train it into the models folder: its parts, sizes and weights folder are kept.
    combined = dict(backbone="inception_v3+mobilenet_v2", alpha=0.35, weights_dir=str(folder))
    saved = resolve(dataclasses.replace(tab_config(tmp_path, tmp_path / "m", image_size=160), **combined))
    again = resolve(retrain_config(saved.to_dict(), tmp_path, tmp_path / "m"))
    assert (again.backbone, again.alpha, again.image_size) == ("inception_v3@160+mobilenet_v2@160", 0.35, 160)
    assert again == saved
    other = dataclasses.replace(tab_config(tmp_path, tmp_path / "m"), backbone="resnet50", alpha=1.0)
    assert retrain_config(resolve(other).to_dict(), tmp_path, tmp_path / "m") is None
