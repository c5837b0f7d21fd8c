"""The Train tab's drafts (classifier/serving/drafts.py), as a library: no page, no browser (test_app_train.py's
reload test shows them in Chromium). Files are real uploads' places: folders of Gradio's upload folder."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pytest
from gradio.utils import get_upload_folder

import app as app_cli
from classifier.data import trainset
from classifier.errors import UsageError
from classifier.serving.app_train import TrainPage
from classifier.serving.app_ui import App
from classifier.serving.drafts import DRAFT_FILE, DRAFTS_DIR, FILES_DIR, Drafts, Form, valid
from classifier.serving.library import ModelLibrary, find_models
from classifier.serving.limits import Limits

LIMITS = Limits(training=True, max_class_images=3, max_train_mb=1, max_drafts=2)


@pytest.fixture
def uploads():
    """Make files where Gradio puts uploads (each in its own folder, as Gradio does): path = make(name, bytes)."""
    Path(get_upload_folder()).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="test-drafts-", dir=get_upload_folder()))

    def make(name: str, size: int = 100) -> str:
        path = Path(tempfile.mkdtemp(dir=root)) / name
        path.write_bytes(secrets.token_bytes(size))
        return str(path)

    yield make
    shutil.rmtree(root, ignore_errors=True)


def form(files: list[list[str]], name: str = "pets", labels=("cat", "dog", "")) -> Form:
    return Form(name, "MobileNetV2 0.35", 96, 5, 3, list(labels), files)


def kept(drafts: Drafts, token: str) -> list[str]:
    return sorted(path.name for path in (drafts.root / token / FILES_DIR).iterdir())


def test_a_draft_comes_back_as_uploads_and_a_save_again_copies_only_what_is_new(tmp_path, uploads):
    drafts = Drafts(tmp_path / "models", LIMITS)
    cat, cat2, dog = uploads("a.png"), uploads("a.png"), uploads("IMG_1.JPG")  # two photos of one name
    token, said = drafts.save("", form([[cat, cat2], [dog], []]))
    assert valid(token) and said == [] and len(kept(drafts, token)) == 3
    assert os.stat(cat).st_nlink == 2  # a hard link (one filesystem): no second copy of the bytes

    back = drafts.restore(token)
    assert (back.name, back.backbone, back.size, back.epochs, back.count) == ("pets", "MobileNetV2 0.35", 96, 5, 3)
    assert back.labels == ["cat", "dog", ""] and [len(paths) for paths in back.files] == [2, 1, 0]
    restored = [Path(path) for paths in back.files for path in paths]
    assert [path.name for path in restored] == ["a.png", "a.png", "IMG_1.JPG"]  # each under its name as uploaded
    for path, source in zip(restored, (cat, cat2, dog), strict=True):
        assert path.is_relative_to(get_upload_folder()) and path.read_bytes() == Path(source).read_bytes()

    before = kept(drafts, token)
    again, _ = drafts.save(token, form([[str(restored[0]), str(restored[1])], [str(restored[2])], []]))
    assert again == token and kept(drafts, token) == before  # the restored paths are known: nothing copied
    drafts.save(token, form([[str(restored[0])], [str(restored[2]), uploads("new.png")], []]))
    assert len(kept(drafts, token)) == 3 and len(set(kept(drafts, token)) & set(before)) == 2  # one gone, one new
    assert drafts.secret == Drafts(tmp_path / "models", LIMITS).secret  # a restarted server reads browsers' tokens


def test_a_file_not_uploaded_and_a_bad_token_are_refused(tmp_path, uploads):
    drafts = Drafts(tmp_path / "models", LIMITS)
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    for path in (str(outside), "/etc/passwd", f"{get_upload_folder()}/../etc/passwd", None):
        with pytest.raises(gr.Error, match="not a file uploaded to this app"):
            drafts.save("", form([[uploads("ok.png"), path], [], []]))
    assert [path.name for path in drafts.root.iterdir()] == ["secret"]  # nothing written
    for token in ("../x", "..", "a" * 33, "a" * 10_000, "a/" * 16, None, 7, ["a" * 32]):
        assert not valid(token) and drafts.restore(token) is None
        drafts.delete(token)  # no path built from it
    made, _ = drafts.save("../" + "a" * 29, form([[uploads("ok.png")], [], []]))
    assert valid(made) and (drafts.root / made).is_dir()  # a bad token gets a new draft of its own
    unknown = secrets.token_urlsafe(24)
    assert valid(unknown) and drafts.restore(unknown) is None  # well formed, no draft: none


def test_caps_per_class_and_per_draft_leave_files_out_and_say_so_once(tmp_path, uploads):
    drafts = Drafts(tmp_path / "models", LIMITS)
    four = [uploads(f"{i}.png") for i in range(4)]
    token, said = drafts.save("", form([four, [], []]))
    assert len(said) == 1 and "class 'cat' has 4 photos" in said[0] and "(--max-class-images sets it)" in said[0]
    assert len(kept(drafts, token)) == 3
    assert drafts.save(token, form([four, [], []], name="pets2")) == (token, [])  # said once, not at every save

    big = [uploads(f"big{i}.png", 400_000) for i in range(3)]  # 1.2 MB, above --max-train-mb 1
    _, said = drafts.save(token, form([big[:2], [big[2]], []]))
    assert len(said) == 1 and "(--max-train-mb sets it)" in said[0]
    assert [len(paths) for paths in drafts.restore(token).files] == [2, 0, 0]  # the extra file is not kept
    assert sum(path.stat().st_size for path in (drafts.root / token / FILES_DIR).iterdir()) <= 2**20


def test_at_most_max_drafts_the_least_recently_used_go_first_and_old_ones_expire(tmp_path, uploads):
    models = tmp_path / "models"
    drafts = Drafts(models, LIMITS)
    first, _ = drafts.save("", form([[uploads("1.png")], [], []]))
    second, _ = drafts.save("", form([[uploads("2.png")], [], []]))
    os.utime(drafts.root / second / DRAFT_FILE, (time.time() - 60,) * 2)
    os.utime(drafts.root / first / DRAFT_FILE, (time.time() - 120,) * 2)
    drafts.restore(first)  # used now: the second is the least recently used
    third, _ = drafts.save("", form([[uploads("3.png")], [], []]))
    assert drafts.count() == 2 and drafts.restore(second) is None and drafts.restore(first) is not None

    week = time.time() - 8 * 86400
    os.utime(drafts.root / first / DRAFT_FILE, (week, week))
    assert drafts.restore(first) is None and not (drafts.root / first).exists()  # expired: deleted when asked for
    os.utime(drafts.root / third / DRAFT_FILE, (week, week))
    Drafts(models, LIMITS)  # a start deletes what expired meanwhile
    assert not (drafts.root / third).exists()
    drafts.save(second, form([[], [], []], name="", labels=("", "", "")))
    assert drafts.count() == 0  # an empty tab keeps no draft


def test_a_garbled_draft_restores_nothing(tmp_path, uploads):
    drafts = Drafts(tmp_path / "models", LIMITS)
    token, _ = drafts.save("", form([[uploads("1.png")], [], []]))
    path = drafts.root / token / DRAFT_FILE
    data = json.loads(path.read_text())
    (name,) = data["stored"]
    for garbled in (
        "{",
        "[]",
        json.dumps({**data, "files": [["../../../etc/passwd"]], "stored": {"../../../etc/passwd": {"name": "x"}}}),
        json.dumps({**data, "stored": {name: {"name": "../x.png"}}}),
        json.dumps({**data, "labels": ["only one"]}),
        json.dumps({key: value for key, value in data.items() if key != "count"}),
    ):
        path.write_text(garbled)
        assert drafts.restore(token) is None, garbled


def test_the_drafts_folder_is_no_model_nor_training_folder_nor_a_name(tmp_path):
    models = tmp_path / "models"
    Drafts(models, LIMITS)
    for name in ("metadata.json", "model.keras"):  # what makes a folder a model's (is_model_dir)
        (models / DRAFTS_DIR / name).write_text("{}")
    assert find_models(models) == {} and trainset.data_folders(models) == []
    with pytest.raises(UsageError):
        trainset.check_model_name(DRAFTS_DIR)


def test_max_drafts_is_a_flag_whose_zero_turns_drafts_off(tmp_path):
    assert app_cli.app_limits(app_cli.parse_args([])).max_drafts == 20
    assert app_cli.app_limits(app_cli.parse_args(["--max-drafts", "0"])).max_drafts == 0
    with pytest.raises(UsageError, match="--max-drafts -1: must be at least 0"):
        app_cli.parse_args(["--max-drafts", "-1"])
    models = tmp_path / "models"
    assert TrainPage(App(ModelLibrary({}), models, Limits(training=True, max_drafts=0))).drafts is None
    assert not (models / DRAFTS_DIR).exists()


def test_two_tabs_saving_one_draft_at_once_leave_one_whole_draft(tmp_path, uploads):
    """Two tabs of one browser save the same draft: one lock per draft, so the last save wins, whole."""
    drafts = Drafts(tmp_path / "models", LIMITS)
    token, _ = drafts.save("", form([[uploads("0.png")], [], []]))
    tabs = [[[uploads(f"{tab}-{i}.png") for i in range(3)], [], []] for tab in range(8)]
    with ThreadPoolExecutor(8) as pool:
        saved = list(pool.map(lambda files: drafts.save(token, form(files))[0], tabs))
    assert saved == [token] * 8 and drafts.count() == 1
    back = drafts.restore(token)
    assert [Path(path).name for path in back.files[0]] in [[Path(path).name for path in files[0]] for files in tabs]
    assert len(kept(drafts, token)) == 3  # the files of the last save only
