"""The re-encoding of a picture that cannot be sent as it is (bot/picture_decode.py decides): upright, in
"RGB"/"L" as JPEG or, when transparency is really used, as PNG, its colour profile converted or kept where
it matches, shrunk to MAX_UPLOAD_PIXELS, then to lower JPEG quality and smaller sizes (never below
MIN_SIDE or out of the ratio limits) until it fits `max_bytes`.
"""

from __future__ import annotations

import logging
import math
from io import BytesIO

from PIL import Image, ImageCms, ImageOps

from bot.i18n import _
from bot.icc import icc_from_nclx
from bot.media import (
    MAX_UPLOAD_PIXELS,
    MIN_SIDE,
    MediaRejected,
    PreparedImage,
    _file_name,
    _label,
    _limit_megabytes,
    _orientation,
    _ratio_within_limits,
)

# The picture checks' logger, whichever of their modules logs.
log = logging.getLogger("bot.media")

# Quality steps tried before the picture is made smaller.
JPEG_QUALITIES = (92, 85, 75)


def _reencode(image: Image.Image, label: str, max_bytes: int) -> PreparedImage:
    # A HEIF may describe its colour by an nclx box (many Android phones' Display P3) rather than an ICC
    # profile: the output carries it as an ICC profile, or its wide gamut would be read as sRGB.
    icc_profile = image.info.get("icc_profile") or icc_from_nclx(image.info.get("nclx_profile"))
    # Upright, and without EXIF: the orientation is applied once, here, and never again by a viewer.
    # An upright picture is not copied: at 50 MP a copy is another 200 MB.
    upright = ImageOps.exif_transpose(image) if _orientation(image) != 1 else image
    pixels, transparent = _output_pixels(upright, icc_profile if isinstance(icc_profile, bytes) else None)
    del upright
    pixels = _within_upload_pixels(pixels)
    profile = _matching_profile(icc_profile, pixels.mode)
    data, (width, height) = _encode_within(
        pixels, as_png=transparent, icc_profile=profile, max_bytes=max_bytes
    )
    if data is None:
        raise MediaRejected(
            _(
                "The {label} cannot be made smaller than {limit} without going below {side}×{side} px. "
                "Please use a smaller or simpler picture.",
                label=_label(label),
                limit=_limit_megabytes(max_bytes),
                side=MIN_SIDE,
            )
        )
    extension, content_type = ("png", "image/png") if transparent else ("jpg", "image/jpeg")
    return PreparedImage(data, content_type, _file_name(label, extension), width, height, reencoded=True)


def _output_pixels(image: Image.Image, icc_profile: bytes | None) -> tuple[Image.Image, bool]:
    """Converts to "RGB"/"L" (sent as JPEG) or, when transparency is really used, "RGBA"/"LA" (PNG)."""
    mode = image.mode
    if mode == "1":
        return image.convert("L"), False
    if mode.startswith(("I", "F")):
        return _grey_to_8_bits(image), False
    if mode == "CMYK":
        return _cmyk_to_rgb(image, icc_profile), False
    if mode in ("RGB", "L") and "transparency" not in image.info:
        return image, False
    # Palette, colour-key transparency, premultiplied or straight alpha: keep the alpha only if a pixel
    # is at least partly see-through; a fully opaque alpha channel is dropped and the picture sent as JPEG.
    grey = mode in ("L", "LA", "La")
    with_alpha = image.convert("LA" if grey else "RGBA")
    alpha_low, _ = with_alpha.getchannel("A").getextrema()
    if isinstance(alpha_low, (int, float)) and alpha_low < 255:
        return with_alpha, True
    return with_alpha.convert("L" if grey else "RGB"), False


def _within_upload_pixels(image: Image.Image) -> Image.Image:
    """The picture shrunk to at most MAX_UPLOAD_PIXELS, its ratio kept; unchanged when already within."""
    width, height = image.size
    if width * height <= MAX_UPLOAD_PIXELS:
        return image
    size = _scaled_size(image.size, math.sqrt(MAX_UPLOAD_PIXELS / (width * height)))
    # reducing_gap: a fast box reduction first, then Lanczos on the last factor of 3 (as good, much faster).
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _grey_to_8_bits(image: Image.Image) -> Image.Image:
    # Pillow's convert("L") clips 16- and 32-bit values at 255 instead of scaling them: scale first.
    if image.mode.startswith("I;16"):
        return image.convert("I").point(lambda value: value / 256).convert("L")
    _, high = image.getextrema()
    scale = 255 / high if isinstance(high, (int, float)) and high > 255 else 1.0
    return image.point(lambda value: value * scale).convert("L")


def _cmyk_to_rgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    # With its embedded profile, print colours map to sRGB properly; Pillow's plain convert is a rough
    # formula, kept as the fallback for files without (or with a broken) profile.
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(BytesIO(icc_profile))
            converted = ImageCms.profileToProfile(
                image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError) as error:
            log.info("CMYK profile unusable, converting without it: %s", error)
    return image.convert("RGB")


def _matching_profile(icc_profile: object, mode: str) -> bytes | None:
    """The source's ICC profile, kept only when it describes the output's colour space.

    A CMYK profile on an RGB file (after conversion) would make viewers show wrong colours; a Display P3
    profile on an RGB file keeps them right. Bytes 16-19 of a profile name its colour space.
    """
    if not isinstance(icc_profile, bytes) or len(icc_profile) < 20:
        return None
    space = icc_profile[16:20]
    wanted = b"GRAY" if mode in ("L", "LA") else b"RGB "
    return icc_profile if space == wanted else None


def _encode_within(
    image: Image.Image, *, as_png: bool, icc_profile: bytes | None, max_bytes: int
) -> tuple[bytes | None, tuple[int, int]]:
    """Encodes at full size, then lower JPEG quality, then smaller sizes (never below MIN_SIDE).

    Returns (None, size) when even the smallest allowed size does not fit.
    """
    qualities: tuple[int | None, ...] = (None,) if as_png else JPEG_QUALITIES
    scale = 1.0
    while True:
        size = _scaled_size(image.size, scale)
        frame = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
        for quality in qualities:
            encoded = _encode(frame, quality, icc_profile)
            if len(encoded) <= max_bytes:
                return encoded, size
        if min(size) <= MIN_SIDE:
            return None, size
        # File size grows about with the pixel count: shrink the area by the overshoot, with some margin,
        # and by at least 10% so the loop always reaches the minimum size.
        scale *= min(0.9, math.sqrt(max_bytes / len(encoded)) * 0.95)


def _scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """The size at `scale`, keeping the ratio, the short side never below MIN_SIDE."""
    width, height = size
    short, long = min(size), max(size)
    scale = max(scale, MIN_SIDE / short)
    if scale >= 1:
        return size
    new_short = max(MIN_SIDE, round(short * scale))
    new_long = max(new_short, round(new_short * long / short))
    # Rounding must not push a ratio that passed the check out of range.
    while True:
        candidate = (new_long, new_short) if width > height else (new_short, new_long)
        if _ratio_within_limits(*candidate) or new_long <= new_short:
            return candidate
        new_long -= 1


def _encode(image: Image.Image, quality: int | None, icc_profile: bytes | None) -> bytes:
    # No exif= argument: Pillow then writes no EXIF at all, so no orientation can be applied twice.
    buffer = BytesIO()
    options: dict[str, object] = {"icc_profile": icc_profile} if icc_profile else {}
    if quality is None:
        image.save(buffer, "PNG", **options)
    else:
        image.save(buffer, "JPEG", quality=quality, **options)
    return buffer.getvalue()
