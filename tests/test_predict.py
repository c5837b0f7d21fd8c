"""The Predictor and the predict command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MOBILENET_STEM, run_main, tiny_config
from PIL import Image

from classifier.data.images import ImageError
from classifier.errors import UsageError
from classifier.model import litert
from classifier.model.artifacts import load_model
from classifier.model.backbones import SCALING_LAYER, build_feature_extractor, get_backbone
from classifier.model.confidence import percent
from classifier.model.finetune import BACKBONE_LAYER
from classifier.model.network import build_model, feature_extractor, head
from classifier.model.tflite import ConverterProcess, convert_tflite
from classifier.predict import Predictor, main


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(model_dir)


def test_predict_returns_every_class_sorted_by_probability(predictor, shapes_dir):
    ranked = predictor.predict(sorted(shapes_dir.glob("square/*.png"))[0])
    assert sorted(label for label, _ in ranked) == ["circle", "square", "triangle"]
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert abs(sum(probabilities) - 1.0) < 1e-5
    assert len(predictor.predict(sorted(shapes_dir.glob("square/*.png"))[0], top_k=2)) == 2


def test_accepts_paths_bytes_pillow_images_and_arrays_alike(predictor, shapes_dir):
    path = sorted(shapes_dir.glob("circle/*.png"))[0]
    image = Image.open(path)
    sources = [path, str(path), path.read_bytes(), image, np.asarray(image.convert("RGB"))]
    probabilities = predictor.predict_proba(sources)
    for row in probabilities[1:]:
        np.testing.assert_allclose(row, probabilities[0], atol=1e-6)


def test_both_engines_answer_as_the_keras_model_for_any_batch_size(predictor, model_dir, shapes_dir):
    """The call set up once at load serves every batch size with the loaded model's own probabilities: all in
    TensorFlow exactly, with the backbone in LiteRT (the default) to float rounding."""
    pixels = np.stack([predictor.pixels(path) for path in sorted(shapes_dir.glob("*/*.png"))[:5]])
    in_tensorflow = Predictor(model_dir, engine="tensorflow")
    assert (predictor.engine, in_tensorflow.engine) == ("litert", "tensorflow")
    for batch in (pixels[:1], pixels, pixels[:2]):
        expected = predictor.model(batch, training=False).numpy()
        np.testing.assert_allclose(in_tensorflow.probabilities_of_pixels(batch), expected, atol=1e-6)
        np.testing.assert_allclose(predictor.probabilities_of_pixels(batch), expected, atol=1e-5)


def test_the_conversion_is_made_once_cached_and_remade_when_damaged(model_dir, shapes_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    image = sorted(shapes_dir.glob("circle/*.png"))[0]
    lines: list[str] = []
    first = Predictor(model_dir, log=lines.append)
    assert first.engine == "litert" and any("converting" in line for line in lines), lines
    (entry,) = (tmp_path / "cache" / "classifier" / "litert").glob("*.tflite")
    lines.clear()
    again = Predictor(model_dir, log=lines.append)  # found: no conversion, the same flatbuffer
    assert again.engine == "litert" and lines == []
    np.testing.assert_array_equal(again.predict_proba([image]), first.predict_proba([image]))
    entry.write_bytes(b"TFL3 not a flatbuffer")  # damaged on disk: converted again and replaced
    damaged = Predictor(model_dir, log=lines.append)
    assert damaged.engine == "litert" and any("not a valid Flatbuffer" in line for line in lines)
    assert entry.stat().st_size > 1000
    np.testing.assert_allclose(damaged.predict_proba([image]), first.predict_proba([image]), atol=1e-6)


def test_a_planted_cache_entry_is_caught_at_load_and_converted_anew(model_dir, shapes_dir, tmp_path, monkeypatch):
    """A valid flatbuffer under the model's cache key but made from other weights (answers off, no error) or for
    another image size (every prediction would fail): each load checks the entry against TensorFlow on the probe
    batch, says in one line that it is not used, converts anew, replaces the entry, and answers as TensorFlow."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    images = sorted(shapes_dir.glob("*/*_000.png"))
    expected = Predictor(model_dir, engine="tensorflow").predict_proba(images)
    model = load_model(model_dir)
    extractor = feature_extractor(model)
    size = tuple(model.get_layer(SCALING_LAYER).input.shape[1:3])
    entry = litert.cache_dir() / f"{litert.cache_key(extractor, size)}.tflite"
    entry.parent.mkdir(parents=True)
    smaller = build_model(tiny_config(shapes_dir, tmp_path, **{**MOBILENET_STEM, "image_size": size[0] - 11}), 3)
    another_size = convert_tflite(feature_extractor(smaller), (size[0] - 11, size[1] - 11), output="features")
    kernel = model.get_layer(BACKBONE_LAYER).weights[0]
    kernel.assign(kernel * 1.5)  # the same network with other weights: a flatbuffer that loads and runs
    other_weights = convert_tflite(extractor, size, output="features")
    for planted, why in ((other_weights, "differ from TensorFlow's"), (another_size, "Dimension mismatch")):
        entry.write_bytes(planted)
        for engine in ("auto", "litert"):  # auto never converts: TensorFlow answers; litert converts anew
            lines: list[str] = []
            predictor = Predictor(model_dir, engine=engine, log=lines.append)
            (note,) = [line for line in lines if line.startswith("note:")]
            assert str(entry) in note and "cached conversion cannot be used" in note and why in note, lines
            assert note.endswith("predicting with TensorFlow" if engine == "auto" else "converting again"), lines
            assert predictor.engine == {"auto": "tensorflow", "litert": "litert"}[engine]
            np.testing.assert_allclose(predictor.predict_proba(images), expected, atol=1e-5)
        assert entry.read_bytes() != planted  # replaced by the checked conversion: the next load uses it silently
        lines.clear()
        assert Predictor(model_dir, log=lines.append).engine == "litert" and lines == []


def test_a_conversion_in_a_child_process_says_why_it_failed(tmp_path):
    """The server's conversion runs in a child process (it holds the GIL): its failure comes back as one line."""
    (tmp_path / "saved").mkdir()  # not a SavedModel
    with pytest.raises(RuntimeError) as failed, ConverterProcess() as child:
        child.convert(tmp_path / "saved")
    assert "SavedModel" in str(failed.value) and "\n" not in str(failed.value), failed.value


def test_the_cache_key_follows_the_backbone_not_the_head(model_dir):
    """A retrain on the same frozen backbone (a new head) finds the conversion; a changed backbone weight (a
    fine-tuned model) or another size does not."""
    model = load_model(model_dir)
    key = litert.cache_key(feature_extractor(model), (75, 75))
    head(model).weights[0].assign(head(model).weights[0] + 1.0)
    assert litert.cache_key(feature_extractor(model), (75, 75)) == key
    assert litert.cache_key(feature_extractor(model), (96, 96)) != key
    kernel = model.get_layer(BACKBONE_LAYER).weights[0]
    kernel.assign(kernel * 1.01)
    assert litert.cache_key(feature_extractor(model), (75, 75)) != key


def test_the_cache_key_ignores_the_names_keras_numbers_per_process(random_inception_weights):
    """InceptionV3's layers are unnamed: the second network built in a process is conv2d_94 where the first is
    conv2d. The same network with the same weights must find the same conversion."""
    inception = get_backbone("inception_v3")
    weights = str(random_inception_weights)
    first, second = (build_feature_extractor(inception, (75, 75), weights, "mixed0") for _ in range(2))
    assert first.layers[1].name != second.layers[1].name
    assert litert.cache_key(first, (75, 75)) == litert.cache_key(second, (75, 75))


def test_where_litert_cannot_serve_tensorflow_does_and_says_why(model_dir, shapes_dir, tmp_path, monkeypatch):
    image = sorted(shapes_dir.glob("circle/*.png"))[0]
    expected = Predictor(model_dir, engine="tensorflow").predict_proba([image])
    # The cache cannot be written (its folder's place is a file): the conversion still serves, uncached.
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    lines: list[str] = []
    uncached = Predictor(model_dir, log=lines.append)
    assert uncached.engine == "litert" and any("is not cached" in line for line in lines), lines
    np.testing.assert_allclose(uncached.predict_proba([image]), expected, atol=1e-5)
    # A conversion that fails its check against TensorFlow is not used.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(litert, "FEATURE_TOLERANCE", -1.0)
    lines.clear()
    refused = Predictor(model_dir, log=lines.append)
    assert refused.engine == "tensorflow", lines
    assert any("predicting with TensorFlow" in line and "differ from TensorFlow's" in line for line in lines), lines
    assert not list((tmp_path / "cache").rglob("*.tflite"))
    np.testing.assert_allclose(refused.predict_proba([image]), expected, atol=1e-6)


def test_bad_image_raises_image_error(predictor, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageError, match="junk.png"):
        predictor.predict(junk)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(UsageError, match="not a model folder"):
        Predictor(tmp_path)


def test_cli_text_json_folders_and_bad_files(model_dir, shapes_dir, tmp_path, capsys):
    circle = sorted(shapes_dir.glob("circle/*.png"))[0]
    code, out, _ = run_main(main, [model_dir, circle, "--top-k", 2], capsys)
    assert code == 0 and out.startswith(f"{circle}: ") and out.count(" 0.") + out.count(" 1.0") == 2

    folder = tmp_path / "batch"
    folder.mkdir()
    for i, path in enumerate(sorted(shapes_dir.glob("*/*.png"))[:3]):
        (folder / f"{i}.png").write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_text("oops")
    (folder / "notes.txt").write_text("ignored: not an image by extension")
    code, out, err = run_main(main, [model_dir, folder, "--json"], capsys)
    results = json.loads(out)
    assert [r["image"].rsplit("/", 1)[-1] for r in results] == ["0.png", "1.png", "2.png", "broken.jpg"]
    for result in results[:3]:
        assert [p["label"] for p in result["predictions"]] and len(result["predictions"]) == 3
        assert abs(sum(p["probability"] for p in result["predictions"]) - 1) < 1e-5
    assert "broken.jpg" in results[3]["error"] and "broken.jpg" in err
    assert code == 1  # one image failed; the others were still predicted

    code, _, err = run_main(main, [model_dir, tmp_path / "absent.png"], capsys)
    assert code == 2 and "absent.png: no such file" in err


