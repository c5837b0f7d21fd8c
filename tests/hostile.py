"""Hostile image files, made in code: bombs, disallowed formats in disguise, broken and truncated files.

`corpus()` returns file name -> (bytes, expected): "error" (a named ImageError), or for an odd but
valid file the pixels it must be classified as (an array, or "any" where only the other tests'
parity rules say what they are). `largest_accepted_png()` is the costliest upload the app decodes
rather than refuses. `running_app` starts the real app to send them to, and `status_kb` reads its
memory. The benchmark `benchmarks/decode.py` sends the same files.
"""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, features

from classifier.data.images import MAX_PIXELS

ROOT = Path(__file__).resolve().parents[1]

BOMB_SIZE = (9_999, 10_000)  # the canvases: 100 million pixels
RNG = np.random.default_rng(7)
SMALL = (RNG.random((48, 64, 3)) * 255).astype(np.uint8)


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


# -- PNG, chunk by chunk ---------------------------------------------------------------------------
def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zeros_zlib(size: int, block: int = 8 << 20) -> bytes:
    """A zlib stream of `size` zero bytes, built from repeated full-flush blocks (seconds faster than
    compressing gigabytes): each block starts from an empty dictionary, so the same block repeats."""

    def deflated(length: int) -> bytes:
        compressor = zlib.compressobj(9)
        return (compressor.compress(bytes(length)) + compressor.flush(zlib.Z_FULL_FLUSH))[2:]  # no zlib header

    count, rest = divmod(size, block)
    body = deflated(block) * count + (deflated(rest) if rest else b"")
    adler = ((size % 65521) << 16) | 1  # Adler-32 of zeros: A stays 1, B counts the bytes
    return b"\x78\xda" + body + b"\x03\x00" + struct.pack(">I", adler)  # \x03\x00: an empty final block


