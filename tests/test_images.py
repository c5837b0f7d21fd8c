"""Training (tf.data) and serving (Pillow) must turn the same file into the same pixels."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from hostile import gif, with_chunk_after_header
from PIL import Image

from classifier._tf import tf
from classifier.data import images
from classifier.data.images import (
    ImageError,
    check_image_file,
    decode_bytes_rgb_tf,
    decode_rgb_tf,
    exif_orientation,
    load_rgb,
    model_pixels,
    resize,
)

RNG = np.random.default_rng(0)
BASE = (RNG.random((37, 53, 3)) * 255).astype(np.uint8)  # not square, so a wrong rotation shows


def _save(path, image, format=None, **kwargs):
    image.save(path, format, **kwargs)
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
        "grey.bmp": _save(folder / "grey.bmp", rgb.convert("L")),
        "animated.gif": _save(folder / "animated.gif", frames[0], save_all=True, append_images=frames[1:]),
        "transparent.gif": _save(folder / "transparent.gif", _indexed(), transparency=3, optimize=False),
        "lossy.webp": _save(folder / "lossy.webp", rgb, quality=80),
        "lossless_alpha.webp": _save(
            folder / "lossless_alpha.webp", Image.fromarray(np.dstack([BASE, alpha])), lossless=True
        ),
        "colour_key_grey.png": _save(folder / "colour_key_grey.png", rgb.convert("L"), transparency=100),
        "colour_key_rgb.png": _save(folder / "colour_key_rgb.png", rgb, transparency=tuple(int(v) for v in BASE[0, 0])),
        "multi_picture.jpg": _save(
            folder / "multi_picture.jpg", rgb, "MPO", save_all=True, append_images=[rgb.rotate(90)]
        ),
    }
    # A GIF canvas larger than its first frame: training and serving both take the frame alone.
    files["small_frame.gif"] = folder / "small_frame.gif"
    files["small_frame.gif"].write_bytes(_with_screen(files["transparent.gif"].read_bytes(), (90, 70)))
    files["garbage_exif.png"] = folder / "garbage_exif.png"  # EXIF that Pillow cannot parse: no orientation
    files["garbage_exif.png"].write_bytes(with_chunk_after_header(files["rgb.png"].read_bytes(), b"eXIf", b"garbage!"))
    for orientation in range(1, 9):
        exif = rgb.getexif()
        exif[0x0112] = orientation
        files[f"exif{orientation}.jpg"] = _save(folder / f"exif{orientation}.jpg", rgb, exif=exif, quality=95)
    return files


def _indexed() -> Image.Image:
    """A palette image using every one of its 8 colours, so a transparent index shows."""
    image = Image.fromarray(RNG.integers(0, 8, BASE.shape[:2]).astype(np.uint8), "P")
    image.putpalette(RNG.integers(0, 256, 8 * 3).tolist())
    return image


def _with_screen(data: bytes, screen: tuple[int, int]) -> bytes:
    """A GIF with its logical screen (canvas) resized; the frames stay as they are."""
    return data[:6] + struct.pack("<HH", *screen) + data[10:]


def _training_pixels(path, size):
    """What the training pipeline feeds the model for `path` at `size`."""
    return resize(decode_rgb_tf(str(path), exif_orientation(path), max(size)), size).numpy()


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


@pytest.fixture(params=["gathered", "whole"])
def reading(request, monkeypatch):
    """Run a test with `model_pixels` gathering what the kernel reads (any image size), then as it chooses."""
    if request.param == "gathered":
        monkeypatch.setattr(images, "WHOLE_IMAGE_FACTOR", 0)  # never convert the whole image
    return request.param


@pytest.mark.parametrize("size", [(75, 75), (150, 150), (19, 131)])
def test_served_pixels_equal_the_training_pipeline_bit_for_bit(tmp_path, size, reading):
    """`model_pixels` gathers only the rows and columns bilinear reads, yet gives TensorFlow's own resize."""
    for name, path in _variants(tmp_path).items():
        np.testing.assert_array_equal(model_pixels(path, size), _training_pixels(path, size), err_msg=name)


