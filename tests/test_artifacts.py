"""Model folders survive crashes: a save SIGKILLed at any step leaves a loadable model, and leftovers are cleaned.

The saves run in real subprocesses that kill themselves (SIGKILL, nothing runs after it) at one
step boundary of `atomic.staged_dir`, picked by the CLASSIFIER_TEST_KILL_AT hook. They copy a
real model folder's files into the staged folder, as `save_model_dir` writes them, so that no
subprocess pays for importing TensorFlow.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_main, tiny_config

from classifier import train as train_module
from classifier.atomic import recover, staged_dir
from classifier.console import silent
from classifier.errors import UsageError
from classifier.model.artifacts import check_output_dir, read_metadata, save_model_dir
from classifier.model.backbones import resolve
from classifier.model.metadata import ModelMetadata
from classifier.model.network import build_model
from classifier.predict import Predictor

SAVE = """
import shutil, sys
from pathlib import Path
from classifier import atomic
source, out, replace = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if replace == "two-renames":
    atomic._renameat2 = None  # as on a system or filesystem that cannot swap two folders
with atomic.staged_dir(out) as folder:
    for path in source.iterdir():
        shutil.copy2(path, folder / path.name)
"""


@pytest.fixture(scope="module")
def versions(tmp_path_factory, shapes_dir):
    """Two small real model folders, "old" and "new" (their metadata says which)."""
    root = tmp_path_factory.mktemp("versions")
    config = resolve(tiny_config(shapes_dir, None, backbone="simple_cnn", cut_layer=None, image_size=16), log=silent)
    model = build_model(config, 3)
    for name in ("old", "new"):
        # "version" is no key of ModelMetadata's: kept as it is, like a key a newer version wrote
        save_model_dir(
            root / name, model, ModelMetadata(["circle", "square", "triangle"], (16, 16), extra={"version": name})
        )
    return root


def killed_save(source, out, replace: str, step: str) -> None:
    env = {**os.environ, "CLASSIFIER_TEST_KILL_AT": step}
    process = subprocess.run(
        [sys.executable, "-c", SAVE, str(source), str(out), replace], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert process.returncode == -signal.SIGKILL, process.stderr


@pytest.mark.parametrize(
    "replace, step, survivor",
    [
        ("exchange", "started", "old"),  # staging folder made, nothing written
        ("exchange", "staged", "old"),  # new folder complete, not yet in place
        ("exchange", "exchanged", "new"),  # swapped in one step; the old one not yet deleted
        ("two-renames", "staged", "old"),
        ("two-renames", "moved-aside", "old"),  # no folder at --out: the next load puts the old one back
        ("two-renames", "replaced", "new"),
    ],
)
def test_a_replace_killed_at_any_step_leaves_a_loadable_model_and_the_next_load_cleans(
    versions, shapes_dir, tmp_path, replace, step, survivor
):
    out = tmp_path / "models" / "m"
    shutil.copytree(versions / "old", out)
    killed_save(versions / "new", out, replace, step)
    assert len(list(out.parent.iterdir())) > 1  # the kill left something behind
    assert out.is_dir() == (step != "moved-aside")  # only the two-rename fallback ever has a gap

    predictor = Predictor(out)  # loading recovers the interrupted replace and cleans
    assert predictor.metadata.extra["version"] == survivor
    assert predictor.predict_proba(sorted(shapes_dir.glob("*/*.png"))[:1]).shape == (1, 3)
    assert [path.name for path in out.parent.iterdir()] == ["m"]


def test_a_first_save_killed_leaves_nothing_and_the_next_save_cleans(versions, tmp_path):
    out = tmp_path / "models" / "m"
    killed_save(versions / "new", out, "exchange", "staged")
    with pytest.raises(UsageError, match="not a model folder"):
        read_metadata(out)  # there was no model, and a half-finished one is not put in its place
    with staged_dir(out) as folder:
        shutil.copytree(versions / "new", folder, dirs_exist_ok=True)
    assert [path.name for path in out.parent.iterdir()] == ["m"] and read_metadata(out).extra["version"] == "new"


def test_leftovers_of_a_live_writer_are_left_alone(versions, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(versions / "old", out)
    with staged_dir(out) as folder:
        shutil.copytree(versions / "new", folder, dirs_exist_ok=True)
        recover(out)  # another loader of `out` while this save is staging
        assert folder.is_dir()
    assert read_metadata(out).extra["version"] == "new" and [path.name for path in tmp_path.iterdir()] == ["m"]


def test_stale_temp_files_of_in_place_writes_are_cleaned(versions, tmp_path):
    out = shutil.copytree(versions / "old", tmp_path / "m")
    stale, fresh = out / ".metrics.json.0bad.tmp", out / ".metrics.json.f00d.tmp"
    for path in (stale, fresh):
        path.write_text("{")
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    read_metadata(out)
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a write in progress


def test_overwrite_refuses_a_folder_that_is_not_a_model_folder(versions, shapes_dir, tmp_path, capsys):
    models = tmp_path / "models"
    shutil.copytree(versions / "old", models / "m")
    argv = ["--data", shapes_dir, "--out", models, "--overwrite", "--weights", "none", "--epochs", 1]
    code, _, err = run_main(train_module.main, argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "not a model folder" in err, err
    assert read_metadata(models / "m").extra["version"] == "old"
    assert check_output_dir(models / "m", overwrite=True) == models / "m"  # a model folder may be replaced
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty", overwrite=True) == tmp_path / "empty"


# metadata.json's keys, in the order every version so far wrote them.
METADATA_KEYS = [
    "class_names", "image_size", "backbone", "cut_layer", "weights", "input", "config", "data", "history",
    "val_accuracy", "best_val_accuracy", "epochs_run", "train_seconds", "trained_at", "parameters", "versions",
    "stages", "fine_tune_start_epoch", "validation_metrics", "timing", "distribution", "min_confidence",
    "min_confidence_coverage", "test", "backbone_files", "flips", "refit",
]  # fmt: skip


def test_metadata_keeps_the_files_keys_and_reads_older_and_newer_files(model_dir, tmp_path):
    written = json.loads((model_dir / "metadata.json").read_text())
    assert list(written) == METADATA_KEYS and list(written["data"]) == [
        "root", "train_images", "validation_images", "validation_from", "test_images", "test_from", "skipped"
    ]  # fmt: skip
    assert ModelMetadata.from_dict(written).to_dict() == written
    older = ModelMetadata.from_dict({"class_names": ["a", "b"], "image_size": [75, 75], "later": {"x": 1}})
    assert older.cut_layer is None and older.data.root is None and older.history == {} and older.trained_at is None
    assert older.min_confidence is None and older.min_confidence_coverage is None  # an older file: always answers
    assert older.to_dict()["later"] == {"x": 1}  # a key this version does not know goes back as it came
    size = {"image_size": [75, 75]}
    named = {**size, "class_names": ["a"]}
    for broken in [
        [],
        size,
        {**size, "class_names": "ab"},
        {"class_names": ["a"], "image_size": [0, 75]},
        {**named, "min_confidence": 1.5},  # serving would never answer
        {**named, "min_confidence": "0.5"},
        {**named, "min_confidence_coverage": -1},
    ]:
        (tmp_path / "metadata.json").write_text(json.dumps(broken))
        with pytest.raises(UsageError, match=f"^{tmp_path / 'metadata.json'}: "):
            read_metadata(tmp_path)
