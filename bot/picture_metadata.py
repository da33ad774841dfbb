"""Metadata removed from a picture that is sent as it is, without touching its pixels: the upload gets
a public URL. Split from bot/media.py (the picture checks call `strip_metadata`)."""

from __future__ import annotations

# The upload gets a public URL, so what a camera or phone wrote beside the pixels (GPS position, device,
# dates, names, comments) is removed. Kept: what changes how the pixels look (JFIF, ICC profile, Adobe
# colour transform; PNG colour chunks).
_JPEG_DROPPED_MARKERS = frozenset({0xE1, 0xEC, 0xED, 0xFE})  # APP1 EXIF/XMP, APP12, APP13 IPTC, COM
_PNG_DROPPED_CHUNKS = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def strip_metadata(data: bytes, content_type: str) -> bytes | None:
    """The same image without metadata, byte for byte the same pixels; None if the file's structure is
    not what it should be (the caller re-encodes it then). Only for upright files: EXIF goes too."""
    if content_type == "image/png":
        return _strip_png(data)
    return _strip_jpeg(data)


def _strip_jpeg(data: bytes) -> bytes | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    kept = [data[:2]]
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if length < 2 or at + 2 + length > len(data):
            return None
        if marker == 0xDA:  # start of scan: the compressed pixels and the rest follow as they are
            kept.append(data[at:])
            return b"".join(kept)
        if marker not in _JPEG_DROPPED_MARKERS:
            kept.append(data[at : at + 2 + length])
        at += 2 + length
    return None


def _strip_png(data: bytes) -> bytes | None:
    if not data.startswith(_PNG_SIGNATURE):
        return None
    kept = [_PNG_SIGNATURE]
    at = len(_PNG_SIGNATURE)
    while at + 12 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(data):
            return None
        if kind not in _PNG_DROPPED_CHUNKS:
            kept.append(data[at:end])
        at = end
        if kind == b"IEND":
            return b"".join(kept)
    return None
