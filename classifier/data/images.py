"""Image files -> RGB float pixels 0..255, the same way for training and for serving.

Training decodes in tf.data (no Python per image in the hot path); serving decodes uploads with
Pillow, which opens only the formats of `formats.FORMATS`. Both follow one rule set, checked by
the tests to give the same pixels:

- EXIF orientation is applied (training reads the tag once, when the folder is scanned); an EXIF
  block Pillow cannot parse counts as no orientation, on both sides;
- grey is repeated into RGB; an alpha channel, or a PNG palette's transparency, is composited
  over white, `rgb * a + 255 * (1 - a)`;
- what tf.data's decoders ignore is ignored: the single transparent colour of a grey or RGB PNG,
  and a GIF's transparency (its transparent pixels are black, as TensorFlow's GIF decoder leaves them);
- 16-bit samples keep their high byte; animations use their first frame, and a GIF's first frame
  is that frame alone, without the rest of the canvas it declares (as TensorFlow decodes it);
- a JPEG much larger than the model's input is decoded at 1/2, 1/4 or 1/8 scale by libjpeg
  itself (Pillow's `draft`, TensorFlow's `ratio`): the largest scale r with both sides >= r times
  the target side. Much cheaper than a full decode, and the same rule on both sides.

Then `resize` brings the image to the model's size: bilinear, without antialiasing, the op the
model's own Resizing layer runs. That is how the ImageNet backbones saw their training images
(TF-slim and Keras resize bilinearly), and it measured better than antialiasing, not just
faster (figures: benchmarks/README.md, "The measurements behind the defaults"). A decoded JPEG
is less than twice the target size, so plain bilinear skips no detail worth keeping there.

Serving (`model_pixels`) never holds a float copy of an image much larger than the model's input.
Bilinear resizing without antialias, with half-pixel centres, reads two rows and two columns of
the source per output row and column, so only those are taken from the decoded image (uint8, in
bands of rows), oriented by index arithmetic, made RGB and composited in float32, and interpolated
with TensorFlow's own float32 operations in its order: the same pixels as `resize` of the whole
float image (the tests check it bit for bit). An image at most `WHOLE_IMAGE_FACTOR` times what
the kernel reads is small enough to convert whole and resize with TensorFlow itself. Models saved
with an antialiasing Resizing layer still get TensorFlow's resize of the whole float image, under
a smaller pixel limit (`ANTIALIAS_MAX_PIXELS`).

Memory: one decode may hold `MAX_DECODE_BYTES` (128 MiB). Pillow keeps every mode these formats
decode to in at most 4 bytes a pixel, so PNG, GIF, BMP and WebP are refused above `MAX_PIXELS`
(33.5 million pixels) declared, before any pixel is decoded: a 12 MP phone photo as PNG holds
48 MB, a 24 MP camera frame 96 MB, and four decodes at once (the app's default concurrency) stay
near half a GiB. A JPEG is held to `MAX_PIXELS` after its reduced-scale decode, and when libjpeg
must keep the whole image's DCT coefficients (2 bytes a sample: progressive JPEGs, and those whose
first scan leaves out a component) those must fit the budget too; one-pass JPEGs are decoded in
strips, whatever their declared size. Pillow's decompression-bomb check stays on as a second line.
Every way a file can fail, in Pillow or here, is an `ImageError` naming the file. A path is opened only when it
leads to a regular file (`files.open_regular`): a device, FIFO, socket, folder or dangling link is an `ImageError`
saying what it is, and nothing waits on a FIFO.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from .._tf import tf
from ..config import RESIZE_ANTIALIAS
from ..files import FileRefused, open_regular
from .formats import FORMAT_NAMES, FORMATS, HEIF_HINT, is_heif, is_image_file

MAX_DECODE_BYTES = 128 * 2**20  # one decode's memory budget (see the module docstring)
MAX_PIXELS = MAX_DECODE_BYTES // 4  # Pillow holds at most 4 bytes a pixel for these formats
# The full float image for an antialiasing resize costs about 40 bytes a pixel at its peak: Pillow's
# 4, the uint8 RGBA copy's 4, the float32 RGBA 16, compositing temporaries 8 and TensorFlow's input 12.
ANTIALIAS_MAX_PIXELS = MAX_DECODE_BYTES // 40
BAND_BYTES = 8 * 2**20  # rows are converted to RGB this many bytes at a time
GAP_PIXELS = 8192  # rows the kernel skips are read anyway when this few pixels: cheaper than another call
# An image at most this many times the pixels the kernel reads is converted whole and resized by TensorFlow
# itself (the same result, bit for bit, and quicker for the usual photo a little larger than the model's input).
WHOLE_IMAGE_FACTOR = 4
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> (transposed, rows reversed, columns reversed): the upright image is the stored one,
# transposed or not, then flipped; the same transforms as `ImageOps.exif_transpose` and `_apply_orientation_tf`.
ORIENTATIONS = {
    1: (False, False, False),
    2: (False, False, True),
    3: (False, True, True),
    4: (False, True, False),
    5: (True, False, False),
    6: (True, False, True),
    7: (True, True, True),
    8: (True, True, False),
}
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")

ImageSource = Union[str, Path, bytes, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input that is not a usable image (corrupt, not an image, too large); the message says which."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.reason = reason  # the message without the file's name


def image_files(folder: Path) -> list[Path]:
    """Every image file under `folder`, at any depth, sorted as paths; hidden files and folders are skipped, and
    symlinked folders are not entered (as `rglob`). One `scandir` per folder: no `stat` per file."""
    found, pending = [], [str(folder)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:  # unreadable or gone: skipped, as rglob skips it
            continue
        with entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file() and is_image_file(Path(entry.name)):
                    found.append(entry.path)
    return [Path(path) for path in sorted(found, key=lambda path: path.split(os.sep))]  # Path's order: by parts


# --------------------------------------------------------------------------------------------
# Serving side: Pillow
# --------------------------------------------------------------------------------------------
def model_pixels(
    source: ImageSource, size: tuple[int, int], antialias: bool = False, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """One image -> float32 (height, width, 3) at `size`: `resize(load_rgb(source, max_pixels, max(size)), ...)`.

    Without antialias only the source rows and columns the bilinear kernel reads are converted to
    float (see the module docstring); with it, the whole image is, under `ANTIALIAS_MAX_PIXELS`.
    """
    if antialias:
        full = load_rgb(source, min(max_pixels, ANTIALIAS_MAX_PIXELS), max(size))
        return resize(full, size, antialias=True).numpy()
    stored = _stored(source, max_pixels, max(size))
    height, width = stored.upright_size
    row_lower, row_upper, row_weight = _bilinear_taps(height, size[0])
    col_lower, col_upper, col_weight = _bilinear_taps(width, size[1])
    rows, row_at = np.unique(np.concatenate([row_lower, row_upper]), return_inverse=True)
    cols, col_at = np.unique(np.concatenate([col_lower, col_upper]), return_inverse=True)
    if height * width <= WHOLE_IMAGE_FACTOR * len(rows) * len(cols):
        return resize(stored.upright_rgb(np.arange(height), np.arange(width)), size).numpy()
    grid = stored.upright_rgb(rows, cols)  # float32 RGB of just the rows and columns the kernel reads
    # TensorFlow's compute_lerp, in its order: top = top_left + (top_right - top_left) * x_lerp (and bottom
    # alike) along each row, then top + (bottom - top) * y_lerp. Along rows first, for every row read once.
    across = _lerp(grid, col_at[: size[1]], col_at[size[1] :], col_weight[:, None], axis=1)
    return _lerp(across, row_at[: size[0]], row_at[size[0] :], row_weight[:, None, None], axis=0)


def thumbnail(source: ImageSource, side: int) -> np.ndarray:
    """A small upright uint8 RGB copy of an image, its longer side at most `side`: every n-th row and column (nearest
    neighbour) of the decode serving does, so a JPEG is read at reduced scale and no float copy of the whole image
    is made. Only for showing: pixels for a model come from `model_pixels`. ImageError as serving refuses the file."""
    stored = _stored(source, MAX_PIXELS, side)
    height, width = stored.upright_size
    scale = min(1.0, side / max(height, width))
    rows = np.linspace(0, height - 1, max(1, round(height * scale))).round().astype(int)
    cols = np.linspace(0, width - 1, max(1, round(width * scale))).round().astype(int)
    return np.clip(stored.upright_rgb(rows, cols), 0, 255).round().astype(np.uint8)


def _lerp(array: np.ndarray, lower: np.ndarray, upper: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    """`array[lower] + (array[upper] - array[lower]) * weight`, the indices taken along `axis`."""
    low = np.take(array, lower, axis=axis)
    return low + (np.take(array, upper, axis=axis) - low) * weight


def load_rgb(source: ImageSource, max_pixels: int = MAX_PIXELS, target_side: int | None = None) -> np.ndarray:
    """Anything image-like (path, bytes, Pillow image, array) -> float32 RGB (H, W, 3) in 0..255, whole.

    Paths and bytes of JPEGs get exactly the pixels training saw when `target_side` is the model's;
    without it, a JPEG above `max_pixels` is decoded at the largest DCT scale that fits. An already
    decoded Pillow image or array cannot be decoded at reduced scale, so its pixels may differ
    slightly. The float image costs 12-16 bytes a pixel: serving uses `model_pixels`.
    """
    stored = _stored(source, max_pixels, target_side)
    height, width = stored.upright_size
    return stored.upright_rgb(np.arange(height), np.arange(width))


def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: the two source indices and the weight TensorFlow's ResizeBilinear (half-pixel
    centres) uses, computed as its compute_interpolation_weights does, in float32."""
    scale = np.float32(in_size) / np.float32(out_size)
    centre = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(centre)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(centre).astype(np.int64), in_size - 1)
    return lower, upper, centre - floor


