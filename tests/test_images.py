"""Training (tf.data) and serving (Pillow) must turn the same file into the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from classifier.images import (
    ImageError,
    check_image_file,
    decode_rgb_tf,
    exif_orientation,
    load_rgb,
    resize,
)

RNG = np.random.default_rng(0)
BASE = (RNG.random((37, 53, 3)) * 255).astype(np.uint8)  # not square, so a wrong rotation shows


def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


def _variants(folder):
    """One file per mode and format the issue lists; each name says what it is."""
    rgb = Image.fromarray(BASE)
    alpha = (RNG.random((37, 53)) * 255).astype(np.uint8)
    frames = [Image.fromarray(np.roll(BASE, 7 * i, axis=0)).convert("P") for i in range(3)]
    files = {
        "rgb.jpg": _save(folder / "rgb.jpg", rgb, quality=90),
        "rgb.png": _save(folder / "rgb.png", rgb),
        "rgba.png": _save(folder / "rgba.png", Image.fromarray(np.dstack([BASE, alpha]), "RGBA")),
        "la.png": _save(folder / "la.png", rgb.convert("LA")),
        "l.png": _save(folder / "l.png", rgb.convert("L")),
        "l.jpg": _save(folder / "l.jpg", rgb.convert("L")),
        "palette.png": _save(folder / "palette.png", rgb.convert("P")),
        "palette_transparent.png": _save(folder / "palette_transparent.png", rgb.convert("P"), transparency=3),
        "one_bit.png": _save(folder / "one_bit.png", rgb.convert("1")),
        "cmyk.jpg": _save(folder / "cmyk.jpg", rgb.convert("CMYK")),
        "sixteen_bit.png": _save(
            folder / "sixteen_bit.png", Image.fromarray((RNG.random((37, 53)) * 65535).astype(np.uint16))
        ),
        "bitmap.bmp": _save(folder / "bitmap.bmp", rgb),
        "animated.gif": _save(folder / "animated.gif", frames[0], save_all=True, append_images=frames[1:]),
    }
    for orientation in range(1, 9):
        exif = rgb.getexif()
        exif[0x0112] = orientation
        files[f"exif{orientation}.jpg"] = _save(folder / f"exif{orientation}.jpg", rgb, exif=exif, quality=95)
    return files


def test_tf_and_pillow_decode_identically_for_every_mode(tmp_path):
    for name, path in _variants(tmp_path).items():
        served = load_rgb(path)
        trained = decode_rgb_tf(str(path), exif_orientation(path)).numpy()
        assert served.shape == trained.shape, name
        assert served.dtype == np.float32 and served.shape[-1] == 3, name
        np.testing.assert_allclose(served, trained, atol=1e-3, err_msg=name)


def test_exif_orientation_is_applied(tmp_path):
    files = _variants(tmp_path)
    upright = load_rgb(files["exif1.jpg"])
    assert upright.shape == (37, 53, 3)
    # 6 means "rotate 90 clockwise to view": the served image is portrait and matches the rotation.
    rotated = load_rgb(files["exif6.jpg"])
    assert rotated.shape == (53, 37, 3)
    np.testing.assert_allclose(rotated, np.rot90(upright, -1), atol=1e-3)


def test_alpha_is_composited_over_white(tmp_path):
    transparent = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    path = _save(tmp_path / "clear.png", Image.fromarray(transparent, "RGBA"))
    assert np.all(load_rgb(path) == 255.0)
    assert np.all(load_rgb(transparent) == 255.0)


def test_animated_image_uses_first_frame(tmp_path):
    files = _variants(tmp_path)
    first = np.asarray(Image.fromarray(BASE).convert("P").convert("RGB"), np.float32)
    np.testing.assert_array_equal(load_rgb(files["animated.gif"]), first)


def test_bad_inputs_raise_image_error_naming_the_file(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    Image.fromarray(BASE).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[:300])
    big = _save(tmp_path / "big.png", Image.new("L", (300, 300)))
    for path, words in ((text, "not an image"), (truncated, "truncated"), (big, "above the limit")):
        with pytest.raises(ImageError, match=words) as raised:
            load_rgb(path, max_pixels=50_000)
        assert str(path) in str(raised.value)
    assert check_image_file(truncated)[1] is not None and check_image_file(text)[1] is not None


def test_decompression_bomb_is_refused(tmp_path):
    bomb = _save(tmp_path / "bomb.png", Image.new("1", (12_000, 12_000)))  # 144 Mpx of zeros: a tiny file
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ImageError, match="bomb|above the limit"):
        load_rgb(bomb)


def test_resize_is_identity_at_target_size():
    pixels = (RNG.random((1, 20, 30, 3)) * 255).astype(np.float32)
    np.testing.assert_allclose(resize(pixels, (20, 30)).numpy(), pixels, atol=1e-3)


@pytest.mark.parametrize("size", [(160, 170), (401, 333), (700, 613), (1300, 1250)])  # scales 1, 2, 4, 8 at 150
def test_large_jpegs_decode_at_reduced_scale_identically_on_both_sides(tmp_path, size):
    smooth = Image.fromarray(BASE).resize(size, Image.BILINEAR)
    files = {
        "rgb.jpg": _save(tmp_path / "rgb.jpg", smooth, quality=92),
        "cmyk.jpg": _save(tmp_path / "cmyk.jpg", smooth.convert("CMYK")),
    }
    exif = smooth.getexif()
    exif[0x0112] = 6
    files["rotated.jpg"] = _save(tmp_path / "rotated.jpg", smooth, exif=exif)
    for name, path in files.items():
        served = load_rgb(path, target_side=150)
        trained = decode_rgb_tf(str(path), exif_orientation(path), 150).numpy()
        assert served.shape == trained.shape, name
        assert min(served.shape[:2]) >= 150  # never decoded below the model's input
        assert min(served.shape[:2]) < 2 * 150 or min(size) < 300  # ...but as small as the rule allows
        np.testing.assert_allclose(served, trained, atol=1e-3, err_msg=name)