def test_serving_resizes_the_way_the_model_was_built(model_dir, shapes_dir, tmp_path):
    """Models now resize without antialiasing; one saved with an antialiasing Resizing layer is served with it."""
    import shutil

    from classifier._tf import keras, tf
    from classifier.data.images import load_rgb

    assert Predictor(model_dir).antialias is False
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    model = keras.models.load_model(old / "model.keras")
    model.get_layer("resize").antialias = True
    model.save(old / "model.keras")
    predictor = Predictor(old)
    image = sorted(shapes_dir.glob("*/*.png"))[0]
    expected = tf.image.resize(load_rgb(image), predictor.image_size, antialias=True).numpy()
    assert predictor.antialias is True
    assert not np.array_equal(
        expected, tf.image.resize(load_rgb(image), predictor.image_size).numpy()
    )  # the difference is real
    np.testing.assert_array_equal(predictor.pixels(image), expected)


def test_cli_says_not_sure_below_the_threshold(predictor, model_dir, shapes_dir, capsys):
    """--min-confidence above an image's top probability: "not sure" beside the top guess, in text and JSON; 0: always
    an answer; without it, the model's own threshold (metadata.json's, suggested by training)."""
    images = sorted(shapes_dir.glob("*/*_00[0-2].png"))
    probabilities = predictor.predict_proba(images)
    image = images[int(probabilities.max(axis=1).argmin())]  # the least sure of them
    top, p = predictor.predict(image)[0]
    assert p < 0.999, "the session model is sure of every image: no threshold below 1 can make it unsure"
    threshold = (p + 1) / 2
    code, out, _ = run_main(main, [model_dir, image, "--min-confidence", threshold], capsys)
    assert code == 0 and out.startswith(f"{image}: not sure (top guess: {top}, {percent(p)}); {top} {p:.3f}, ")
    code, out, _ = run_main(main, [model_dir, image, "--min-confidence", threshold, "--json"], capsys)
    result = json.loads(out)[0]
    assert result["not_sure"] is True and result["predictions"][0] == {"label": top, "probability": pytest.approx(p)}
    code, out, _ = run_main(main, [model_dir, image, "--min-confidence", 0, "--json"], capsys)
    assert json.loads(out)[0]["not_sure"] is False
    assert predictor.min_confidence == predictor.metadata.min_confidence  # no option: the model's own
    for bad in ("1", "0.5x"):
        code, _, err = run_main(main, [model_dir, image, "--min-confidence", bad], capsys)
        assert code == 2 and err.startswith(f"error: --min-confidence {bad}: ") and err.count("\n") == 1


def test_cli_engine_flag(model_dir, shapes_dir, tmp_path, monkeypatch, capsys):
    """The command converts only when asked: by default (auto) it takes a cached conversion, else TensorFlow."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    circle = sorted(shapes_dir.glob("circle/*.png"))[0]
    answers = {}
    for engine in ("auto", "litert", "tensorflow"):
        code, out, err = run_main(main, [model_dir, circle, "--json", "--engine", engine], capsys)
        answers[engine] = {p["label"]: p["probability"] for p in json.loads(out)[0]["predictions"]}
        assert code == 0 and ("converting" in err) == (engine == "litert"), (engine, err)
    assert answers["litert"].keys() == answers["tensorflow"].keys() == answers["auto"].keys()
    for label, probability in answers["tensorflow"].items():
        assert abs(answers["litert"][label] - probability) < 1e-5
        assert answers["auto"][label] == probability  # nothing was cached yet: TensorFlow's answer
    assert Predictor(model_dir, engine="auto").engine == "litert"  # now it is
    code, _, err = run_main(main, [model_dir, circle, "--engine", "onnx"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--engine: invalid choice: 'onnx'" in err
