"""Finding classes and files, splitting, skipping broken files, and refusing unusable folders."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from classifier._tf import tf
from classifier.data.augment import make_augmenter
from classifier.data.pipeline import image_dataset, load_image_data
from classifier.errors import UsageError
from classifier.shapes import make_shapes_dataset


def test_class_folders_are_split_deterministically_and_stratified(shapes_dir):
    first = load_image_data(shapes_dir, validation_split=0.25, seed=3)
    again = load_image_data(shapes_dir, validation_split=0.25, seed=3)
    other = load_image_data(shapes_dir, validation_split=0.25, seed=4)
    assert first.class_names == ["circle", "square", "triangle"]
    assert first.validation_from == "split"
    assert first.train.paths == again.train.paths and first.validation.paths == again.validation.paths
    assert first.validation.paths != other.validation.paths
    assert np.bincount(first.validation.labels).tolist() == [6, 6, 6]  # 25% of 24 from every class
    assert not set(first.train.paths) & set(first.validation.paths)
    assert len(first.train) + len(first.validation) == 72


@pytest.mark.parametrize("validation_name", ["validation", "valid", "val"])
def test_train_and_validation_folders(tmp_path, validation_name):
    make_shapes_dataset(tmp_path, per_class=5, size=32, validation_per_class=3)
    if validation_name != "validation":
        (tmp_path / "validation").rename(tmp_path / validation_name)
    data = load_image_data(tmp_path)
    assert data.validation_from == "folder"
    assert (len(data.train), len(data.validation)) == (15, 9)
    assert all(f"/{validation_name}/" in p for p in data.validation.paths)


def test_non_images_ignored_and_corrupt_images_skipped_with_a_warning(tmp_path, capsys):
    make_shapes_dataset(tmp_path, per_class=6, size=32, classes=["circle", "square"])
    (tmp_path / "circle" / "README.txt").write_text("notes")
    (tmp_path / "circle" / "fake.png").write_text("this is text")
    broken = tmp_path / "square" / "truncated.jpg"
    Image.new("RGB", (64, 64), "red").save(broken)
    broken.write_bytes(broken.read_bytes()[:200])
    data = load_image_data(tmp_path, validation_split=0.5)
    err = capsys.readouterr().err
    assert "skipped 2 unusable image(s)" in err and "fake.png" in err and "truncated.jpg" in err
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in data.skipped) == ["fake.png", "truncated.jpg"]
    assert len(data.train) + len(data.validation) == 12
    assert not any(p.endswith(".txt") for p in data.train.paths + data.validation.paths)


def test_hidden_files_and_files_tf_data_cannot_decode_are_left_out_at_scan_time(tmp_path, capsys):
    make_shapes_dataset(tmp_path, per_class=4, size=32, classes=["circle", "square"])
    picture = Image.open(sorted((tmp_path / "circle").glob("*.png"))[0])
    (tmp_path / "circle" / ".thumbnails" / "deep").mkdir(parents=True)
    picture.save(tmp_path / "circle" / ".thumbnails" / "deep" / "thumb.png")  # hidden folder, any depth
    picture.save(tmp_path / "circle" / ".hidden.png")
    (tmp_path / ".trash" / "circle").mkdir(parents=True)  # a hidden class folder is no class
    picture.save(tmp_path / ".trash" / "circle" / "old.png")
    disguised = {"tiff.png": "TIFF", "avif.png": "AVIF", "jpeg2000.jpg": "JPEG2000", "palette.bmp": "BMP"}
    for name, format in disguised.items():
        (picture.convert("P") if format == "BMP" else picture).save(tmp_path / "square" / name, format)
    (tmp_path / "empty_class").mkdir()
    data = load_image_data(tmp_path, validation_split=0.5)
    err = capsys.readouterr().err
    used = data.train.paths + data.validation.paths
    assert len(used) == 8 and not any("/." in path for path in used)
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in data.skipped) == sorted(disguised)
    for name in ("tiff.png", "avif.png", "jpeg2000.jpg"):
        assert f"{name}: not an image of an accepted format (JPEG, PNG, GIF, BMP or WEBP)" in err
    assert "palette.bmp: tf.data reads only 24-bit colour and 8-bit grey BMPs" in err
    assert f"warning: {tmp_path / 'empty_class'}/ holds no image files; it is not a class" in err
    assert data.class_names == ["circle", "square"]


def test_a_class_without_any_usable_image_is_an_error_naming_it(tmp_path, capsys):
    make_shapes_dataset(tmp_path, per_class=4, size=32, classes=["circle", "square", "triangle"])
    for path in (tmp_path / "square").iterdir():
        path.write_bytes(b"not an image")
    with pytest.raises(UsageError, match="no usable image in square/"):
        load_image_data(tmp_path)
    assert "skipped 4 unusable image(s)" in capsys.readouterr().err


def test_unusable_folders_are_refused_with_a_clear_message(tmp_path):
    (tmp_path / "empty").mkdir()
    single = make_shapes_dataset(tmp_path / "single", per_class=3, size=32, classes=["circle"])
    mismatched = make_shapes_dataset(tmp_path / "mismatched", per_class=3, size=32, validation_per_class=2)
    shutil.rmtree(mismatched / "validation" / "square")
    cases = {
        tmp_path / "missing": "no such folder",
        tmp_path / "empty": "no images found",
        single: "only one class",
        mismatched: "different classes (only in train: square; only in validation: -)",
    }
    for folder, message in cases.items():
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_image_data(folder)


def test_pipeline_yields_float_batches_at_size_and_augments_only_when_asked(shapes_dir):
    data = load_image_data(shapes_dir)
    plain = image_dataset(data.validation, (40, 40), batch_size=5)
    images, labels = next(iter(plain))
    assert images.shape == (5, 40, 40, 3) and images.dtype.name == "float32"
    assert 0.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 255.0
    again, _ = next(iter(plain))
    np.testing.assert_array_equal(images, again)  # validation is never augmented or shuffled
    augmenter = make_augmenter(tiny_config(shapes_dir, "unused"))
    augmented, _ = next(iter(image_dataset(data.validation, (40, 40), batch_size=5, augmenter=augmenter)))
    assert augmented.shape == images.shape and not np.allclose(augmented, images)
    assert make_augmenter(tiny_config(shapes_dir, "unused", augment=False)) is None


def test_copies_dataset_makes_the_wanted_copies_of_each_image_in_order(shapes_dir):
    from classifier.data.pipeline import copies_dataset

    split = load_image_data(shapes_dir).validation.subset(range(3))
    wanted = [[True, False, True], [False, False, False], [False, True, True]]  # image 1: nothing to make

    def augment(image, copy, seed):  # a stand-in that shows which copy and seed it was asked for
        return image * 0 + tf.cast(copy * 1000 + seed, tf.float32)

    batches = list(copies_dataset(split, wanted, (40, 40), batch_size=3, augment=augment, seeds=[5, 6, 7]))
    images, rows, copies = (np.concatenate([np.asarray(batch[j]) for batch in batches]) for j in range(3))
    assert [len(batch[0]) for batch in batches] == [3, 1]  # pairs, not images, fill the batches
    assert list(zip(rows, copies, strict=True)) == [(0, 0), (0, 2), (2, 1), (2, 2)]
    clean, _ = next(iter(image_dataset(split, (40, 40), batch_size=3)))
    np.testing.assert_array_equal(images[0], clean[0])  # copy 0: the image as the plain pipeline gives it
    assert [float(image.mean()) for image in images[1:]] == [2005.0, 1007.0, 2007.0]


def test_random_affine_is_exact_identity_with_every_knob_at_zero_and_varies_otherwise(shapes_dir):
    from classifier.data.augment import RandomAffine

    batch = np.stack(
        [np.asarray(Image.open(p).convert("RGB"), np.float32) for p in sorted(shapes_dir.glob("*/*.png"))[:4]]
    )
    np.testing.assert_array_equal(np.asarray(RandomAffine()(batch, training=True)), batch)
    moved = np.asarray(RandomAffine(rotation=40, zoom=0.2, seed=1)(batch, training=True))
    assert moved.shape == batch.shape and not np.allclose(moved, batch)
    np.testing.assert_array_equal(np.asarray(RandomAffine(rotation=40)(batch, training=False)), batch)


def test_a_scan_memo_decodes_only_new_or_changed_content_and_still_catches_bad_files(tmp_path, monkeypatch):
    from classifier.data import pipeline as data_module
    from classifier.data.pipeline import ScanMemo

    folder = make_shapes_dataset(tmp_path / "data", per_class=4, size=32, classes=["circle", "square"])
    decoded = []
    check = data_module.check_image_file
    monkeypatch.setattr(data_module, "check_image_file", lambda path: decoded.append(path.name) or check(path))

    def scan():
        decoded.clear()
        return load_image_data(folder, validation_split=0.5, memo=ScanMemo(tmp_path / "memo", folder))

    first = scan()
    assert len(decoded) == 8 and len(first.train.hashes) == len(first.train)
    again = scan()
    assert decoded == [] and again.train.paths == first.train.paths and again.train.hashes == first.train.hashes
    Image.new("RGB", (32, 32), "white").save(folder / "circle" / "added.png")
    (folder / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    changed = sorted((folder / "square").glob("square_*.png"))[0]
    Image.new("RGB", (32, 32), "black").save(changed)  # same name, new content
    later = scan()
    assert sorted(decoded) == sorted(["added.png", "broken.png", changed.name])
    assert [path.rsplit("/", 1)[-1] for path, _ in later.skipped] == ["broken.png"]
    last = scan()
    assert decoded == [] and last.skipped == later.skipped  # the broken file's verdict is remembered too
