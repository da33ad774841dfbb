"""Picture checks: the attachment's metadata first, then its bytes, then a file Kling will take.

Two stages, so bad input is refused as early as possible:

1. `check_metadata` looks at what Discord reports (content type, size, width, height) before anything is
   downloaded, and refuses at once what can never work.
2. `ImageChecker.fetch` downloads the bytes (size-capped, time-limited, no credentials) and `inspect_bytes`
   decodes them in a bounded thread pool, never on the event loop. It refuses empty, truncated, disguised
   and decompression-bomb files, measures the picture the way it is displayed (after its EXIF orientation)
   and returns either the file unchanged or an upright JPEG/PNG re-encoding of it that fits in 10 MB.

Phones' pictures are taken as they come: HEIC/HEIF (read with pillow-heif) and AVIF (Pillow's own plugin)
are converted, and large photos are shrunk. Memory per decode is bounded: a JPEG larger than
`MAX_UPLOAD_PIXELS` is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg scales while decoding), other formats
are decoded whole up to `MAX_DECODE_PIXELS`, and a progressive JPEG's whole-image coefficient buffer counts
against the same bound. What cannot be decoded within it is refused before any pixel is allocated.

Every refusal is a `MediaRejected` whose `user_message` names the attachment (`label`), says what is wrong
and what to do about it. Nothing here needs Discord.

This module holds the limits, the types and stage 1 with the checks both stages share; stage 2's decoding
is in bot/picture_decode.py (`inspect_bytes`) and the re-encoding in bot/picture_encode.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from PIL import ExifTags, Image

from bot.errors import InputRefused
from bot.i18n import _

MAX_IMAGE_BYTES = 10_000_000
# The largest file downloaded from Discord (MEDIA__MAX_DOWNLOAD_MB); larger pictures are shrunk to fit Kling.
DEFAULT_MAX_DOWNLOAD_BYTES = 50_000_000
MIN_SIDE = 300
MIN_RATIO, MAX_RATIO = 0.40, 2.50
# What one decode may hold: pixels decoded at once (Pillow keeps 4 bytes per pixel, so 200 MB), or the same
# bytes of a progressive JPEG's coefficient buffer plus its decoded pixels. Checked on the header, before
# any pixel is allocated; 50 MP covers the 48 MP HEIF photos of recent phones.
MAX_DECODE_PIXELS = 50_000_000
MAX_DECODE_BYTES = 4 * MAX_DECODE_PIXELS
# Larger pictures are re-encoded at this size: 4000×3000, far above the video's resolution. It is also the
# size a large JPEG is decoded at (or the nearest 1/2, 1/4, 1/8 above it).
MAX_UPLOAD_PIXELS = 12_000_000
# Beyond the largest phone sensors (200 MP): even decoded at 1/8, a bigger JPEG costs seconds of CPU.
MAX_SOURCE_PIXELS = 260_000_000


# Content types that say "image" but that the bot cannot convert for Kling.
_UNSUPPORTED_IMAGE_TYPES = {
    "image/svg+xml": _("an SVG drawing"),
}
_JPEG_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg"})
_FILE_STEMS = {"image": "start", "end image": "end"}
_WHAT_TO_ATTACH = _("Please attach a JPEG, PNG, HEIC or WebP picture.")
# The attachment's name in a sentence, in the member's language (the label itself stays the English key).
_LABELS = {"image": _("image"), "end image": _("end image"), "last frame": _("last frame")}


def label_name(label: str) -> str:
    """The attachment's name in a sentence ("image", "end image"), as a message in the reader's language."""
    return _label(label)


def _label(label: str) -> str:
    return _LABELS.get(label, label)


class MediaRejected(InputRefused):
    """The attachment cannot be used as a picture for Kling; `user_message` says why and what to do."""


class PictureShapeRefused(MediaRejected):
    """Refused only for its shape or size (aspect ratio, or a side under MIN_SIDE): a picture the bot can
    fix by cropping, padding or scaling up (bot/picture_fix.py). `width`/`height` as displayed."""

    def __init__(self, user_message: str, *, width: int, height: int, label: str) -> None:
        super().__init__(user_message)
        self.width, self.height, self.label = width, height, label


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """What Discord reports about an attachment before it is downloaded."""

    filename: str
    content_type: str | None
    size: int
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """A picture ready for upload: upright, JPEG or PNG, at most 10 MB."""

    data: bytes
    content_type: str  # "image/jpeg" or "image/png"
    filename: str  # ASCII, from the label: "start.jpg", "end.png"
    width: int  # as displayed (upright)
    height: int
    reencoded: bool


# --- Checks shared by both stages -------------------------------------------------------------------


def _megabytes_up(size: int) -> str:
    # Rounded up, so 10_000_001 bytes reads "10.1 MB" and never looks like it was within the limit.
    return f"{math.ceil(size / 100_000) / 10:.1f} MB"


def _limit_megabytes(limit: int) -> str:
    return f"{limit / 1_000_000:g} MB"


def _ratio_within_limits(width: int, height: int) -> bool:
    return MIN_RATIO <= width / height <= MAX_RATIO


def _format_ratio(ratio: float) -> str:
    # Two decimals unless that would round an out-of-range ratio onto the limit ("2.50" for 2.504).
    text = f"{ratio:.2f}"
    for decimals in range(3, 7):
        if not MIN_RATIO <= float(text) <= MAX_RATIO:
            break
        text = f"{ratio:.{decimals}f}"
    return text


def _check_dimensions(width: int, height: int, label: str) -> None:
    """Minimum side and aspect ratio, on the picture as displayed."""
    if min(width, height) < MIN_SIDE:
        raise PictureShapeRefused(
            _(
                "The {label} is {width}×{height} px; Kling needs at least {side}×{side} px. "
                "Please use a larger picture.",
                label=_label(label),
                width=width,
                height=height,
                side=MIN_SIDE,
            ),
            width=width,
            height=height,
            label=label,
        )
    if not _ratio_within_limits(width, height):
        values: dict[str, object] = {
            "label": _label(label),
            "width": width,
            "height": height,
            "ratio": _format_ratio(width / height),
            "low": f"{MIN_RATIO:.2f}",
            "high": f"{MAX_RATIO:.2f}",
        }
        message = (
            _(
                "The {label} is {width}×{height} px, a width-to-height ratio of {ratio}; Kling needs a "
                "ratio between {low} and {high}. Please crop it to be less wide.",
                **values,
            )
            if width > height
            else _(
                "The {label} is {width}×{height} px, a width-to-height ratio of {ratio}; Kling needs a "
                "ratio between {low} and {high}. Please crop it to be less tall.",
                **values,
            )
        )
        raise PictureShapeRefused(
            message,
            width=width,
            height=height,
            label=label,
        )


def _check_download_size(size: int, label: str, limit: int) -> None:
    if size <= 0:
        raise MediaRejected(
            _("The {label} is an empty file. Please attach the picture again.", label=_label(label))
        )
    if size > limit:
        raise _over_download_cap(f"{_megabytes_up(size)}", label, limit)


def _over_download_cap(size_text: str, label: str, limit: int) -> MediaRejected:
    return MediaRejected(
        _(
            "The {label} is {size}; the bot takes pictures of at most {limit}. "
            "Please use a smaller or more compressed picture.",
            label=_label(label),
            size=size_text,
            limit=_limit_megabytes(limit),
        )
    )


def _megapixels(width: int, height: int) -> str:
    return _(
        "{width}×{height} px ({megapixels} megapixels)",
        width=width,
        height=height,
        megapixels=f"{width * height / 1_000_000:.0f}",
    )


def _check_pixel_count(width: int, height: int, label: str, *, scalable: bool) -> None:
    """Refuses what cannot be decoded within the bound: `scalable` when it is a JPEG (decoded reduced)."""
    if width * height > MAX_SOURCE_PIXELS:
        raise MediaRejected(
            _(
                "The {label} is {size}; the limit is {limit} megapixels. Please use a smaller picture.",
                label=_label(label),
                size=_megapixels(width, height),
                limit=MAX_SOURCE_PIXELS // 1_000_000,
            )
        )
    if not scalable and width * height > MAX_DECODE_PIXELS:
        raise MediaRejected(
            _(
                "The {label} is {size}; the bot opens pictures of up to {limit} megapixels, or JPEG photos "
                "of up to {jpeg_limit}. Please use a smaller picture, or save it as JPEG.",
                label=_label(label),
                size=_megapixels(width, height),
                limit=MAX_DECODE_PIXELS // 1_000_000,
                jpeg_limit=MAX_SOURCE_PIXELS // 1_000_000,
            )
        )


# --- Stage 1: metadata ------------------------------------------------------------------------------


def check_metadata(
    info: AttachmentInfo, *, label: str = "image", max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
) -> None:
    """Refuses, without downloading anything, an attachment that Discord already describes as unusable.

    `max_bytes` is the download cap (MEDIA__MAX_DOWNLOAD_MB): larger files are never downloaded, smaller ones
    over Kling's 10 MB are shrunk later. Unknown facts (no content type, no dimensions) are not held against
    it: the bytes decide later. Ratio and minimum side do not depend on a quarter turn (the ratio range is
    symmetric: 0.40 = 1/2.50), so Discord's dimensions can be checked whether or not they are before EXIF
    rotation.
    """
    media_type = _check_content_type(info.content_type, label)
    _check_download_size(info.size, label, max_bytes)
    if info.width is not None and info.height is not None and info.width > 0 and info.height > 0:
        # Only a JPEG can be decoded reduced; without a content type the bytes decide.
        scalable = media_type is None or media_type in _JPEG_TYPES
        _check_pixel_count(info.width, info.height, label, scalable=scalable)
        _check_dimensions(info.width, info.height, label)


def _check_content_type(content_type: str | None, label: str) -> str | None:
    if not content_type:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not media_type.startswith("image/"):
        raise MediaRejected(
            _(
                "The {label} was sent as {media_type}, not as a picture. {what_to_attach}",
                label=_label(label),
                media_type=media_type,
                what_to_attach=_WHAT_TO_ATTACH,
            )
        )
    if media_type in _UNSUPPORTED_IMAGE_TYPES:
        raise _unsupported_kind(_UNSUPPORTED_IMAGE_TYPES[media_type], label)
    return media_type


def _unsupported_kind(kind: str, label: str) -> MediaRejected:
    return MediaRejected(
        _(
            "The {label} is {kind}, which Kling cannot take. Please export it as JPEG or PNG and attach "
            "that.",
            label=_label(label),
            kind=kind,
        )
    )


# --- Shared by decoding and re-encoding ------------------------------------------------------------


def _orientation(image: Image.Image) -> int:
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    # Out-of-range values are ignored, as ImageOps.exif_transpose ignores them.
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _file_name(label: str, extension: str) -> str:
    stem = _FILE_STEMS.get(label) or re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "image"
    return f"{stem}.{extension}"
