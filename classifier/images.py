"""Image files -> RGB float pixels 0..255, the same way for training and for serving.

Training decodes in tf.data (no Python per image in the hot path); serving decodes uploads with
Pillow (which survives odd modes, EXIF, bombs). Both follow one rule set, checked by the tests to
give the same pixels:

- EXIF orientation is applied (training reads the tag once, when the folder is scanned);
- grey is repeated into RGB; alpha is composited over white, `rgb * a + 255 * (1 - a)`;
- 16-bit samples keep their high byte; animations use their first frame;
- a JPEG much larger than the model's input is decoded at 1/2, 1/4 or 1/8 scale by libjpeg
  itself (Pillow's `draft`, TensorFlow's `ratio`): the largest scale r with both sides >= r times
  the target side. Several times faster than a full decode, and the same rule on both sides.

Then `resize` brings the image to the model's size: bilinear, without antialiasing, the op the
model's own Resizing layer runs. That is how the ImageNet backbones saw their training images
(TF-slim and Keras resize bilinearly), and it measured better than antialiasing, not just
faster: on the cats_dogs photos, a logistic probe on frozen MobileNetV2 1.0 features at 224 px
got 0.990-0.991 against 0.985-0.989, InceptionV3 mixed7 at 150 px 0.967-0.968 against
0.965-0.967, and the resize's cost fell from about 1 ms of CPU per image to 0.2 ms. A decoded
JPEG is less than twice the target size, so plain bilinear skips no detail worth keeping there.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ._tf import tf

# Formats that both tf.io.decode_image (training) and Pillow (serving) read.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Serving refuses images above this many pixels (a 12,000 x 8,000 photo); Pillow's bomb check
# stays on as a second line of defence.
MAX_PIXELS = 100_000_000
EXIF_ORIENTATION = 0x0112

ImageSource = Union[str, Path, bytes, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input that is not a usable image (corrupt, not an image, too large); the message says which."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def image_files(folder: Path) -> list[Path]:
    """Every image file under `folder`, at any depth, sorted (a stable order for splits and output)."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_file(p))


# --------------------------------------------------------------------------------------------
# Serving side: Pillow
# --------------------------------------------------------------------------------------------
def open_image(source: ImageSource, max_pixels: int = MAX_PIXELS, target_side: int | None = None) -> Image.Image:
    """Open and decode `source` (first frame), refusing non-images and oversized images.

    With `target_side`, a large JPEG is decoded at reduced scale (see the module docstring).
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        name = "image bytes" if isinstance(source, bytes) else str(source)
        fileobj = io.BytesIO(source) if isinstance(source, bytes) else source
        try:
            image = Image.open(fileobj)
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image Pillow can read") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{name}: refused, the image is a decompression bomb") from None
        except OSError as error:
            raise ImageError(f"{name}: cannot open ({error})") from None
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                f"{name}: {width}x{height} is {width * height:,} pixels, above the limit of {max_pixels:,}"
            )
        try:
            image.seek(0)
            if target_side and image.format == "JPEG":
                image.draft(image.mode, (target_side, target_side))
            image.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageError(f"{name}: corrupt or truncated image ({error})") from None
    return image


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """An opened Pillow image -> float32 array (H, W, 3) in 0..255, by the module's rules."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey: keep the high byte, as TensorFlow's PNG decoder does.
        pixels = np.asarray(image, dtype=np.uint32) >> 8
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32)
    if not has_alpha:
        return pixels
    alpha = pixels[..., 3:] / 255.0
    return pixels[..., :3] * alpha + 255.0 * (1.0 - alpha)


