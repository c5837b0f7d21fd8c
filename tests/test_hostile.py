"""Hostile uploads (made in code by tests/hostile.py): each is a named ImageError or the right prediction,
the Predictor keeps working, batch rows stay independent, and the real app's memory stays bounded."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, run_main
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from hostile import corpus, largest_accepted_png, running_app, status_kb

from classifier.data.images import MAX_DECODE_BYTES, ImageError
from classifier.predict import Predictor, main
from classifier.serving.app_ui import App
from classifier.serving.library import ModelLibrary
from classifier.serving.limits import Limits


def refused(expected) -> bool:
    return isinstance(expected, str) and expected == "error"


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(model_dir)


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory) -> dict[str, tuple[Path, str | np.ndarray]]:
    """File name -> (path, expected), every file of the corpus written to one folder."""
    folder = tmp_path_factory.mktemp("hostile")
    files = {}
    for name, (data, expected) in corpus().items():
        (folder / name).write_bytes(data)
        files[name] = (folder / name, expected)
    return files


def test_each_file_is_refused_by_name_or_classified_as_its_pixels(predictor, hostile_files, shapes_dir):
    good = sorted(shapes_dir.glob("circle/*.png"))[0]
    before = predictor.predict_proba([good])
    for name, (path, expected) in hostile_files.items():
        for source, shown in ((path, name), (path.read_bytes(), "image bytes")):
            if refused(expected):
                with pytest.raises(ImageError) as raised:
                    predictor.predict_proba([source])
                assert str(raised.value).startswith(f"{path if shown == name else shown}: "), name
                continue
            probabilities = predictor.predict_proba([source])[0]
            assert np.isfinite(probabilities).all() and abs(probabilities.sum() - 1) < 1e-5, name
            if not isinstance(expected, str):  # the pixels it must be read as
                np.testing.assert_allclose(probabilities, predictor.predict_proba([expected])[0], atol=1e-6)
    np.testing.assert_array_equal(predictor.predict_proba([good]), before)  # the Predictor still works


def test_batch_rows_are_independent(model_dir, predictor, hostile_files, shapes_dir):
    good = sorted(shapes_dir.glob("*/*_002.png"))
    bad = [path for path, expected in hostile_files.values() if refused(expected)]
    paths = [path for pair in zip(bad, (good * len(bad))[: len(bad)], strict=True) for path in pair]  # interleaved
    # As the page would pass them: files Gradio received (its upload folder), all in one request.
    uploaded = Path(tempfile.mkdtemp(dir=get_upload_folder()))
    sent = []
    for i, path in enumerate(paths):  # one folder each, as Gradio keeps uploads: names repeat
        (uploaded / str(i)).mkdir()
        sent.append(str(shutil.copy(path, uploaded / str(i) / path.name)))
    app = App(ModelLibrary({"shapes": model_dir}), "models", Limits(max_batch=len(paths)))
    table = app.classify_files(sent)
    shutil.rmtree(uploaded)
    expected = {p.name: predictor.top_k(row)[0][0] for p, row in zip(good, predictor.predict_proba(good), strict=True)}
    for (file, label, confidence, error, _), path in zip(table.itertuples(index=False), paths, strict=True):
        assert file == path.name
        if path in good:  # the label is the class, or "not sure (top guess: class)"; the confidence in percent
            assert expected[file] in label and 0 < float(confidence.rstrip("%")) <= 100 and not error, file
        else:
            assert error.startswith(f"{file}: ") and not label, file


def test_predict_command_lists_each_bad_file_and_classifies_the_rest(model_dir, hostile_files, capsys):
    folder = next(iter(hostile_files.values()))[0].parent
    code, out, err = run_main(main, [model_dir, folder, "--json"], capsys)
    results = {Path(r["image"]).name: r for r in json.loads(out)}
    bad = {name for name, (_, expected) in hostile_files.items() if refused(expected)}
    listed = {name for name in hostile_files if Path(name).suffix in (".jpg", ".png", ".gif", ".bmp", ".webp")}
    assert set(results) == listed  # .psd, .tif, .eps are no image files by name: not even listed
    for name, result in results.items():
        if name in bad:
            assert result["error"].startswith(f"{folder / name}: ") and f"error: {folder / name}: " in err, name
        else:
            assert len(result["predictions"]) == 3, name
    assert code == 1  # some failed; the others were still predicted


def test_real_app_memory_stays_bounded_while_worst_case_uploads_arrive_at_once(
    model_dir, hostile_files, shapes_dir, tmp_path
):
    """`python app.py` with its defaults (--concurrency 4) is sent, all at once, 4 copies of the costliest
    PNG it accepts (16-bit RGBA just under the pixel limit: 128 MiB as Pillow holds it) and every hostile
    file. At most 4 uploads decode at a time, each within MAX_DECODE_BYTES, so the peak may rise
    4 x 128 MiB above the idle process, plus 256 MiB for Gradio's handling of some 40 requests and the
    model's batches: 768 MiB. Before the budget, one 12 KB 1-bit PNG bomb alone took the app from
    0.8 to 4.5 GB."""
    largest = tmp_path / "largest_accepted.png"
    largest.write_bytes(largest_accepted_png())
    uploads = [(largest, "any")] * 4 + list(hostile_files.values())
    model_files = sorted((p.relative_to(model_dir), p.stat().st_mtime) for p in model_dir.rglob("*"))
    with running_app(model_dir, free_port(), tmp_path / "app.log") as (app, url):
        client = Client(url, verbose=False)
        good = handle_file(str(sorted(shapes_dir.glob("square/*.png"))[0]))
        label = client.predict(good, api_name="/predict")["label"]  # the first call traces the model
        idle = status_kb(app.pid, "VmRSS")
        jobs = [client.submit(handle_file(str(path)), api_name="/predict") for path, _ in uploads]
        for job, (path, expected) in zip(jobs, uploads, strict=True):
            if refused(expected):
                with pytest.raises(AppError) as raised:
                    job.result(timeout=300)
                assert f"{path.name}: " in str(raised.value), path.name
            else:
                assert job.result(timeout=300)["label"], path.name
        peak = status_kb(app.pid, "VmHWM")
        assert client.predict(good, api_name="/predict")["label"] == label  # still serving, still right
    rise = (peak - idle) * 1024
    print(f"app idle {idle / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB: +{rise / 2**20:.0f} MiB")
    assert rise < 4 * MAX_DECODE_BYTES + 256 * 2**20, f"peak {rise / 2**20:.0f} MiB above the idle app"
    assert sorted((p.relative_to(model_dir), p.stat().st_mtime) for p in model_dir.rglob("*")) == model_files
