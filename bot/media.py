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
"""

from __future__ import annotations

import codecs
import logging
import math
import re
import warnings
from dataclasses import dataclass
from io import BytesIO

import pillow_heif
from PIL import ExifTags, Image, ImageCms, ImageOps, JpegImagePlugin, UnidentifiedImageError

from bot.errors import InputRefused
from bot.i18n import _
from bot.icc import icc_from_nclx
from bot.picture_metadata import strip_metadata

log = logging.getLogger(__name__)

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
# Pillow's own bomb check (a warning, an error at twice it) follows ours; the warning is made an error below.
Image.MAX_IMAGE_PIXELS = MAX_SOURCE_PIXELS
# HEIC/HEIF through libheif. Thumbnails, depth maps and auxiliary images are never used: not even parsed.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

# Only common photo formats are even parsed: Pillow knows dozens more (EPS runs Ghostscript, PSD, ICO...)
# whose parsers are needless attack surface for a member's upload. MPO (camera JPEGs) opens via "JPEG".
READABLE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")
# JPEG decoding scales by these factors at no extra memory (libjpeg's DCT scaling).
_JPEG_REDUCTIONS = (8, 4, 2)
# Formats that may reach Kling byte for byte, and the content type they are sent with.
_PASS_THROUGH_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png"}
_PASS_THROUGH_MODES = ("RGB", "L")
# Quality steps tried before the picture is made smaller.
JPEG_QUALITIES = (92, 85, 75)

_PNG_END = b"IEND\xaeB`\x82"
# Orientations 5 to 8 turn the picture a quarter: its displayed width is its stored height.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
# Content types that say "image" but that the bot cannot convert for Kling.
_UNSUPPORTED_IMAGE_TYPES = {
    "image/svg+xml": _("an SVG drawing"),
}
_KIND_SVG = _("an SVG drawing")
_KIND_PSD = _("a Photoshop file")
_JPEG_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg"})
_FILE_STEMS = {"image": "start", "end image": "end"}
# ISO media brands of HEIF and AVIF pictures (the "ftyp" box); other brands are videos.
_STILL_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)
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


# --- Stage 2: the bytes (synchronous; runs in the pool) --------------------------------------------


def inspect_bytes(
    data: bytes,
    *,
    label: str = "image",
    max_bytes: int = MAX_IMAGE_BYTES,
    max_input_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
) -> PreparedImage:
    """Decodes and checks a downloaded picture; returns it unchanged or re-encoded upright within `max_bytes`.

    Blocking and CPU-heavy: call it from a worker thread (`ImageChecker.prepare` does). Files up to
    `max_input_bytes` (the download cap) are accepted; `max_bytes` limits the file returned (Kling's 10 MB;
    tests lower it to exercise the shrinking cheaply).
    """
    _check_download_size(len(data), label, max_input_bytes)
    _treat_bomb_warnings_as_errors()
    try:
        with Image.open(BytesIO(data), formats=READABLE_FORMATS) as image:
            return _prepare_opened(image, data, label, max_bytes)
    except MediaRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise MediaRejected(
            _(
                "The {label} claims a size of far more than {limit} megapixels, so it was not opened. Please "
                "use a smaller picture.",
                label=_label(label),
                limit=MAX_SOURCE_PIXELS // 1_000_000,
            )
        ) from error
    except UnidentifiedImageError as error:
        raise _not_a_picture(data, label) from error
    except MemoryError as error:
        # Within the pixel cap this means the host is short of memory right now, not that the file is bad.
        raise MediaRejected(
            _(
                "The {label} could not be opened right now; please try again in a moment.",
                label=_label(label),
            ),
            retryable=True,
        ) from error
    except Exception as error:
        # Pillow reports damage with many types (OSError "truncated", SyntaxError, ValueError, EOFError,
        # struct.error, zlib.error...); to the member they all mean the same thing.
        log.info("undecodable %s: %s: %s", label, type(error).__name__, error)
        raise _damaged(label) from error


def _damaged(label: str) -> MediaRejected:
    return MediaRejected(
        _(
            "The {label} file is damaged or incomplete (it may have been cut off during upload). "
            "Please upload it again, or save it anew as JPEG or PNG.",
            label=_label(label),
        )
    )


def _treat_bomb_warnings_as_errors() -> None:
    # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that. warnings.catch_warnings() would change
    # the process-wide filter list from several threads at once (it is not thread-safe before Python 3.14),
    # so one "error" filter is kept at the front of the list instead; it is re-added only if something
    # (a test runner resetting filters, say) removed or shadowed it.
    filters = warnings.filters
    if not filters or filters[0][0] != "error" or filters[0][2] is not Image.DecompressionBombWarning:
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def _prepare_opened(image: Image.Image, data: bytes, label: str, max_bytes: int) -> PreparedImage:
    # The header gives the size without decoding: refuse a bomb before any pixel is allocated.
    is_jpeg = isinstance(image, JpegImagePlugin.JpegImageFile)
    _check_pixel_count(image.width, image.height, label, scalable=is_jpeg)
    orientation = _orientation(image)  # for PNG this decodes (eXIf may follow the pixels), within the cap
    width, height = _upright_size(image.size, orientation)
    _check_dimensions(width, height, label)
    if is_jpeg:
        _reduce_jpeg_decode(image, label)
    image.load()  # the full first frame: a truncated or corrupt file fails here
    # A file over Kling's limit is never sent as it is, even when it needs no other change.
    content_type = _unchanged_content_type(image, data, orientation) if len(data) <= max_bytes else None
    stripped = None if content_type is None else strip_metadata(data, content_type)
    if content_type is not None and stripped is not None:
        extension = "png" if content_type == "image/png" else "jpg"
        return PreparedImage(
            stripped, content_type, _file_name(label, extension), width, height, reencoded=False
        )
    return _reencode(image, label, max_bytes)


def _reduce_jpeg_decode(image: Image.Image, label: str) -> None:
    """Makes libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 of its size: the largest reduction that keeps
    at least MAX_UPLOAD_PIXELS. Refuses one whose decode would not fit MAX_DECODE_BYTES.

    A baseline JPEG is decoded a row of blocks at a time; a progressive one keeps every DCT coefficient of
    the whole picture (2 bytes each) until its last scan, whatever the reduction: that buffer counts too.
    """
    width, height = image.size
    factor = next((f for f in _JPEG_REDUCTIONS if (width // f) * (height // f) >= MAX_UPLOAD_PIXELS), 1)
    if factor > 1:
        image.draft(image.mode, (width // factor, height // factor))
    decoded = 4 * image.width * image.height
    if image.info.get("progressive") or image.info.get("progression"):
        decoded += _jpeg_coefficient_bytes(image, width, height)
    if decoded > MAX_DECODE_BYTES:
        raise MediaRejected(
            _(
                "The {label} is a progressive JPEG of {size}, which needs more memory to open than the bot "
                "allows ({limit} MB). Please save it as a standard (baseline) JPEG or use a smaller picture.",
                label=_label(label),
                size=_megapixels(width, height),
                limit=MAX_DECODE_BYTES // 1_000_000,
            )
        )


def _jpeg_coefficient_bytes(image: Image.Image, width: int, height: int) -> int:
    # `layer` lists each component's (id, horizontal sampling, vertical sampling, table) from the header.
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * 3
    h_max = max(int(layer[1]) for layer in layers) or 1
    v_max = max(int(layer[2]) for layer in layers) or 1
    blocks = 0
    for _component, h, v, _table in layers:
        blocks += math.ceil(width * int(h) / h_max / 8) * math.ceil(height * int(v) / v_max / 8)
    return blocks * 64 * 2


def _orientation(image: Image.Image) -> int:
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    # Out-of-range values are ignored, as ImageOps.exif_transpose ignores them.
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    width, height = size
    return (height, width) if orientation in _QUARTER_TURNS else (width, height)


def _unchanged_content_type(image: Image.Image, data: bytes, orientation: int) -> str | None:
    """The content type to send the file as it is, or None when it must be re-encoded.

    Unchanged only when any decoder shows it the way Pillow did: a plain upright RGB or greyscale JPEG/PNG,
    no transparency, no animation, 8 bits, and a file that ends where it should.
    """
    content_type = _PASS_THROUGH_TYPES.get(image.format or "")
    if content_type is None or image.mode not in _PASS_THROUGH_MODES or orientation != 1:
        return None
    if "transparency" in image.info or (image.format == "PNG" and getattr(image, "is_animated", False)):
        return None
    if image.format != "PNG":
        # Pillow decodes a JPEG missing its end marker; other decoders may not. strip_metadata rebuilds
        # the file up to its first image's end marker and gives None (re-encode) when there is none.
        return content_type
    # 16-bit RGB PNGs open as 8-bit "RGB"; the IHDR bit depth (byte 24) tells them apart.
    plain = len(data) > 24 and data[24] <= 8 and data.endswith(_PNG_END)
    return content_type if plain else None


def _file_name(label: str, extension: str) -> str:
    stem = _FILE_STEMS.get(label) or re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "image"
    return f"{stem}.{extension}"


def _not_a_picture(data: bytes, label: str) -> MediaRejected:
    if data[4:8] == b"ftyp" and data[8:12] in _STILL_BRANDS:
        # A HEIF or AVIF that neither libheif nor libavif could identify is damaged, not something else.
        return _damaged(label)
    kind = _describe_contents(data)
    if kind in (_KIND_SVG, _KIND_PSD):
        return _unsupported_kind(kind, label)
    if kind is None:
        return MediaRejected(
            _(
                "The {label} is not in a picture format the bot can read. {what_to_attach}",
                label=_label(label),
                what_to_attach=_WHAT_TO_ATTACH,
            )
        )
    return MediaRejected(
        _(
            "The {label} is {kind}, not a picture. {what_to_attach}",
            label=_label(label),
            kind=kind,
            what_to_attach=_WHAT_TO_ATTACH,
        )
    )


def _describe_contents(data: bytes) -> str | None:
    """Names what a file that is not a readable picture actually is, so the refusal can say it."""
    head = data[:1024]
    lowered = head.lstrip().lower()
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _("a ZIP archive")
    if head.startswith(b"%PDF"):
        return _("a PDF document")
    if head.startswith(b"8BPS"):
        return _KIND_PSD
    if head[4:8] == b"ftyp":
        return None if head[8:12] in _STILL_BRANDS else _("a video")
    if b"<svg" in lowered:
        return _KIND_SVG
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered:
        return _("a web page (HTML)")
    if _looks_like_text(head):
        return _("a text file")
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        # Incremental, so a character cut in two at the end of the sample does not count against it.
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char in "\r\n\t" for char in text)


# --- Re-encoding --------------------------------------------------------------------------------------


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
