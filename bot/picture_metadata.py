"""Metadata removed from a picture that is sent as it is, without touching its pixels: the upload gets
a public URL. Split from bot/media.py (the picture checks call `strip_metadata`)."""

from __future__ import annotations

# The upload gets a public URL, so what a camera or phone wrote beside the pixels (GPS position, device,
# dates, names, comments, a second picture) is removed. A JPEG is rebuilt from a list of what to KEEP,
# not of what to drop (issue 19, item 6: an action camera's APP6 GPS telemetry and an MPO's second
# JPEG with its own EXIF passed a drop list): the segments that decode the first image, and of the
# application segments only JFIF (APP0), the ICC profile (APP2) and Adobe's colour transform (APP14).
# Everything after the first image's end (EOI) goes: an MPO's second image, trailing data.
_JPEG_KEPT_APP = {0xE0: b"JFIF\x00", 0xE2: b"ICC_PROFILE\x00", 0xEE: b"Adobe"}
# Frame headers (SOF0-15 but DHT, JPG and DAC), DHT, DAC, DQT, DRI, DNL: how the pixels decode.
_JPEG_KEPT_MARKERS = frozenset(range(0xC0, 0xD0)) | {0xDB, 0xDD, 0xDC}
_SOS, _EOI = 0xDA, 0xD9
_PNG_DROPPED_CHUNKS = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def strip_metadata(data: bytes, content_type: str) -> bytes | None:
    """The same image without metadata, byte for byte the same pixels; None if the file's structure is
    not what it should be (the caller re-encodes it then). Only for upright files: EXIF goes too."""
    if content_type == "image/png":
        return _strip_png(data)
    return _strip_jpeg(data)


def _strip_jpeg(data: bytes) -> bytes | None:
    """The first image of a JPEG (or MPO) rebuilt from its decoding segments and the kept APP segments,
    ending at its EOI; None when the structure is not a JPEG's."""
    if not data.startswith(b"\xff\xd8"):
        return None
    kept = [data[:2]]
    at = 2
    while at + 2 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == _EOI:
            kept.append(data[at : at + 2])
            return b"".join(kept)
        if at + 4 > len(data):
            return None
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        end = at + 2 + length
        if length < 2 or end > len(data):
            return None
        body = data[at + 4 : end]
        if marker == _SOS:
            scan_end = _entropy_coded_end(data, end)
            if scan_end is None:
                return None
            kept.append(data[at:scan_end])
            at = scan_end
            continue
        prefix = _JPEG_KEPT_APP.get(marker)
        if marker in _JPEG_KEPT_MARKERS or (prefix is not None and body.startswith(prefix)):
            kept.append(data[at:end])
        at = end
    return None


def _entropy_coded_end(data: bytes, start: int) -> int | None:
    """Where a scan's compressed data ends: the first marker that is not a stuffed 0xFF00 or a restart
    marker (RST0-7). One pass over the bytes (``bytes.find``), however long the scan."""
    at = start
    while True:
        at = data.find(b"\xff", at)
        if at < 0 or at + 1 >= len(data):
            return None
        following = data[at + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            at += 1 if following == 0xFF else 2
            continue
        return at


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
