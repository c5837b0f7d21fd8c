"""Training end to end: the model folder, its metadata, learning, atomic writes and bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import ROOT, TINY, run_main, tiny_config

from classifier import train as train_module
from classifier.atomic import staged_dir
from classifier.config import TrainConfig
from classifier.console import silent
from classifier.model.backbones import resolve
from classifier.predict import Predictor
from classifier.shapes import make_shapes_dataset


def test_model_folder_has_model_metadata_and_labels(trained, model_dir):
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "confusion_matrix.png",
        "curves.png",
        "labels.txt",
        "metadata.json",
        "metrics.json",
        "model.keras",
        "most_wrong.png",
    ]
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["class_names"] == ["circle", "square", "triangle"]
    assert (model_dir / "labels.txt").read_text().split() == meta["class_names"]
    assert meta["image_size"] == [75, 75]
    assert (meta["backbone"], meta["cut_layer"], meta["weights"]) == ("mobilenet_v2", "block_1_expand_relu", "imagenet")
    # A run that leaves the cut to the backbone records the one it used: the default's is mixed7.
    assert resolve(TrainConfig(data="unused", weights="none"), log=silent).cut_layer == "mixed7"
    assert meta["config"]["epochs"] == 2 and meta["config"]["dense_units"] == 32
    assert set(meta["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert (
        meta["stages"] == [{"name": "head", "first_epoch": 1, "last_epoch": 2, "learning_rate": 1e-3}]
        and meta["fine_tune_start_epoch"] is None
    )
    assert all(len(values) == 2 for values in meta["history"].values())
    assert meta["val_accuracy"] == meta["history"]["val_accuracy"][-1]
    assert meta["versions"]["keras"] == keras.__version__ and meta["versions"]["tensorflow"]
    assert meta["data"]["train_images"] + meta["data"]["validation_images"] == 72
    # Nothing temporary is left beside the model folder.
    assert [p.name for p in model_dir.parent.iterdir()] == ["shapes"]


def test_reloaded_model_predicts_exactly_like_the_trained_one(trained, model_dir, shapes_dir):
    predictor = Predictor(model_dir)
    images = sorted(shapes_dir.glob("*/*.png"))[::10]
    probabilities = predictor.predict_proba(images)
    assert probabilities.shape == (len(images), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    batch = np.stack([predictor.pixels(path) for path in images])
    in_memory = trained.model(batch, training=False).numpy()
    np.testing.assert_allclose(probabilities, in_memory, atol=1e-5)


def test_saved_model_takes_raw_pixels_of_any_size(model_dir, shapes_dir):
    """The resize and the backbone's scaling live in the model: plain keras loading needs nothing else."""
    from PIL import Image

    model = keras.models.load_model(model_dir / "model.keras")
    path = sorted(shapes_dir.glob("circle/*.png"))[0]
    raw = np.asarray(Image.open(path).convert("RGB").resize((120, 90)), np.float32)
    direct = model(raw[None], training=False).numpy()[0]
    np.testing.assert_allclose(direct, Predictor(model_dir).predict_proba([raw])[0], atol=1e-4)


def test_training_from_scratch_learns_a_learnable_task(tmp_path):
    """InceptionV3 with --weights none, the whole network trained (cut at mixed0: a third of mixed2's graph)."""
    data = make_shapes_dataset(tmp_path / "data", per_class=40, size=64, classes=["circle", "square"])
    config = tiny_config(data, tmp_path / "model", cut_layer="mixed0", epochs=6, augment=False)
    result = train_module.train(config, log=lambda *_: None)
    accuracy = result.metadata.history["accuracy"]
    assert accuracy[-1] >= 0.75 > accuracy[0] - 0.1  # chance is 0.5
    assert result.metadata.parameters["trainable"] == result.metadata.parameters["total"] - _frozen_count(result.model)


def _frozen_count(model):
    return sum(w.numpy().size for w in model.non_trainable_weights)


def _cheap_flags():
    """The command line is under test, not the network: the smallest one (it trains from scratch)."""
    flags = []
    for name, value in {**TINY, "backbone": "simple_cnn", "cut_layer": "top", "image_size": 16}.items():
        flags += [f"--{name.replace('_', '-')}", value]
    return flags