def zeros_png(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """A valid all-zero PNG of any size: tiny on disk, `width * height` pixels once decoded."""
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row = 1 + (width * samples * bit_depth + 7) // 8  # filter byte + packed samples
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    chunks = [png_chunk(b"IHDR", header)]
    if colour_type == 3:
        chunks.append(png_chunk(b"PLTE", bytes(3)))
    chunks += [png_chunk(b"IDAT", zeros_zlib(row * height)), png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def with_chunk_after_header(png: bytes, kind: bytes, data: bytes) -> bytes:
    """`png` with one more chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    return png[:33] + png_chunk(kind, data) + png[33:]


# -- GIF, byte by byte -----------------------------------------------------------------------------
def gif(screen: tuple[int, int], frames: list[tuple[int, int]], complete: bool = True) -> bytes:
    """A GIF whose logical screen is `screen` (width, height), with frames of the given sizes at (0, 0).

    Each frame's pixel data is one LZW code (index 0), valid for a 1x1 frame and short for a larger
    one; `complete=False` leaves out the trailer. `gif((9_999, 10_000), [(1, 1)])` is 35 bytes.
    """
    data = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"  # 2 colours
    for width, height in frames:
        data += b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
        data += b"\x02\x02\x44\x01\x00"  # LZW minimum code size 2; codes clear, 0, end; block end
    return data + (b";" if complete else b"")


# -- other formats ---------------------------------------------------------------------------------
def psd_46_bytes() -> bytes:
    """A Photoshop header that ends where the image data should start (Pillow's PSD reader: EOFError)."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 64, 64, 8, 3)  # version 1, 3 channels, 64x64, 8-bit RGB
    return (header + struct.pack(">III", 0, 0, 0) + b"\x00\x00" + b"\x00" * 6)[:46]


def fits() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2"]
    cards += ["NAXIS1  =                   16", "NAXIS2  =                   16", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode()
    return header + bytes(2880)


def jpeg_declaring(width: int, height: int, progressive: bool, first_scan_components: int = 3) -> bytes:
    """A small real JPEG whose frame header (SOF) claims `width` x `height`; its data runs out early.
    With `first_scan_components` below 3, its first scan claims to hold fewer components than the frame."""
    data = bytearray(encode(Image.fromarray(SMALL), "JPEG", quality=90, progressive=progressive))
    sof = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    data[data.index(b"\xff\xda") + 4] = first_scan_components
    return bytes(data)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def corpus() -> dict[str, tuple[bytes, str | np.ndarray]]:
    """Every kind of hostile file the issue lists, by file name: (bytes, "error" | "any" | expected pixels)."""
    rgb = Image.fromarray(SMALL)
    exif = rgb.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    jpeg = encode(rgb, "JPEG")
    sixteen_bit = (RNG.random((48, 64)) * 65535).astype(np.uint16)
    files = {
        # declared canvases far above the pixel limit: refused before anything is decoded
        "canvas_35_bytes.gif": (gif(BOMB_SIZE, [(1, 1)]), "error"),
        "one_bit_bomb.png": (zeros_png(*BOMB_SIZE, bit_depth=1, colour_type=0), "error"),
        "rgba16_bomb.png": (zeros_png(*BOMB_SIZE, bit_depth=16, colour_type=6), "error"),
        "palette_bomb.png": (zeros_png(*BOMB_SIZE, bit_depth=1, colour_type=3), "error"),
        "animated_huge_frames.gif": (gif((9_000, 9_000), [(9_000, 9_000)] * 3), "error"),
        "header_only.bmp": (b"BM" + struct.pack("<IHHIIiiHHII", 0, 0, 0, 54, 40, 30_000, 30_000, 1, 24, 0, 0), "error"),
        "progressive_declaring_48mp.jpg": (jpeg_declaring(8_000, 6_000, progressive=True), "error"),
        # a one-pass JPEG is decoded in strips at 1/8 scale, within budget (libjpeg, here and in tf.data, greys
        # what its data leaves out)
        "baseline_declaring_48mp.jpg": (jpeg_declaring(8_000, 6_000, progressive=False), "any"),
        "non_interleaved_declaring_48mp.jpg": (jpeg_declaring(8_000, 6_000, False, first_scan_components=1), "error"),
        "declaring_65535x65535.jpg": (jpeg_declaring(65_535, 65_535, progressive=False), "error"),
        # formats outside the allowlist, under their own name and disguised as allowed ones
        "photoshop_46_bytes.psd": (psd_46_bytes(), "error"),
        "photoshop_46_bytes.png": (psd_46_bytes(), "error"),
        "tiff.tif": (encode(rgb, "TIFF"), "error"),
        "tiff_named.png": (encode(rgb, "TIFF"), "error"),
        "postscript.eps": (encode(rgb, "EPS"), "error"),
        "postscript_named.jpg": (encode(rgb, "EPS"), "error"),
        "fits_named.png": (fits(), "error"),
        "icon_named.bmp": (encode(rgb, "ICO"), "error"),
        # broken files
        "empty.jpg": (b"", "error"),
        "text.jpg": (b"this is not an image\n" * 10, "error"),
        "html.png": (b"<html><body>hello</body></html>", "error"),
        "truncated.jpg": (truncated(encode(rgb, "JPEG", quality=95)), "error"),
        "truncated.png": (truncated(encode(rgb, "PNG")), "error"),
        "truncated.gif": (truncated(encode(rgb.convert("P"), "GIF")), "error"),
        "truncated.webp": (truncated(encode(rgb, "WEBP", lossless=True)), "error"),
        "truncated.bmp": (truncated(encode(rgb, "BMP")), "error"),
        "png_signature_only.png": (b"\x89PNG\r\n\x1a\n", "error"),
        # odd but valid: classified as these pixels
        "garbage_exif_chunk.png": (with_chunk_after_header(encode(rgb, "PNG"), b"eXIf", b"garbage!garbage!"), SMALL),
        "garbage_exif_block.jpg": (encode(rgb, "JPEG", exif=b"Exif\x00\x00garbage!"), decoded(jpeg)),
        "rotated.jpg": (encode(rgb, "JPEG", exif=exif), np.rot90(decoded(jpeg), -1)),
        "cmyk.jpg": (encode(rgb.convert("CMYK"), "JPEG"), "any"),
        "sixteen_bit.png": (encode(Image.fromarray(sixteen_bit), "PNG"), (sixteen_bit >> 8).astype(np.uint8)),
        "animated.webp": (encode(rgb, "WEBP", lossless=True, save_all=True, append_images=[rgb.rotate(90)]), SMALL),
        "canvas_larger_than_frame.gif": (gif((300, 200), [(1, 1)]), np.zeros((1, 1, 3), np.uint8)),  # the frame alone
        "png_named.jpg": (encode(rgb, "PNG"), SMALL),
    }
    for name, format, feature in (("jpeg2000_named.jpg", "JPEG2000", "jpg_2000"), ("avif_named.png", "AVIF", "avif")):
        if features.check(feature):  # Pillow writes these only when built with their libraries
            files[name] = (encode(rgb, format), "error")
    return files


def largest_accepted_png() -> bytes:
    """The costliest image the app decodes rather than refuses: 16-bit RGBA, just under the pixel limit."""
    side = int(MAX_PIXELS**0.5)
    return zeros_png(side, side, bit_depth=16, colour_type=6)


@contextlib.contextmanager
def running_server(argv: list[str], port: int, log_path: Path, cwd: Path = ROOT, timeout: float = 180):
    """`argv` (a Gradio server on 127.0.0.1:`port`) in a subprocess run in `cwd`, once it answers: yields (process,
    url); stopped after. (benchmarks/app_latency.py starts its servers with it too.)"""
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "w") as log:
        server = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=log)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(url + "config", timeout=5)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{' '.join(argv[1:2])} did not start:\n{log_path.read_text()}") from None
                time.sleep(0.5)
        yield server, url
    finally:
        server.terminate()
        server.wait(timeout=30)


def running_app(model_dir: Path, port: int, log_path: Path):
    """`python app.py --model model_dir --port port` in a subprocess, once it serves: yields (process, url)."""
    return running_server([sys.executable, "app.py", "--model", str(model_dir), "--port", str(port)], port, log_path)


def status_kb(pid: int, field: str) -> int:
    """A memory figure of a live process from /proc (VmRSS: now; VmHWM: its peak so far), in KiB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line for line in lines if line.startswith(field + ":")).split()[1])
