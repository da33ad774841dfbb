"""Stage 2 of the picture checks (bot/media.py): `inspect_bytes` decodes a downloaded picture in a worker
thread, within the memory bounds, refuses what is empty, truncated, disguised or a decompression bomb
(saying what the file really is), and returns it unchanged when any decoder shows it the way Pillow did,
or hands it to bot/picture_encode.py to be re-encoded. Importing it sets Pillow's bomb limit and registers
the HEIF opener.
"""

from __future__ import annotations

import codecs
import logging
import math
import warnings
from io import BytesIO

import pillow_heif
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from bot.i18n import _
from bot.media import (
    _WHAT_TO_ATTACH,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    MAX_DECODE_BYTES,
    MAX_IMAGE_BYTES,
    MAX_SOURCE_PIXELS,
    MAX_UPLOAD_PIXELS,
    MediaRejected,
    PreparedImage,
    _check_dimensions,
    _check_download_size,
    _check_pixel_count,
    _file_name,
    _label,
    _megapixels,
    _orientation,
    _unsupported_kind,
)
from bot.picture_encode import _reencode
from bot.picture_metadata import strip_metadata

# The picture checks' logger, whichever of their modules logs.
log = logging.getLogger("bot.media")

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
_PNG_END = b"IEND\xaeB`\x82"
# Orientations 5 to 8 turn the picture a quarter: its displayed width is its stored height.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_KIND_SVG = _("an SVG drawing")
_KIND_PSD = _("a Photoshop file")
# ISO media brands of HEIF and AVIF pictures (the "ftyp" box); other brands are videos.
_STILL_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)


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