def test_train_cli_refuses_existing_output_then_replaces_it_with_overwrite_printing_progress_and_summary(
    tmp_path, shapes_dir, capsys
):
    out = tmp_path / "m"
    out.mkdir()
    for name in ("metadata.json", "model.keras"):  # what makes it a model folder, which --overwrite may replace
        (out / name).write_text("previous model")
    argv = ["--data", shapes_dir, "--out", out, "--epochs", 1, "--no-augment", *_cheap_flags()]
    code, _, err = run_main(train_module.main, argv, capsys)
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "model.keras").read_text() == "previous model"
    code, stdout, err = run_main(train_module.main, argv + ["--overwrite"], capsys)
    assert code == 0, err
    assert (out / "model.keras").read_bytes().startswith(b"PK")  # the new model (a zip) replaced the old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    # What the command prints: progress per epoch, then the summary.
    assert "epoch 1/1" in stdout and "val_accuracy" in stdout and "loss" in stdout
    assert "trains from scratch" in stdout
    assert "done: best val_accuracy" in stdout and str(out) in stdout
    # The summary says the "not sure" threshold the validation images suggest, or that none reached the target.
    assert re.search(
        r"; (not sure below 0\.\d{3} \(answers \d+% of validation images\)|no 'not sure' threshold)", stdout
    )


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_previous_model_and_leaves_no_partial_folder(tmp_path, failure):
    out = tmp_path / "m"
    out.mkdir()
    (out / "model.keras").write_text("previous")
    with pytest.raises(type(failure)):
        with staged_dir(out) as folder:
            (folder / "model.keras").write_text("half written")
            raise failure
    assert (out / "model.keras").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_at_the_next_epoch(tmp_path, shapes_dir, capsys):
    """A real SIGINT to a real training process, then --resume in-process: same epochs, one history."""
    out = tmp_path / "m"
    argv = [
        "--data",
        shapes_dir,
        "--out",
        out,
        "--backbone",
        "simple_cnn",
        "--image-size",
        32,
        "--batch-size",
        16,
        "--dense-units",
        8,
        "--no-augment",
    ]
    command = [sys.executable, "-m", "classifier.train", *argv, "--epochs", 50]
    process = subprocess.Popen(
        [str(a) for a in command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A child inherits an ignored SIGINT (a library in this test process may have set it): give Ctrl-C back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in process.stdout:  # wait until two epochs are done
        if line.startswith("epoch 2/"):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "--resume" in err and len(err.strip().splitlines()) == 1, err
    done = int(re.search(r"epoch (\d+) was the last to complete", err).group(1))
    assert done >= 2 and os.listdir(tmp_path) == ["m.checkpoint"]

    code, stdout, err = run_main(train_module.main, [*argv, "--epochs", done + 1, "--resume"], capsys)
    assert code == 0, err
    assert f"continuing the head stage after epoch {done}" in stdout and f"epoch {done + 1}/{done + 1}" in stdout
    assert f"epoch {done}/" not in stdout  # nothing trained twice
    meta = json.loads((out / "metadata.json").read_text())
    assert all(len(values) == done + 1 for values in meta["history"].values())
    assert os.listdir(tmp_path) == ["m"]  # the checkpoint goes once the model folder is written


def test_resume_needs_a_checkpoint_and_a_checkpoint_needs_resume(tmp_path, shapes_dir, capsys):
    out = tmp_path / "m"
    code, _, err = run_main(train_module.main, ["--data", shapes_dir, "--out", out, "--resume"], capsys)
    assert code == 2 and "--resume: no interrupted run" in err
    (tmp_path / "m.checkpoint").mkdir()
    code, _, err = run_main(train_module.main, ["--data", shapes_dir, "--out", out], capsys)
    assert code == 2 and "add --resume to continue it" in err and len(err.strip().splitlines()) == 1


def test_bad_input_gets_one_line_and_exit_2(tmp_path, shapes_dir, capsys):
    (tmp_path / "empty").mkdir()
    single = make_shapes_dataset(tmp_path / "single", per_class=3, size=32, classes=["circle"])
    mismatched = make_shapes_dataset(tmp_path / "mismatched", per_class=3, size=32, validation_per_class=2)
    (mismatched / "validation" / "square").rename(mismatched / "validation" / "hexagon")
    existing = tmp_path / "existing"
    existing.mkdir()
    out = ["--out", tmp_path / "out"]
    cases = [
        (["--data", tmp_path / "nowhere", *out], "nowhere"),
        (["--data", tmp_path / "empty", *out], "no images found"),
        (["--data", single, *out], "only one class"),
        (["--data", mismatched, *out], "different classes"),
        (["--data", shapes_dir, "--backbone", "vgg99", *out], "--backbone vgg99: unknown backbone"),
        (["--data", shapes_dir, "--image-size", 50, *out], "--image-size 50: inception_v3 needs at least 75 px"),
        (["--data", shapes_dir, "--out", existing], "--overwrite"),
        (["--data", shapes_dir, "--weights", tmp_path / "missing.h5", *out], "no such file"),
        (["--data", shapes_dir, "--epochs", 0, *out], "--epochs 0"),
        (["--data", shapes_dir, "--head-pooling", "max", *out], "invalid choice"),
        (["--data", shapes_dir, "--epochs", "many", *out], "invalid int value"),
        (["--data", shapes_dir, "--alpha", 0.5, *out], "--alpha 0.5: only mobilenet_v2"),
        (
            ["--data", shapes_dir, "--image-size", 16, "--backbone", "mobilenet_v2", *out],
            "mobilenet_v2 needs at least 32 px",
        ),
        (["--data", shapes_dir, "--class-weight", "inverse", *out], "invalid choice"),
        (["--data", shapes_dir, "--patience", -1, *out], "--patience -1"),
        (["--data", shapes_dir, "--backbone", "hub:", *out], "needs a handle"),
        (
            ["--data", shapes_dir, "--backbone", f"hub:{tmp_path / 'no_model'}", *out],
            "as a TF-Hub model",  # tensorflow_hub refuses a missing folder ("cannot get it ...") before loading
        ),
        (
            ["--data", shapes_dir, "--weights", "none", "--fine-tune-epochs", 1, "--cut-layer", "mixed2", *out],
            "nothing to unfreeze",
        ),
    ]
    for argv, message in cases:
        code, stdout, err = run_main(train_module.main, argv, capsys)
        assert code == 2, (argv, err)
        assert err.startswith("error: ") and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        train_module.build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in (
        "--data",
        "--out",
        "--backbone",
        "--weights",
        "--image-size",
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--validation-split",
        "--test-split",
        "--seed",
        "--head-pooling",
        "--dropout",
        "--dense-units",
        "--rotation",
        "--width-shift",
        "--height-shift",
        "--shear",
        "--zoom",
        "--horizontal-flip",
        "--no-horizontal-flip",
        "--vertical-flip",
        "--brightness",
        "--no-augment",
        "--overwrite",
        "--alpha",
        "--fine-tune-epochs",
        "--fine-tune-from",
        "--fine-tune-learning-rate",
        "--patience",
        "--reduce-lr-on-plateau",
        "--class-weight",
        "--resume",
        "--feature-engine",
    ):
        assert flag in text, flag