def test_reduced_resize_equals_tensorflow_on_the_whole_float_image_for_any_size_mode_and_orientation(monkeypatch):
    monkeypatch.setattr(images, "WHOLE_IMAGE_FACTOR", 0)  # always the gathered path
    rng = np.random.default_rng(1)
    for case in range(60):
        height, width = rng.integers(1, 700, 2)
        mode = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"][case % 7]
        image = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8)).convert(mode)
        image.getexif()[0x0112] = int(rng.integers(1, 9))
        size = tuple(int(s) for s in rng.integers(1, 300, 2))
        expected = resize(load_rgb(image), size).numpy()
        np.testing.assert_array_equal(model_pixels(image, size), expected, err_msg=f"{mode} {height}x{width} -> {size}")
    array = rng.integers(0, 256, (301, 199, 2), dtype=np.uint8)  # arrays take the same path: grey + alpha
    np.testing.assert_array_equal(model_pixels(array, (75, 75)), resize(load_rgb(array), (75, 75)).numpy())


def test_large_images_are_reduced_without_a_full_float_copy(tmp_path):
    alpha = Image.fromarray(RNG.integers(0, 256, (37, 53), dtype=np.uint8)).resize((1600, 1200), Image.BILINEAR)
    large = Image.fromarray(BASE).resize((1600, 1200), Image.BILINEAR)  # smooth: quick to save
    large.putalpha(alpha)
    for mode in ["RGBA", "P", "I;16", "LA"]:
        path = _save(tmp_path / f"large_{mode}.png", large.convert(mode), compress_level=1)
        tracemalloc.start()
        try:
            served = model_pixels(path, (150, 150))
            _, peak = tracemalloc.get_traced_memory()  # numpy's allocations (Pillow's own are not traced)
        finally:
            tracemalloc.stop()
        full_float = 1600 * 1200 * 3 * 4
        assert peak < full_float / 4, f"{mode}: {peak / 2**20:.1f} MiB traced"
        np.testing.assert_array_equal(served, _training_pixels(path, (150, 150)), err_msg=mode)


def test_training_scan_skips_what_tf_data_decodes_differently_with_the_reason(tmp_path):
    rgb = Image.fromarray(BASE)
    offset = bytearray(gif((80, 60), [(1, 1)]))
    offset[13 + 6 + 1 : 13 + 6 + 5] = struct.pack("<HH", 5, 4)  # the first frame's left and top
    files = {
        "palette.bmp": (_save(tmp_path / "palette.bmp", rgb.convert("P")), "BMP"),
        "thirty_two_bit.bmp": (_save(tmp_path / "thirty_two_bit.bmp", rgb.convert("RGBA")), "BMP"),
        "animated.webp": (
            _save(tmp_path / "animated.webp", rgb, save_all=True, append_images=[rgb.rotate(90)]),
            "animated WebP",
        ),
        "tiff_named.png": (_save(tmp_path / "tiff_named.png", rgb, "TIFF"), "not an image of an accepted format"),
        "avif_named.png": (_save(tmp_path / "avif_named.png", rgb, "AVIF"), "not an image of an accepted format"),
    }
    (tmp_path / "offset.gif").write_bytes(bytes(offset))
    files["offset.gif"] = (tmp_path / "offset.gif", "offset")
    for name, (path, reason) in files.items():
        orientation, problem = check_image_file(path)
        assert problem is not None and reason in problem and str(path) not in problem, name
    for name, path in _variants(tmp_path).items():  # everything the parity tests cover is kept
        assert check_image_file(path)[1] is None, name
    assert model_pixels(files["palette.bmp"][0], (20, 20)).shape == (20, 20, 3)  # serving still reads them


def test_in_graph_decoder_refuses_animated_webp_and_reads_still_webp(tmp_path):
    rgb = Image.fromarray(BASE)
    animated = _save(tmp_path / "a.webp", rgb, save_all=True, append_images=[rgb.rotate(90)]).read_bytes()
    still = _save(tmp_path / "s.webp", rgb, lossless=True).read_bytes()
    with pytest.raises(tf.errors.InvalidArgumentError, match="animated WebP"):
        decode_bytes_rgb_tf(animated, 1)
    np.testing.assert_array_equal(decode_bytes_rgb_tf(still, 1).numpy(), BASE.astype(np.float32))
    for short in (b"", b"RIFF", b"RIFF\0\0\0\0WEBPVP8X"):  # shorter than a header: the check itself never fails
        with pytest.raises(tf.errors.InvalidArgumentError, match="DecodeImage"):  # the decoder itself says why
            decode_bytes_rgb_tf(short, 1)