@dataclass
class _Stored:
    """An image as stored (before EXIF orientation): its size, orientation, and a reader of row bands
    (`rows(start, stop)` -> array (stop - start, width, 1..4 channels) of any numeric type)."""

    height: int
    width: int
    orientation: int
    rows: Callable[[int, int], np.ndarray]

    @property
    def upright_size(self) -> tuple[int, int]:
        return (self.width, self.height) if ORIENTATIONS[self.orientation][0] else (self.height, self.width)

    def upright_rgb(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Float32 RGB (len(rows), len(cols), 3) of the upright image at those row and column indices."""
        transposed, rows_reversed, cols_reversed = ORIENTATIONS[self.orientation]
        height, width = self.upright_size
        rows = height - 1 - rows if rows_reversed else rows  # indices into the stored image, maybe transposed
        cols = width - 1 - cols if cols_reversed else cols
        if transposed:  # upright row i is stored column i
            return _array_to_rgb(self._gather(cols, rows).transpose(1, 0, 2))
        return _array_to_rgb(self._gather(rows, cols))

    def _gather(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Stored pixels at rows x cols (unique, any order), read in bands of nearby rows."""
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        tallest = max(1, BAND_BYTES // (4 * self.width))  # rows per band, so a band stays small
        gap = max(1, GAP_PIXELS // self.width)
        every_col = np.array_equal(cols, np.arange(self.width))  # then the columns need no copy
        bands, first = [], 0
        for i in range(1, len(ordered) + 1):
            if i == len(ordered) or ordered[i] - ordered[i - 1] > gap or ordered[i] - ordered[first] >= tallest:
                top = int(ordered[first])
                band = self.rows(top, int(ordered[i - 1]) + 1)
                if len(band) > i - first:  # rows read only to bridge a gap are dropped
                    band = band[ordered[first:i] - top]
                bands.append(band if every_col else np.take(band, cols, axis=1))
                first = i
        gathered = bands[0] if len(bands) == 1 else np.concatenate(bands)
        in_order = np.array_equal(order, np.arange(len(order)))
        return gathered if in_order else gathered[np.argsort(order, kind="stable")]  # back to the order asked


def _stored(source: ImageSource, max_pixels: int, target_side: int | None) -> _Stored:
    if isinstance(source, np.ndarray):
        array = _checked_array(source)
        return _Stored(array.shape[0], array.shape[1], 1, lambda start, stop: array[start:stop])
    image, name = _open(source)
    image, orientation = _decode(image, name, max_pixels, target_side)
    alpha = image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)

    def rows(start: int, stop: int) -> np.ndarray:
        with _decode_errors(name):
            whole = (start, stop) == (0, image.height)  # no copy to crop
            return _band_pixels(image if whole else image.crop((0, start, image.width, stop)), alpha)

    return _Stored(image.height, image.width, orientation, rows)


def _band_pixels(band: Image.Image, alpha: bool) -> np.ndarray:
    """A few rows of a decoded image -> uint8 (rows, width, 1 | 3 | 4): grey, RGB, or RGB + alpha."""
    if band.mode in SIXTEEN_BIT_MODES:  # 16-bit grey: keep the high byte, as TensorFlow's PNG decoder does
        return np.clip(np.asarray(band, dtype=np.uint32) >> 8, 0, 255).astype(np.uint8)[..., None]
    if band.mode == "F":
        return np.clip(np.asarray(band), 0, 255).astype(np.uint8)[..., None]
    return np.asarray(band.convert("RGBA" if alpha else "RGB"))


def _checked_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ImageError("array", f"shape {array.shape} is not an image (want H x W x 1|2|3|4)")
    return array


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """(H, W, 1..4) pixels -> float32 RGB, grey repeated, alpha over white (TensorFlow's ops, in its order)."""
    pixels = _checked_array(array).astype(np.float32)
    color = pixels[..., :3] if pixels.shape[-1] >= 3 else np.repeat(pixels[..., :1], 3, axis=-1)
    if pixels.shape[-1] % 2:  # 1 or 3 channels: no alpha
        return color
    alpha = pixels[..., -1:] / 255.0
    return color * alpha + 255.0 * (1.0 - alpha)


@contextlib.contextmanager
def _decode_errors(name: str, head: Callable[[], bytes] | None = None):
    """Turn whatever Pillow raises on a hostile or broken file into an ImageError naming it; `head` reads the file's
    first bytes, for a format it names (HEIC: how to convert it)."""
    try:
        yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        if is_heif(name, head() if head else b""):
            raise ImageError(name, HEIF_HINT) from None
        raise ImageError(name, f"not an image of an accepted format ({FORMAT_NAMES})") from None
    except Image.DecompressionBombError:
        raise ImageError(name, "refused, the image is a decompression bomb") from None
    except MemoryError:
        raise ImageError(name, "refused, not enough memory to decode it") from None
    except Exception as error:  # OSError, EOFError, SyntaxError, struct.error, ValueError, IndexError...
        raise ImageError(name, f"corrupt or truncated image ({type(error).__name__}: {error})") from None


def _open(source: ImageSource) -> tuple[Image.Image, str]:
    """(the image, its name for messages), opened (header read, nothing decoded) in an accepted format. A path is
    opened only when it leads to a regular file (`files.open_regular`: no device, FIFO or folder, no wait)."""
    if isinstance(source, Image.Image):
        return source, "image"
    if isinstance(source, bytes):
        with _decode_errors("image bytes", lambda: source[:12]):
            return Image.open(io.BytesIO(source), formats=FORMATS), "image bytes"
    name = str(source)
    try:
        file = open_regular(source)
    except FileRefused as error:
        raise ImageError(name, error.reason) from None
    try:
        with _decode_errors(name, lambda: _head(file)):
            image = Image.open(file, formats=FORMATS)
    except BaseException:
        file.close()
        raise
    # The image owns the file, as when Pillow opens a path itself: closed once decoded (or by `close`/`with`).
    image._exclusive_fp = True
    return image, name


def _head(file) -> bytes:
    """The first 12 bytes of an open file (what names its format)."""
    file.seek(0)
    return file.read(12)


def _decode(image: Image.Image, name: str, max_pixels: int, target_side: int | None) -> tuple[Image.Image, int]:
    """(decoded first frame, EXIF orientation) of an opened image, held to the memory budget (module docstring)."""
    with _decode_errors(name):
        image.seek(0)
        if isinstance(image, JpegImagePlugin.JpegImageFile) and image.tile:  # MPO photos too; not yet decoded
            _draft_jpeg(image, name, max_pixels, target_side)
        _check_pixels(image, name, max_pixels)
        frame = image.tile[0].extents if image.format == "GIF" and image.tile else None
        image.load()
        orientation = _orientation(image)  # after load: a PNG may keep its EXIF after the pixels
        if frame is not None:
            image = _as_tensorflow_reads_gif(image, frame)
    return image, orientation


def _check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(name, f"{width}x{height} is {width * height:,} pixels, above the limit of {max_pixels:,}")


def _draft_jpeg(image: JpegImagePlugin.JpegImageFile, name: str, max_pixels: int, target_side: int | None) -> None:
    """Pick the JPEG's DCT scale (the training rule for `target_side`, else the largest that fits
    `max_pixels`) after refusing one whose whole-image coefficient buffer would not fit the budget."""
    width, height = image.size
    buffered = _jpeg_coefficient_bytes(image)
    if buffered > MAX_DECODE_BYTES:
        raise ImageError(
            name,
            f"{width}x{height} progressive or multi-scan JPEG needs {buffered / 2**20:.0f} MiB to decode, "
            f"above the limit of {MAX_DECODE_BYTES / 2**20:.0f} MiB",
        )
    if target_side:
        scale = next(r for r in (8, 4, 2, 1) if min(width, height) >= r * target_side or r == 1)
    else:
        scale = next((r for r in (1, 2, 4) if math.ceil(width / r) * math.ceil(height / r) <= max_pixels), 8)
    if scale > 1:
        image.draft(image.mode, (width // scale, height // scale))  # Pillow picks exactly `scale` for this size


def _jpeg_coefficient_bytes(image: JpegImagePlugin.JpegImageFile) -> int:
    """What libjpeg holds for the whole image when it cannot decode in one pass (2 bytes per sample of
    each component at its sampling), or 0 for a one-pass JPEG (decoded in strips)."""
    if not (image.info.get("progressive") or _first_scan_leaves_out_components(image)):
        return 0
    width, height = image.size
    h_max = max(h for _, h, _, _ in image.layer)
    v_max = max(v for _, _, v, _ in image.layer)
    return sum(2 * math.ceil(width * h / h_max) * math.ceil(height * v / v_max) for _, h, v, _ in image.layer)


def _first_scan_leaves_out_components(image: JpegImagePlugin.JpegImageFile) -> bool:
    """Whether the first scan (SOS) holds fewer components than the frame, from the marker segments
    before it; True when they cannot be read (assume the costly case)."""
    fp, position = image.fp, image.fp.tell()
    try:
        fp.seek(2)  # after the SOI marker
        for _ in range(10_000):  # a real header has a few dozen segments
            marker = fp.read(2)
            while marker[:1] == b"\xff" and marker[1:] == b"\xff":  # fill bytes before a marker
                marker = marker[1:] + fp.read(1)
            if len(marker) < 2 or marker[0] != 0xFF:
                return True
            length = int.from_bytes(fp.read(2), "big")
            if marker[1] == 0xDA:  # SOS: its first byte counts the scan's components
                return fp.read(1)[:1] != bytes([image.layers])
            fp.seek(length - 2, os.SEEK_CUR)
        return True
    finally:
        fp.seek(position)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1..8); 1 when there is none or the EXIF block cannot be parsed."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a garbage EXIF block (SyntaxError, struct.error...) is treated as no EXIF, on both sides
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _as_tensorflow_reads_gif(image: Image.Image, frame: tuple[int, int, int, int]) -> Image.Image:
    """A GIF's first frame as TensorFlow decodes it: the frame alone, its transparent colour black.

    (TensorFlow draws a first frame that does not start at the canvas' corner shifted by its offset;
    the training scan skips such GIFs, and serving shows the frame as it is.)"""
    image = image.crop(frame)  # a copy, whether or not the frame fills the canvas: the caller's image stays as it was
    transparent = image.info.pop("transparency", None)
    if isinstance(transparent, int) and image.mode == "P":
        palette = image.getpalette() or []
        palette[3 * transparent : 3 * transparent + 3] = [0, 0, 0]
        image.putpalette(palette)
    elif isinstance(transparent, int) and image.mode == "L":
        image = image.point([0 if value == transparent else value for value in range(256)])
    return image


def exif_orientation(path: Path) -> int:
    """The EXIF orientation (1..8) of an image file, as serving applies it; 1 when it has none."""
    image, name = _open(path)
    with image:
        return _decode(image, name, MAX_PIXELS, target_side=64)[1]


def check_image_file(path: Path) -> tuple[int, str | None]:
    """Decode `path` once as serving would, for the training scan: (EXIF orientation, why it is skipped or None).

    Refused are files serving refuses and files tf.data would decode differently or not at all
    (see `_tensorflow_cannot_decode`). JPEGs are decoded at reduced scale, which still reads every
    byte of entropy-coded data, so truncation is caught at a fraction of a full decode's cost.
    """
    try:
        image, name = _open(path)
        with image:
            with _decode_errors(name):
                problem = _tensorflow_cannot_decode(image)
            return (1, problem) if problem else (_decode(image, name, MAX_PIXELS, target_side=64)[1], None)
    except ImageError as error:
        return 1, error.reason


def _tensorflow_cannot_decode(image: Image.Image) -> str | None:
    """Why tf.data would not decode this opened file to Pillow's pixels, or None."""
    if image.format == "BMP" and (image.info.get("compression") != 0 or image.tile[0].args[0] not in ("BGR", "L")):
        return "tf.data reads only 24-bit colour and 8-bit grey BMPs the way Pillow does; save it as PNG"
    if image.format == "GIF" and image.tile and image.tile[0].extents[:2] != (0, 0):
        return "a GIF whose first frame is offset in its canvas: tf.data shifts it; save it as PNG"
    if image.format == "WEBP" and getattr(image, "is_animated", False):
        return "an animated WebP: tf.data's WebP decoder corrupts memory on animations; save its frame as PNG"
    return None


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
    """PNG, GIF (first frame), BMP, WebP with 1-4 channels -> RGB float, grey repeated, alpha over white.

    An animated WebP is refused before TensorFlow's WebP decoder sees it (see `formats`)."""
    head = tf.strings.join([tf.strings.substr(data, 0, 21), b"\0" * 21])  # the first 21 bytes, padded
    animated_webp = (
        (tf.strings.substr(head, 0, 4) == b"RIFF")
        & (tf.strings.substr(head, 8, 8) == b"WEBPVP8X")  # an extended WebP...
        & (tf.bitwise.bitwise_and(tf.io.decode_raw(head, tf.uint8)[20], 2) > 0)  # ...with its animation flag
    )
    check = tf.debugging.Assert(tf.logical_not(animated_webp), ["animated WebP images are not decoded"])
    with tf.control_dependencies([check]):
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


def resize(images, size, antialias: bool = RESIZE_ANTIALIAS):
    """Bilinear resize to `size` (height, width): the op the model's Resizing layer runs.

    `antialias` follows a loaded model's own layer (`network.resize_antialias`): models saved before
    the rule changed antialias, and are served the way they were trained.
    """
    return tf.image.resize(images, size, method="bilinear", antialias=antialias)
