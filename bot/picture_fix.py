"""Fixing a picture Kling would refuse for its shape or size, instead of refusing it.

Pure Pillow, no I/O: crop to the nearest allowed aspect ratio (centred), pad to it (blurred or plain
edges), or scale up to Kling's minimum side. Every fix returns a picture Kling accepts by shape and size:
a crop or pad of a small picture is scaled up as well. Blocking: run it in a worker thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from io import BytesIO

from PIL import ExifTags, Image, ImageFilter, ImageOps, ImageStat

from bot.i18n import _
from bot.media import MAX_RATIO, MAX_UPLOAD_PIXELS, MIN_RATIO, MIN_SIDE
from bot.picture_decode import READABLE_FORMATS, _reduce_jpeg_decode

# The blur of padded edges, relative to the picture's long side: enough to read as background.
BLUR_FRACTION = 0.04


class Fix(enum.StrEnum):
    CROP = "crop"
    PAD_BLUR = "padblur"
    PAD_PLAIN = "padplain"
    UPSCALE = "upscale"


FIX_LABELS = {
    Fix.CROP: _("Crop"),
    Fix.PAD_BLUR: _("Pad (blurred edges)"),
    Fix.PAD_PLAIN: _("Pad (plain edges)"),
    Fix.UPSCALE: _("Upscale to {side} px", side=MIN_SIDE),
}


def fixes_for(width: int, height: int) -> list[Fix]:
    """The fixes that make a `width`×`height` picture acceptable; empty when it already is."""
    if not MIN_RATIO <= width / height <= MAX_RATIO:
        return [Fix.CROP, Fix.PAD_BLUR, Fix.PAD_PLAIN]
    if min(width, height) < MIN_SIDE:
        return [Fix.UPSCALE]
    return []


def nearest_ratio(width: int, height: int) -> float:
    return min(max(width / height, MIN_RATIO), MAX_RATIO)


def apply_fix(image: Image.Image, fix: Fix) -> Image.Image:
    """The fixed picture (RGB or greyscale, upright): its ratio within 0.40-2.50, its short side ≥ 300 px."""
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if fix is Fix.CROP:
        image = crop_to_ratio(image)
    elif fix is Fix.PAD_BLUR:
        image = pad_to_ratio(image, blurred=True)
    elif fix is Fix.PAD_PLAIN:
        image = pad_to_ratio(image, blurred=False)
    return upscale_to_minimum(image)


def crop_to_ratio(image: Image.Image) -> Image.Image:
    """The centred crop with the nearest allowed aspect ratio (unchanged when already allowed)."""
    width, height = image.size
    ratio = nearest_ratio(width, height)
    if ratio == width / height:
        return image
    if width / height > ratio:  # too wide: keep the full height
        new_width = max(1, _round_into(height * ratio, lambda w: w / height, width))
        left = (width - new_width) // 2
        return image.crop((left, 0, left + new_width, height))
    new_height = max(1, _round_into(width / ratio, lambda h: width / h, height))
    top = (height - new_height) // 2
    return image.crop((0, top, width, top + new_height))


def pad_to_ratio(image: Image.Image, *, blurred: bool) -> Image.Image:
    """The picture centred on a canvas with the nearest allowed aspect ratio; the edges are the picture
    itself, enlarged and blurred, or its average colour."""
    width, height = image.size
    ratio = nearest_ratio(width, height)
    if ratio == width / height:
        return image
    if width / height > ratio:  # too wide: make it taller
        size = (width, _round_into(width / ratio, lambda h: width / h, None))
    else:
        size = (_round_into(height * ratio, lambda w: w / height, None), height)
    if size[0] * size[1] > MAX_UPLOAD_PIXELS:
        # A long strip's canvas could take gigabytes; what is uploaded is shrunk to this size anyway.
        scale = (MAX_UPLOAD_PIXELS / (size[0] * size[1])) ** 0.5
        smaller = (max(1, int(width * scale)), max(1, int(height * scale)))
        return pad_to_ratio(image.resize(smaller, Image.Resampling.LANCZOS), blurred=blurred)
    if blurred:
        background = ImageOps.fit(image, size, Image.Resampling.BILINEAR)
        radius = max(2, round(max(size) * BLUR_FRACTION))
        background = background.filter(ImageFilter.GaussianBlur(radius))
    else:
        mean = ImageStat.Stat(image).mean
        colour = tuple(round(v) for v in mean) if image.mode == "RGB" else round(mean[0])
        background = Image.new(image.mode, size, colour)
    background.paste(image, ((size[0] - width) // 2, (size[1] - height) // 2))
    return background


def upscale_to_minimum(image: Image.Image) -> Image.Image:
    """Scaled up (Lanczos) so the short side is at least MIN_SIDE; unchanged when it already is."""
    width, height = image.size
    short = min(width, height)
    if short >= MIN_SIDE:
        return image
    scale = MIN_SIDE / short
    size = (max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale)))
    if not MIN_RATIO <= size[0] / size[1] <= MAX_RATIO:
        size = (size[0] - 1, size[1]) if size[0] > size[1] else (size[0], size[1] - 1)
    return image.resize(size, Image.Resampling.LANCZOS)


def fixes_for_file(data: bytes) -> list[Fix]:
    """`fixes_for` the picture in `data`, measured as displayed (after its EXIF rotation)."""
    with Image.open(BytesIO(data), formats=READABLE_FORMATS) as image:
        width, height = image.size
        if image.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8):  # a quarter turn
            width, height = height, width
    return fixes_for(width, height)


def fix_file(data: bytes, fix: Fix) -> bytes:
    """The picture in `data` fixed, as PNG. Raises what Pillow raises for a file it cannot read (the
    bytes were checked by bot.media before a fix is offered)."""
    with Image.open(BytesIO(data), formats=READABLE_FORMATS) as image:
        if image.format in ("JPEG", "MPO"):
            _reduce_jpeg_decode(image, "picture")  # as bot.media reads it: a 240 MP one in 1/4 of the memory
        image.load()
        return encode_png(apply_fix(image, fix))


def encode_png(image: Image.Image) -> bytes:
    """Lossless, so a fix never costs quality; bot.media re-encodes it as JPEG if it is too large."""
    buffer = BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _round_into(value: float, ratio_of: Callable[[int], float], limit: int | None) -> int:
    """`value` rounded so the resulting ratio stays within the allowed range (and ≤ `limit`)."""
    for candidate in (round(value), int(value), int(value) + 1):
        if limit is not None and candidate > limit:
            continue
        if candidate > 0 and MIN_RATIO <= ratio_of(candidate) <= MAX_RATIO:
            return candidate
    return max(1, round(value))
