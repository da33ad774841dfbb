"""Real image files made in memory with Pillow, for the media tests."""

from __future__ import annotations

import random
import struct
import zlib
from io import BytesIO
from typing import Any

from PIL import ExifTags, Image

RED = (220, 20, 20)
BLUE = (20, 40, 200)
GREEN = (20, 200, 40)

# The transpose that turns a picture into what a camera stores for each EXIF orientation, i.e. the
# inverse of what a viewer (and ImageOps.exif_transpose) applies to show it upright.
STORED_FOR_ORIENTATION: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def marked(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A blue picture with a red block in its top-left corner, so its orientation can be read back."""
    image = Image.new("RGB", size, BLUE)
    block = (0, 0, max(1, size[0] // 4), max(1, size[1] // 4))
    image.paste(RED, block)
    return image.convert(mode)


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 1) -> Image.Image:
    """Random pixels: they barely compress, which makes files large on purpose."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, size, random.Random(seed).randbytes(size[0] * size[1] * bands))


def exif_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return exif.tobytes()


def as_stored(upright: Image.Image, orientation: int) -> Image.Image:
    """What a camera writes for `upright` with this orientation tag."""
    transpose = STORED_FOR_ORIENTATION[orientation]
    return upright if transpose is None else upright.transpose(transpose)


def rotated_jpeg(upright: Image.Image, orientation: int, quality: int = 90) -> bytes:
    stored = as_stored(upright, orientation)
    return encode(stored, "JPEG", quality=quality, exif=exif_orientation(orientation))


def jpeg(size: tuple[int, int] = (400, 400), mode: str = "RGB", **params: Any) -> bytes:
    return encode(marked(size, mode), "JPEG", quality=90, **params)


def png(size: tuple[int, int] = (400, 400), mode: str = "RGB", **params: Any) -> bytes:
    return encode(marked(size, mode), "PNG", **params)


def half_transparent(size: tuple[int, int] = (400, 400)) -> Image.Image:
    """An RGBA picture whose right half is fully transparent."""
    image = marked(size, "RGBA")
    image.paste((0, 0, 0, 0), (size[0] // 2, 0, size[0], size[1]))
    return image


def animated(fmt: str, size: tuple[int, int] = (400, 400)) -> bytes:
    """Three frames, red, green, blue: the first frame is the red one."""
    frames = [Image.new("RGB", size, colour) for colour in (RED, GREEN, BLUE)]
    if fmt == "GIF":
        frames = [frame.convert("P", palette=Image.Palette.ADAPTIVE) for frame in frames]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_file(width: int, height: int, bit_depth: int, colour_type: int, pixels: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(pixels))
        + _png_chunk(b"IEND", b"")
    )


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width`×`height` pixels (a decompression bomb's first bytes)."""
    return _png_file(width, height, 8, 0, b"\0" * 1024)


def png_rgb16(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    """A 48-bit RGB PNG (Pillow opens it as 8-bit "RGB" but cannot write one), written by hand."""
    width, height = size
    row = b"\0" + struct.pack(">HHH", *colour) * width  # filter byte 0, then 16-bit big-endian samples
    return _png_file(width, height, 16, 2, row * height)
