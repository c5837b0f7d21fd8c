"""The image formats the project reads, in one place: training, serving and dataset counts all use it.

A format is here only when Pillow (serving) and tf.data (training) both decode it to the same
pixels, as tests/test_images.py checks:

- JPEG, PNG, GIF, BMP: TensorFlow's `decode_image` and Pillow agree on every mode the tests draw.
  Where one variant of a format differs (an indexed, 16-bit or 32-bit BMP), the training scan
  skips that file with the reason (see `images.check_image_file`).
- WebP: lossy, lossless, with alpha, still images decode to identical pixels in TensorFlow 2.21
  (`decode_image` reads WebP) and Pillow. An animated WebP is left to Pillow only: TensorFlow's
  WebP decoder corrupts its own heap on one (the process aborts later), so the training scan
  skips it and the in-graph decoder refuses it.

TIFF, PSD, JPEG 2000, AVIF, EPS (which Pillow renders with Ghostscript), FITS and the rest are left
out: tf.data cannot read them, and each extra decoder is more code a hostile upload can reach.

Pillow names these formats in `Image.open(..., formats=FORMATS)`. Nothing is imported here, so
`datasets.py` reads the extensions without loading TensorFlow or Pillow.
"""

# Pillow format name -> the file extensions that mean it.
EXTENSIONS_BY_FORMAT = {
    "JPEG": (".jpg", ".jpeg"),
    "PNG": (".png",),
    "GIF": (".gif",),
    "BMP": (".bmp",),
    "WEBP": (".webp",),
}
FORMATS = tuple(EXTENSIONS_BY_FORMAT)
IMAGE_EXTENSIONS = tuple(suffix for suffixes in EXTENSIONS_BY_FORMAT.values() for suffix in suffixes)
FORMAT_NAMES = f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]}"  # for messages: "JPEG, PNG, GIF, BMP or WEBP"
# HEIC/HEIF (the iPhone camera's format) is not read: no decoder the project keeps reads it (Pillow needs a plugin,
# tf.data none). A file of it is named as such, with how to convert it (`is_heif`, HEIF_HINT).
HEIF_EXTENSIONS = (".heic", ".heif", ".hif")
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")
HEIF_HINT = (
    "a HEIC/HEIF photo (the iPhone camera's format), which this app cannot read: convert it to JPEG first "
    "(on the iPhone: Settings > Camera > Formats > Most Compatible takes JPEGs from then on)"
)
# The largest image file read, uploaded or inline (the app) or named (batch_predict): far above any photo.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


def is_heif(name: str, head: bytes = b"") -> bool:
    """Whether a file is HEIC/HEIF, by its name's extension or its first 12 bytes (an ISO box `ftyp` of a HEIF
    major brand; AVIF's is `avif`, not matched)."""
    return name.lower().endswith(HEIF_EXTENSIONS) or (head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS)


def is_image_file(path) -> bool:
    """A file (a `pathlib.Path`) named as an image in one of the formats, and not hidden."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
