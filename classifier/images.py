"""Image files -> RGB float pixels 0..255, the same way for training and for serving.

Training decodes in tf.data (no Python per image in the hot path); serving decodes uploads with
Pillow (which survives odd modes, EXIF, bombs). Both follow one rule set, checked by the tests to
give the same pixels:

- EXIF orientation is applied (training reads the tag once, when the folder is scanned);
- grey is repeated into RGB; alpha is composited over white, `rgb * a + 255 * (1 - a)`;
- 16-bit samples keep their high byte; animations use their first frame.

Resizing and the backbone's own scaling live inside the saved model, not here.
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


# --------------------------------------------------------------------------------------------
# Serving side: Pillow
# --------------------------------------------------------------------------------------------
def open_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode `source` (first frame), refusing non-images and oversized images."""
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


def load_rgb(source: ImageSource, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Anything image-like (path, bytes, Pillow image, array) -> float32 RGB (H, W, 3) in 0..255."""
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    return to_rgb_array(open_image(source, max_pixels))


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
def decode_rgb_tf(path, orientation):
    """tf.data twin of `load_rgb`: file path + EXIF orientation -> float32 RGB (H, W, 3) in 0..255."""
    return decode_bytes_rgb_tf(tf.io.read_file(path), orientation)


def decode_bytes_rgb_tf(data, orientation):
    """Encoded image bytes + EXIF orientation -> float32 RGB (H, W, 3) in 0..255 (in-graph, e.g. for serving)."""
    is_jpeg = tf.strings.substr(data, 0, 2) == b"\xff\xd8"
    # JPEGs go through decode_jpeg so CMYK comes out as RGB the way Pillow converts it; the accurate
    # integer DCT is libjpeg's default, the one Pillow uses, so both sides get identical pixels.
    image = tf.cond(
        is_jpeg,
        lambda: tf.pad(tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"), [[0, 0], [0, 0], [0, 1]], constant_values=255),
        lambda: _with_alpha_tf(tf.io.decode_image(data, channels=0, expand_animations=False)),
    )
    image = tf.cast(image, tf.float32)
    alpha = image[..., 3:] / 255.0
    rgb = image[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return _apply_orientation_tf(rgb, orientation)


def _with_alpha_tf(image):
    """Any decoded image (1-4 channels, uint8) -> RGBA uint8, grey repeated, opaque when no alpha."""
    channels = tf.shape(image)[-1]
    color = tf.cond(channels >= 3, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3]))
    alpha = tf.cond(channels % 2 == 0, lambda: image[..., -1:], lambda: tf.fill(tf.shape(image[..., :1]), tf.constant(255, image.dtype)))
    return tf.concat([color, alpha], axis=-1)


def _apply_orientation_tf(image, orientation):
    """EXIF orientation 1..8 -> upright image; the same transforms as `ImageOps.exif_transpose`."""
    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: image,                                        # 1: upright
        lambda: tf.reverse(image, [1]),                       # 2: mirrored left-right
        lambda: tf.image.rot90(image, 2),                     # 3: rotated 180
        lambda: tf.reverse(image, [0]),                       # 4: mirrored top-bottom
        lambda: transpose(image),                             # 5: transposed
        lambda: tf.image.rot90(image, 3),                     # 6: needs 90 clockwise
        lambda: tf.image.rot90(transpose(image), 2),          # 7: transversed
        lambda: tf.image.rot90(image, 1),                     # 8: needs 90 counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7), branches)


def resize(images, size):
    """Bilinear, antialiased resize to `size` (height, width): the op the model's Resizing layer runs."""
    return tf.image.resize(images, size, method="bilinear", antialias=True)