def load_rgb(source: ImageSource, max_pixels: int = MAX_PIXELS, target_side: int | None = None) -> np.ndarray:
    """Anything image-like (path, bytes, Pillow image, array) -> float32 RGB (H, W, 3) in 0..255.

    Paths and bytes of JPEGs get exactly the pixels training saw; an already decoded Pillow image
    or array cannot be decoded at reduced scale, so its pixels may differ slightly.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    return to_rgb_array(open_image(source, max_pixels, target_side))


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ImageError(f"array of shape {array.shape} is not an image (want H x W x 1|2|3|4)")
    pixels = array.astype(np.float32)
    color = pixels[..., :3] if pixels.shape[-1] >= 3 else np.repeat(pixels[..., :1], 3, axis=-1)
    if pixels.shape[-1] % 2:  # 1 or 3 channels: no alpha
        return color
    alpha = pixels[..., -1:] / 255.0
    return color * alpha + 255.0 * (1.0 - alpha)


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag (1..8) of an image file; 1 when it has none."""
    with Image.open(path) as image:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def check_image_file(path: Path) -> tuple[int, str | None]:
    """Decode `path` once to find corrupt or truncated files: (EXIF orientation, problem or None).

    JPEGs are decoded at reduced scale (`draft`), which still reads every byte of entropy-coded
    data, so truncation is caught at a fraction of a full decode's cost.
    """
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            if image.format == "JPEG":
                image.draft("RGB", (64, 64))
            image.load()
    except Exception as error:  # Pillow raises many types for broken files; all mean "skip it"
        return 1, f"{type(error).__name__}: {error}"
    return (orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1), None


# --------------------------------------------------------------------------------------------
# Training side: tf.data
# --------------------------------------------------------------------------------------------
def decode_rgb_tf(path, orientation, target_side: int | None = None):
    """tf.data twin of `load_rgb`: file path + EXIF orientation -> float32 RGB (H, W, 3) in 0..255."""
    return decode_bytes_rgb_tf(tf.io.read_file(path), orientation, target_side)


def decode_bytes_rgb_tf(data, orientation, target_side: int | None = None):
    """Encoded image bytes + EXIF orientation -> float32 RGB (H, W, 3) in 0..255 (in-graph, e.g. for serving)."""
    is_jpeg = tf.strings.substr(data, 0, 2) == b"\xff\xd8"
    rgb = tf.cond(is_jpeg, lambda: _decode_jpeg_tf(data, target_side), lambda: _decode_other_tf(data))
    return tf.ensure_shape(_apply_orientation_tf(rgb, orientation), [None, None, 3])


def _decode_jpeg_tf(data, target_side: int | None):
    """JPEG -> RGB float, at the scale Pillow's `draft` picks. decode_jpeg turns CMYK into RGB as
    Pillow does, and the accurate integer DCT is libjpeg's default, the one Pillow uses."""

    def at_ratio(ratio):
        return lambda: tf.cast(
            tf.io.decode_jpeg(data, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE"), tf.float32
        )

    if not target_side:
        return at_ratio(1)()
    shorter = tf.reduce_min(tf.io.extract_jpeg_shape(data)[:2])
    step = tf.add_n([tf.cast(shorter >= r * target_side, tf.int32) for r in (2, 4, 8)])
    return tf.switch_case(step, [at_ratio(r) for r in (1, 2, 4, 8)])


def _decode_other_tf(data):
    """PNG, GIF (first frame), BMP with 1-4 channels -> RGB float, grey repeated, alpha over white."""
    image = tf.cast(tf.io.decode_image(data, channels=0, expand_animations=False), tf.float32)
    channels = tf.shape(image)[-1]
    color = tf.cond(channels >= 3, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3]))
    alpha = tf.cond(channels % 2 == 0, lambda: image[..., -1:] / 255.0, lambda: tf.ones_like(image[..., :1]))
    return color * alpha + 255.0 * (1.0 - alpha)


def _apply_orientation_tf(image, orientation):
    """EXIF orientation 1..8 -> upright image; the same transforms as `ImageOps.exif_transpose`."""
    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: image,  # 1: upright
        lambda: tf.reverse(image, [1]),  # 2: mirrored left-right
        lambda: tf.image.rot90(image, 2),  # 3: rotated 180
        lambda: tf.reverse(image, [0]),  # 4: mirrored top-bottom
        lambda: transpose(image),  # 5: transposed
        lambda: tf.image.rot90(image, 3),  # 6: needs 90 clockwise
        lambda: tf.image.rot90(transpose(image), 2),  # 7: transversed
        lambda: tf.image.rot90(image, 1),  # 8: needs 90 counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7), branches)


RESIZE_ANTIALIAS = False  # the model's Resizing layer is built with this (see the module docstring)


def resize(images, size, antialias: bool = RESIZE_ANTIALIAS):
    """Bilinear resize to `size` (height, width): the op the model's Resizing layer runs.

    `antialias` follows a loaded model's own layer (`model.resize_antialias`): models saved before
    the rule changed antialias, and are served the way they were trained.
    """
    return tf.image.resize(images, size, method="bilinear", antialias=antialias)
