"""Beam, on its local runner: batch prediction matches `Predictor`, and a cache fill makes `train` skip the
backbone pass."""

from __future__ import annotations

import csv
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import MOBILENET_STEM, run_main, tiny_config
from PIL import Image
from special_files import DEVICE, make_special_files, unblocked

pytest.importorskip("apache_beam")  # the [beam] extra, which CI's [test] installs

from classifier import batch_features, batch_predict  # noqa: E402
from classifier.batch.predictions import read_files  # noqa: E402
from classifier.config import TrainConfig  # noqa: E402
from classifier.model.backbones import resolve  # noqa: E402
from classifier.model.confidence import NOT_SURE  # noqa: E402
from classifier.predict import Predictor  # noqa: E402
from classifier.shapes import make_shapes_dataset  # noqa: E402
from classifier.train import train  # noqa: E402
from classifier.training.features import FeatureCache, content_hashes  # noqa: E402


def _read(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_batch_predict_gives_predictors_numbers_and_a_row_per_bad_file(model_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in" / "deeper"
    folder.mkdir(parents=True)
    for i in range(240):  # tiny pictures of every size, PNG and JPEG, RGB and grey
        size = (int(rng.integers(8, 48)), int(rng.integers(8, 48)))
        pixels = rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert("L" if i % 5 == 0 else "RGB")
        image.save(folder / f"img_{i:03d}.{'jpg' if i % 2 else 'png'}")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing an image has")
    (folder / "notes.jpg").write_text("not a picture, whatever the name says")
    (folder / "a, b.png").write_bytes((folder / "img_000.png").read_bytes())  # a comma in the path

    out = tmp_path / "results.csv"
    code, stdout, _ = run_main(
        batch_predict.main, [model_dir, str(tmp_path / "in" / "**"), "--out", out, "--min-confidence", 0.4], capsys
    )
    assert code == 0 and stdout.strip() == f"wrote {out}: 243 rows"
    rows = _read(out)
    assert [row["path"] for row in rows] == sorted(str(path) for path in folder.iterdir())
    errors = {row["path"]: row["error"] for row in rows if row["error"]}
    assert set(errors) == {str(folder / "broken.png"), str(folder / "notes.jpg")}
    assert all(row["prediction"] == row["class_1"] == "" for row in rows if row["error"])

    good = [row for row in rows if not row["error"]]
    predictor = Predictor(model_dir)
    expected = predictor.predict_proba([row["path"] for row in good])
    for row, probabilities in zip(good, expected, strict=True):
        ranked = predictor.top_k(probabilities)
        assert [row[f"class_{i}"] for i in (1, 2, 3)] == [name for name, _ in ranked]
        got = [float(row[f"probability_{i}"]) for i in (1, 2, 3)]
        np.testing.assert_allclose(got, [p for _, p in ranked], atol=1e-5)
        sure = ranked[0][1] >= 0.4
        assert row["prediction"] == (ranked[0][0] if sure else NOT_SURE)
        assert float(row["probability"]) == got[0]
    assert not list(tmp_path.glob(".results.csv.*"))  # no temporary file left beside it


def test_batch_predict_gives_each_path_that_is_no_regular_file_an_error_row_without_reading_it(
    model_dir, tmp_path, capsys
):
    """A link to /dev/zero is not read without end, a FIFO does not hang the run, and a dangling link or a folder
    the glob names is a row saying what it is; the images beside them are classified as ever."""
    folder = tmp_path / "in"
    reasons = make_special_files(folder)
    Image.new("RGB", (8, 8), "red").save(folder / "x.png" / "inside.png")  # `*.png` does not go into the folder
    for name in ("a.png", "b.png"):
        Image.new("RGB", (20, 16), "blue").save(folder / name)
    (folder / "link.png").symlink_to(folder / "a.png")  # a link to a regular file is read
    # The pipeline's own read step first, on a link to /dev/null: harmless even if the device were read, and it
    # must be refused before the run below meets /dev/zero.
    (refused,) = read_files(str(folder / "null.png"), 3)
    assert refused.tag == "errors" and refused.value[-1] == DEVICE

    out = tmp_path / "results.csv"
    with unblocked([folder / "fifo.png"]) as freed:
        code, stdout, _ = run_main(batch_predict.main, [model_dir, f"{folder}/*.png", "--out", out], capsys)
    assert not freed and code == 0 and stdout.strip() == f"wrote {out}: 8 rows"
    rows = {Path(row["path"]).name: row for row in _read(out)}
    assert {name: rows[name]["error"] for name in reasons} == reasons
    assert all(rows[name]["prediction"] == rows[name]["class_1"] == "" for name in reasons)
    assert [(rows[name]["error"], rows[name]["prediction"] != "") for name in ("a.png", "b.png", "link.png")] == [
        ("", True)
    ] * 3
    assert rows["link.png"]["probability_1"] == rows["a.png"]["probability_1"]


def test_batch_predict_refuses_an_out_that_would_overwrite_a_model_or_an_input(model_dir, tmp_path, capsys):
    used, other = shutil.copytree(model_dir, tmp_path / "used"), shutil.copytree(model_dir, tmp_path / "other")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(inputs / name)
    (inputs / "link.png").symlink_to(inputs / "a.png")
    (inputs / "dangling.png").symlink_to(tmp_path / "gone.csv")
    (tmp_path / "link-to-b.csv").symlink_to(inputs / "b.png")
    (tmp_path / "into-model").symlink_to(used)
    os.mkfifo(tmp_path / "pipe.csv")
    before = _files(tmp_path)
    model, inside = "inside the model folder", "is one of the input files"
    cases = {
        used / "model.keras": model,  # the model in use
        used / "results.csv": model,
        other / "metadata.json": model,  # any model folder
        other / "new" / "results.csv": model,
        tmp_path / "into-model" / "results.csv": model,  # through a link
        inputs / "a.png": inside,
        inputs / "link.png": inside,  # the same file once the link is resolved
        tmp_path / "link-to-b.csv": inside,
        inputs / "dangling.png": inside,  # an input too: its row says what it is, the CSV must not replace it
        tmp_path / "pipe.csv": "exists and is not a regular file",
    }
    for out, message in cases.items():
        code, _, err = run_main(batch_predict.main, [used, f"{inputs}/*.png", "--out", out], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (out, err)
    assert _files(tmp_path) == before  # nothing written, replaced or added


def _files(root: Path) -> dict[Path, tuple]:
    """Every path under `root` (links not followed) -> what it is: a regular file's bytes, a link's target."""
    found = {}
    for path in root.rglob("*"):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            found[path] = ("link", os.readlink(path))
        else:
            found[path] = ("file", path.read_bytes()) if stat.S_ISREG(mode) else (stat.S_IFMT(mode),)
    return found


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{tmp}", "{tmp}/*.png", "--out", "{tmp}/r.csv"], "not a model folder"),
        (["{model}", "{tmp}/nothing/*.png", "--out", "{tmp}/r.csv"], "matches no file"),
        (["{model}", "{tmp}/*.png", "--out", "{tmp}/r.csv", "--frobnicate"], "--frobnicate: not an option"),
        (["{model}", "{tmp}/*.png", "--out", "{tmp}/r.csv", "{tmp}/b.png"], "quote a glob"),
        (["{model}", "{tmp}/*.png", "--out", "{tmp}/r.csv", "--runner", "Nope"], "--runner Nope"),
        (["{model}", "{tmp}/*.png", "--out", "{tmp}/r.csv", "--direct_num_workers=two"], "invalid int value"),
        (["{model}", "{tmp}/*.png", "--out", "{tmp}/r.csv", "--min-confidence", "2"], "--min-confidence 2"),
    ],
)
def test_batch_predict_bad_input_is_one_line_and_exit_2(model_dir, tmp_path, capsys, argv, message):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    argv = [arg.format(tmp=tmp_path, model=model_dir) for arg in argv]
    code, _, err = run_main(batch_predict.main, argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def _train(data, out, weights, cache_dir):
    lines = []
    config = _config(data, out, weights, cache_dir)
    return train(config, log=lines.append), [line for line in lines if line.startswith("feature cache: computing")]


def _config(data, out, weights, cache_dir) -> TrainConfig:
    # The pass in TensorFlow, as Beam's: a LiteRT conversion another test cached would agree only to float rounding.
    options = dict(weights=str(weights), cache_dir=str(cache_dir), epochs=2, augment_copies=1)
    return tiny_config(data, out, **MOBILENET_STEM, **options, feature_engine="tensorflow")


def _argv(data, weights, cache_dir) -> list:
    """batch_features' command line for `_config`'s run."""
    options = {**MOBILENET_STEM, "weights": weights, "cache_dir": cache_dir, "augment_copies": 1}
    return ["--data", data, *[arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", value)]]


def test_a_cache_filled_on_beam_trains_without_a_backbone_pass_and_the_same_model(
    tmp_path, random_mobilenet_weights, capsys
):
    data = make_shapes_dataset(
        tmp_path / "data", per_class=5, size=48, classes=["circle", "square"], validation_per_class=2
    )
    normal, computed = _train(data, tmp_path / "normal", random_mobilenet_weights, tmp_path / "cache_a")
    assert computed  # the normal run passed the images through the backbone itself

    code, out, _ = run_main(batch_features.main, _argv(data, random_mobilenet_weights, tmp_path / "cache_b"), capsys)
    assert code == 0 and "feature cache: 24 of 24 entries to compute, in 3 chunk(s)" in out  # 10 + 10 aug + 4 val
    assert "computed 24 entries" in out
    engine_run, computed = _train(data, tmp_path / "engine", random_mobilenet_weights, tmp_path / "cache_b")
    assert computed == []  # train read every vector from the cache
    for a, b in zip(normal.model.get_weights(), engine_run.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)

    # Small chunks, spread over the work items: every entry is the normal run's (an augmented copy is drawn from the
    # seed, the copy and the image's content alone); a second fill has nothing to do.
    argv = [*_argv(data, random_mobilenet_weights, tmp_path / "cache_c"), "--chunk-size", 3]
    code, out, _ = run_main(batch_features.main, argv, capsys)
    assert code == 0 and "24 of 24 entries to compute, in 10 chunk(s)" in out and "computed 24 entries" in out
    config = resolve(_config(data, tmp_path / "x", random_mobilenet_weights, tmp_path / "cache_a"))
    ours = FeatureCache.for_config(
        resolve(_config(data, tmp_path / "x", random_mobilenet_weights, tmp_path / "cache_c"))
    )
    normal_cache = FeatureCache.for_config(config)
    clean = [(sha, "clean") for sha in content_hashes(sorted(data.glob("*/*/*.png")))]
    augmented = [(sha, ours.variant(1)) for sha in content_hashes(sorted(data.glob("train/*/*.png")))]
    assert len(clean) == 14 and len(augmented) == 10 and not ours.missing(clean + augmented)
    for a, b in zip(normal_cache.read(clean + augmented), ours.read(clean + augmented), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-6)
    code, out, _ = run_main(batch_features.main, argv, capsys)
    assert code == 0 and "0 of 24 entries to compute" in out


def test_batch_features_refuses_options_without_fixed_features(tmp_path, capsys):
    data = make_shapes_dataset(tmp_path / "data", per_class=2, size=16, classes=["circle", "square"])
    code, _, err = run_main(batch_features.main, ["--data", data, "--weights", "none"], capsys)
    assert code == 2 and "no fixed features" in err
