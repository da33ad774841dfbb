"""Picture checks on real files made with Pillow, and downloads from a real local HTTP server."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from PIL import ExifTags, Image, ImageCms, ImageFile, PngImagePlugin, features

from bot import media, picture_decode
from bot.errors import InputRefused
from bot.image_checker import ImageChecker
from bot.media import (
    AttachmentInfo,
    MediaRejected,
    PreparedImage,
    check_metadata,
)
from bot.picture_decode import inspect_bytes
from bot.picture_metadata import strip_metadata
from tests import images
from tests.images import BLUE, RED, encode, marked, noise
from tests.world import listed


def refusal(data: bytes, **kwargs: object) -> MediaRejected:
    with pytest.raises(MediaRejected) as caught:
        inspect_bytes(data, **kwargs)  # type: ignore[arg-type]
    return caught.value


def decoded(result: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(result.data))
    image.load()
    return image


def close_to(actual: object, expected: tuple[int, ...], tolerance: int = 12) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


# --- Sent unchanged -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "filename"),
    [
        (images.jpeg(mode="RGB"), "image/jpeg", "start.jpg"),
        (images.jpeg(mode="L"), "image/jpeg", "start.jpg"),
        (images.png(mode="RGB"), "image/png", "start.png"),
        (images.png(mode="L"), "image/png", "start.png"),
    ],
    ids=["jpeg-rgb", "jpeg-grey", "png-rgb", "png-grey"],
)
def test_plain_upright_jpeg_and_png_are_sent_unchanged(data: bytes, content_type: str, filename: str) -> None:
    result = inspect_bytes(data)
    assert result == PreparedImage(data, content_type, filename, 400, 400, reencoded=False)


def _camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 1
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif[ExifTags.Base.DateTime] = "2026:11:29 10:00:00"
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (48.0, 51.0, 24.0),
    }
    return exif


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_metadata_is_removed_losslessly_before_the_picture_gets_a_public_url(fmt: str) -> None:
    source = marked((400, 400))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    extra: dict[str, object] = {"exif": _camera_exif(), "icc_profile": icc}
    if fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("Author", "Alice Example")
        text.add_itxt("Location", "home")
        extra["pnginfo"] = text
    else:
        extra["comment"] = b"taken at home"
    data = encode(source, fmt, **extra)
    assert b"PhoneCo" in data

    result = inspect_bytes(data)

    assert not result.reencoded and b"PhoneCo" not in result.data and b"home" not in result.data
    with Image.open(io.BytesIO(result.data)) as cleaned, Image.open(io.BytesIO(data)) as original:
        assert len(cleaned.getexif()) == 0 and "comment" not in cleaned.info
        assert cleaned.info.get("icc_profile") == icc  # colours stay as they were
        assert cleaned.tobytes() == original.tobytes()  # the very same pixels


def test_a_jpeg_whose_segments_do_not_add_up_is_re_encoded_rather_than_trusted() -> None:
    data = bytearray(images.jpeg())
    data[4:6] = (0xFF, 0xFF)  # the JFIF segment now claims to run past the end of the file
    assert strip_metadata(bytes(data), "image/jpeg") is None


def test_camera_mpo_is_sent_as_its_first_jpeg_only() -> None:
    """Issue 19, item 6: an MPO's second picture (with its own EXIF and GPS) never reaches the upload."""
    second = Image.new("RGB", (400, 300), "navy")
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "DualCam"
    data = encode(marked((400, 300)), "MPO", save_all=True, append_images=[second], exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).format == "MPO" and data.count(b"\xff\xd8") >= 2
    result = inspect_bytes(data)
    assert (result.content_type, result.reencoded) == ("image/jpeg", False)
    assert result.data.count(b"\xff\xd8\xff") == 1 and result.data.endswith(b"\xff\xd9")
    assert b"MPF" not in result.data and b"DualCam" not in result.data and len(result.data) < len(data)
    with Image.open(io.BytesIO(result.data)) as cleaned, Image.open(io.BytesIO(data)) as original:
        assert cleaned.format == "JPEG" and cleaned.tobytes() == original.tobytes()


@pytest.mark.parametrize(
    ("data", "label", "filename"),
    [
        (images.jpeg(), "end image", "end.jpg"),
        (images.png(), "end image", "end.png"),
        (images.png(mode="P"), "end image", "end.jpg"),
        (images.jpeg(), "Style référence!", "style-r-f-rence.jpg"),
    ],
)
def test_file_name_follows_the_label(data: bytes, label: str, filename: str) -> None:
    assert inspect_bytes(data, label=label).filename == filename


# --- Re-encoded -------------------------------------------------------------------------------------


def test_png_with_real_transparency_stays_png_with_alpha() -> None:
    result = inspect_bytes(encode(images.half_transparent(), "PNG"))
    image = decoded(result)
    assert (result.content_type, result.filename, result.reencoded) == ("image/png", "start.png", True)
    assert image.mode == "RGBA"
    assert image.getpixel((399, 200)) == (0, 0, 0, 0)
    assert image.getpixel((10, 10)) == (*RED, 255)


def test_fully_opaque_rgba_png_becomes_jpeg() -> None:
    result = inspect_bytes(images.png(mode="RGBA"))
    assert (result.content_type, result.reencoded) == ("image/jpeg", True)
    assert decoded(result).mode == "RGB"


@pytest.mark.parametrize(
    ("mode", "transparent", "content_type"),
    [("P", False, "image/jpeg"), ("P", True, "image/png"), ("LA", False, "image/jpeg")],
    ids=["palette", "palette-transparent", "grey-alpha-opaque"],
)
def test_palette_and_grey_alpha(mode: str, transparent: bool, content_type: str) -> None:
    image = marked((400, 400), mode)
    # The red corner's palette entry is the transparent one.
    params = {"transparency": image.getpixel((10, 10))} if transparent else {}
    result = inspect_bytes(encode(image, "PNG", **params))
    assert (result.content_type, result.reencoded) == (content_type, True)
    if transparent:
        assert decoded(result).getpixel((10, 10))[3] == 0  # type: ignore[index]


def test_grey_png_with_alpha_keeps_grey_and_alpha() -> None:
    result = inspect_bytes(encode(images.half_transparent().convert("LA"), "PNG"))
    assert (result.content_type, decoded(result).mode) == ("image/png", "LA")


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("WEBP", {"quality": 90}), ("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"})],
    ids=["webp", "bmp", "tiff", "tiff-lzw"],
)
def test_other_formats_become_upright_jpeg(fmt: str, params: dict[str, object]) -> None:
    result = inspect_bytes(encode(marked((500, 350)), fmt, **params))
    image = decoded(result)
    assert (result.content_type, result.filename, result.reencoded) == ("image/jpeg", "start.jpg", True)
    assert (image.format, image.size, (result.width, result.height)) == ("JPEG", (500, 350), (500, 350))
    assert close_to(image.getpixel((10, 10)), RED)


def test_transparent_webp_becomes_png() -> None:
    result = inspect_bytes(encode(images.half_transparent(), "WEBP", lossless=True))
    assert (result.content_type, decoded(result).getpixel((399, 10))) == ("image/png", (0, 0, 0, 0))


@pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")
def test_avif_becomes_jpeg() -> None:
    result = inspect_bytes(encode(marked((400, 400)), "AVIF", quality=90))
    assert (result.content_type, result.reencoded) == ("image/jpeg", True)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_its_first_frame(fmt: str) -> None:
    data = images.animated(fmt)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    result = inspect_bytes(data)
    image = decoded(result)
    assert (result.content_type, image.format, image.size) == ("image/jpeg", "JPEG", (400, 400))
    assert close_to(image.getpixel((200, 200)), RED)


def test_animated_png_is_not_sent_unchanged() -> None:
    data = images.animated("PNG")
    result = inspect_bytes(data)
    assert (result.content_type, result.reencoded) == ("image/jpeg", True)
    assert close_to(decoded(result).getpixel((200, 200)), RED)


def test_gif_with_transparency_becomes_png() -> None:
    frame = images.half_transparent().convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    frame.info["transparency"] = frame.getpixel((399, 399))
    result = inspect_bytes(encode(frame, "GIF", transparency=frame.info["transparency"]))
    image = decoded(result)
    assert result.content_type == "image/png"
    assert image.getpixel((399, 399))[3] == 0  # type: ignore[index]
    assert image.getpixel((10, 10))[3] == 255  # type: ignore[index]


def test_cmyk_jpeg_becomes_rgb_jpeg() -> None:
    cmyk = Image.new("CMYK", (400, 400), (255, 0, 0, 0))  # pure cyan ink
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    result = inspect_bytes(data)
    image = decoded(result)
    assert (result.content_type, result.reencoded, image.mode) == ("image/jpeg", True, "RGB")
    assert close_to(image.getpixel((200, 200)), (0, 255, 255))


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = Image.new("I;16", (400, 400), 32768)  # half intensity in 16 bits
    result = inspect_bytes(encode(grey, "PNG"))
    image = decoded(result)
    assert (result.content_type, image.mode) == ("image/jpeg", "L")
    assert abs(int(image.getpixel((200, 200))) - 128) <= 2  # type: ignore[arg-type]


def test_sixteen_bit_rgb_png_is_reencoded() -> None:
    data = images.png_rgb16((400, 300), (65535, 0, 0))
    assert Image.open(io.BytesIO(data)).mode == "RGB"
    result = inspect_bytes(data)
    assert (result.content_type, result.reencoded) == ("image/jpeg", True)
    assert close_to(decoded(result).getpixel((10, 10)), (255, 0, 0), tolerance=3)


def test_png_without_its_end_chunk_is_reencoded_not_passed_on() -> None:
    data = images.png(mode="RGB")
    result = inspect_bytes(data[:-12])  # the IEND chunk is missing; the pixels are all there
    assert (result.content_type, result.reencoded) == ("image/jpeg", True)


def test_reencoding_strips_exif() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "Camera"
    result = inspect_bytes(encode(marked((400, 300)), "JPEG", exif=exif.tobytes()))
    assert len(decoded(result).getexif()) == 0
    assert b"Exif" not in result.data[:200]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_damaged_exif_does_not_refuse_a_good_picture() -> None:
    bad_exif = b"Exif\0\0II*\0\x08\0\0\0\xff\xff"  # an IFD announcing 65535 entries and holding none
    result = inspect_bytes(encode(marked((400, 300)), "JPEG", exif=bad_exif))
    assert (result.width, result.height, result.reencoded) == (400, 300, False)


def test_rgb_icc_profile_is_kept_on_reencode() -> None:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    result = inspect_bytes(encode(marked((400, 300)), "WEBP", icc_profile=profile))
    assert decoded(result).info.get("icc_profile") == profile


# --- EXIF orientation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(2, 9))
def test_rotated_jpeg_is_turned_upright(orientation: int) -> None:
    upright = marked((500, 350))
    data = images.rotated_jpeg(upright, orientation)
    result = inspect_bytes(data)
    image = decoded(result)
    assert (result.width, result.height, image.size) == (500, 350, (500, 350))
    assert (result.content_type, result.reencoded) == ("image/jpeg", True)
    assert close_to(image.getpixel((10, 10)), RED), "the red corner must be top-left once upright"
    assert close_to(image.getpixel((490, 340)), BLUE)
    assert ExifTags.Base.Orientation not in image.getexif()


def test_png_orientation_is_applied_too() -> None:
    stored = images.as_stored(marked((500, 350)), 6)
    result = inspect_bytes(encode(stored, "PNG", exif=images.exif_orientation(6)))
    assert (result.width, result.height, result.reencoded) == (500, 350, True)
    assert close_to(decoded(result).getpixel((10, 10)), RED)


def test_ratio_is_measured_after_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the real, symmetric limits (0.40 = 1/2.50) a quarter turn never changes the verdict; narrower,
    # lopsided limits show that the upright picture is the one measured.
    monkeypatch.setattr(media, "MAX_RATIO", 1.5)
    wide_stored_as_tall = images.rotated_jpeg(marked((1000, 600)), 6)  # stored 600×1000, 0.6: fine
    assert "1000×600" in refusal(wide_stored_as_tall).user_message
    tall_stored_as_wide = images.rotated_jpeg(marked((600, 1000)), 6)  # stored 1000×600, 1.67: too wide
    assert (inspect_bytes(tall_stored_as_wide).width, inspect_bytes(tall_stored_as_wide).height) == (
        600,
        1000,
    )


def test_rotated_ratio_refusal_quotes_the_upright_size() -> None:
    data = images.rotated_jpeg(marked((350, 1000)), 6)  # stored 1000×350, shown 350×1000
    message = refusal(data).user_message
    assert "350×1000" in message and "less tall" in message


# --- Size, ratio and damage refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "accepted"),
    [
        ((400, 1000), True),
        ((1000, 400), True),
        ((390, 1000), False),
        ((1004, 400), False),
        ((300, 300), True),
        ((299, 400), False),
        ((400, 299), False),
    ],
    ids=["0.40", "2.50", "0.39", "2.51", "300", "299-wide", "299-tall"],
)
def test_edges_of_size_and_ratio(size: tuple[int, int], accepted: bool) -> None:
    data = images.png(size)
    info = AttachmentInfo("a.png", "image/png", len(data), *size)
    if accepted:
        check_metadata(info)
        assert (inspect_bytes(data).width, inspect_bytes(data).height) == size
    else:
        with pytest.raises(MediaRejected):
            check_metadata(info)
        refusal(data)


def test_small_and_wrong_ratio_messages_are_specific() -> None:
    small = refusal(images.png((180, 240))).user_message
    assert small == "The image is 180×240 px; Kling needs at least 300×300 px. Please use a larger picture."
    wide = refusal(images.png((1004, 400)), label="end image").user_message
    assert wide.startswith("The end image is 1004×400 px")
    assert "2.51" in wide and "between 0.40 and 2.50" in wide and "less wide" in wide


def test_ratio_just_past_the_limit_is_not_shown_as_the_limit() -> None:
    message = refusal(images.png((1002, 400))).user_message  # 2.505 would round to "2.50"
    assert "2.505" in message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused(fmt: str) -> None:
    data = encode(noise((500, 500)), fmt)
    message = refusal(data[: len(data) // 2]).user_message
    assert "damaged or incomplete" in message and "upload it again" in message


def test_empty_file_is_refused() -> None:
    assert "empty file" in refusal(b"").user_message


def test_more_bytes_than_the_download_cap_refused_before_decoding() -> None:
    message = refusal(b"\xff\xd8" + b"\0" * 2_000_000, max_input_bytes=2_000_000).user_message
    assert "2.1 MB" in message and "the bot takes pictures of at most 2 MB" in message


def _zip_file() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("picture.png", images.png())
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"hello, this is not a picture\n", "is a text file, not a picture"),
        (b"a" + "é".encode() * 1000, "is a text file, not a picture"),  # the sample ends inside a character
        (b"<!DOCTYPE html><html><body>hi</body></html>", "is a web page (HTML), not a picture"),
        (_zip_file(), "is a ZIP archive, not a picture"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "is a PDF document"),
        (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
            "SVG drawing, which Kling cannot",
        ),
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "damaged or incomplete"),
        (b"\0\0\0\x18ftypisom\0\0\0\0isomiso2", "is a video, not a picture"),
        (bytes(range(256)) * 8, "not in a picture format the bot can read"),
        (encode(marked((400, 400)), "ICO"), "not in a picture format the bot can read"),
        (encode(marked((400, 400)), "TGA"), "not in a picture format the bot can read"),
    ],
    ids=["text", "utf8-text", "html", "zip", "pdf", "svg", "heic", "video", "binary", "ico", "tga"],
)
def test_disguised_files_are_refused_with_what_they_are(data: bytes, fragment: str) -> None:
    # Discord said "image/png" and a small size: the metadata passes, the bytes do not.
    check_metadata(AttachmentInfo("picture.png", "image/png", len(data), None, None))
    message = refusal(data).user_message
    assert fragment in message
    assert message.startswith("The image ")


def test_decompression_bomb_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = encode(Image.new("1", (8000, 8000)), "PNG")  # 64 MP, a few kilobytes
    assert len(bomb) < 20_000

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    message = refusal(bomb).user_message
    assert "8000×8000 px (64 megapixels)" in message and "pictures of up to 50 megapixels" in message


def test_header_claiming_400_megapixels_is_refused() -> None:
    message = refusal(images.png_claiming(20000, 20000)).user_message
    assert "far more than 260 megapixels" in message


def test_pillow_bomb_warning_becomes_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Between Pillow's limit and twice that, Pillow only warns; the bot refuses.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    assert "far more than" in refusal(images.png((400, 300))).user_message


# --- Shrinking to fit ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1200, 1200), (1500, 600), (600, 1500)])
def test_reencoded_picture_is_shrunk_to_fit(size: tuple[int, int]) -> None:
    # A low-quality rotated JPEG of noise grows when re-encoded at quality 92: it must be made to fit.
    data = images.rotated_jpeg(noise(size), 6, quality=30)
    limit = int(len(data) * 1.1)
    result = inspect_bytes(data, max_bytes=limit)
    image = decoded(result)
    upright = size  # noise(size) is the upright picture; the file stores it turned a quarter
    assert len(result.data) <= limit
    assert image.size == (result.width, result.height)
    assert max(image.size) < max(upright) and min(image.size) >= 300
    assert media.MIN_RATIO <= image.width / image.height <= media.MAX_RATIO
    assert abs(image.width / image.height - upright[0] / upright[1]) < 0.01


def test_transparent_picture_is_shrunk_as_png() -> None:
    source = noise((800, 800), "RGBA")
    source.paste((0, 0, 0, 0), (0, 0, 400, 800))
    data = encode(source, "WEBP", quality=40)
    limit = max(len(data), 300_000)
    result = inspect_bytes(data, max_bytes=limit)
    assert result.content_type == "image/png"
    assert len(result.data) <= limit and 300 <= result.width < 800


def test_refused_when_even_the_smallest_size_does_not_fit() -> None:
    data = images.rotated_jpeg(noise((300, 300)), 6, quality=5)
    message = refusal(data, max_bytes=len(data)).user_message
    assert "cannot be made smaller" in message and "300×300 px" in message


# --- Metadata ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        (AttachmentInfo("a.html", "text/html", 1000), "sent as text/html, not as a picture"),
        (AttachmentInfo("a.zip", "application/zip", 1000), "sent as application/zip"),
        (AttachmentInfo("a.svg", "image/svg+xml", 1000), "SVG drawing"),
        (AttachmentInfo("a.png", "image/png", 0), "empty file"),
        (AttachmentInfo("a.png", "image/png", 50_000_001), "50.1 MB; the bot takes pictures of at most 50"),
        (AttachmentInfo("a.png", "image/png", 1000, 180, 240), "180×240 px; Kling needs at least 300×300"),
        (AttachmentInfo("a.png", "image/png", 1000, 3000, 1000), "ratio of 3.00"),
        (AttachmentInfo("a.png", "image/png", 1000, 9000, 9000), "81 megapixels"),
        (AttachmentInfo("a.jpg", "image/jpeg", 1000, 20000, 20000), "the limit is 260 megapixels"),
    ],
)
def test_metadata_refusals(info: AttachmentInfo, fragment: str) -> None:
    with pytest.raises(MediaRejected) as caught:
        check_metadata(info, label="end image")
    assert fragment in caught.value.user_message
    assert caught.value.user_message.startswith("The end image ")
    assert isinstance(caught.value, InputRefused) and not caught.value.retryable


@pytest.mark.parametrize(
    "info",
    [
        AttachmentInfo("a.png", None, 1000),
        AttachmentInfo("a.png", "image/png; charset=binary", 10_000_000, 300, 750),
        AttachmentInfo("a.jpg", "IMAGE/JPEG", 5000, 1000, 400),
        AttachmentInfo("a.png", "image/png", 5000, None, 100),  # half-known dimensions: the bytes decide
        AttachmentInfo("a.heic", "image/heic", 3_000_000, 4032, 3024),
        AttachmentInfo("a.avif", "image/avif", 3_000_000, 4032, 3024),
        AttachmentInfo("a.jpg", "image/jpeg", 45_000_000, 16320, 12240),  # 200 MP, over 10 MB: shrunk
    ],
)
def test_metadata_accepts_what_might_work(info: AttachmentInfo) -> None:
    check_metadata(info)


# --- The pool -----------------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Wraps inspect_bytes to see where and how often it runs; `gate` holds each call until opened."""

    gate: threading.Event = field(default_factory=threading.Event)
    threads: list[str] = field(default_factory=list)
    idents: list[int] = field(default_factory=list)

    def wrap(self, inner: Callable[..., PreparedImage]) -> Callable[..., PreparedImage]:
        def recorded(data: bytes, **kwargs: object) -> PreparedImage:
            self.threads.append(threading.current_thread().name)
            self.idents.append(threading.get_ident())
            assert self.gate.wait(timeout=5)
            return inner(data, **kwargs)

        return recorded


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(picture_decode, "inspect_bytes", recorder.wrap(picture_decode.inspect_bytes))
    return recorder


async def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


async def test_prepare_decodes_off_the_event_loop(recorder: Recorder) -> None:
    recorder.gate.set()
    async with ImageChecker(thread_name_prefix="test-decode") as checker:
        result = await checker.prepare(images.jpeg(), label="end image")
    assert result.filename == "end.jpg"
    assert recorder.threads[0].startswith("test-decode")
    assert recorder.idents[0] != threading.get_ident()


async def test_event_loop_keeps_running_during_a_decode(recorder: Recorder) -> None:
    async with ImageChecker() as checker:
        work = asyncio.create_task(checker.prepare(images.jpeg()))
        await wait_until(lambda: len(recorder.threads) == 1)
        await asyncio.sleep(0.01)  # the loop still runs while the decode is held inside the pool
        assert not work.done()
        recorder.gate.set()
        assert (await work).reencoded is False


async def test_no_more_than_twice_the_workers_hold_a_place(recorder: Recorder) -> None:
    async with ImageChecker(max_workers=1) as checker:
        tasks = [asyncio.create_task(checker.prepare(images.jpeg())) for _ in range(5)]
        await wait_until(lambda: len(recorder.threads) == 1)
        await asyncio.sleep(0.02)
        assert checker.in_flight == 2  # one decoding, one queued in the pool, three waiting outside
        assert len(recorder.threads) == 1
        recorder.gate.set()
        results = await asyncio.gather(*tasks)
    assert len(results) == 5 and len(recorder.threads) == 5
    assert checker.in_flight == 0


async def test_a_cancelled_caller_keeps_its_place_until_the_thread_is_done(recorder: Recorder) -> None:
    async with ImageChecker(max_workers=1) as checker:
        task = asyncio.create_task(checker.prepare(images.jpeg()))
        await wait_until(lambda: len(recorder.threads) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert checker.in_flight == 1  # the thread still holds the decoded pixels
        recorder.gate.set()
        await wait_until(lambda: checker.in_flight == 0)


async def test_refusals_cross_the_pool_unchanged() -> None:
    async with ImageChecker() as checker:
        with pytest.raises(MediaRejected) as caught:
            await checker.prepare(images.png((180, 240)), label="end image")
    assert caught.value.user_message.startswith("The end image is 180×240 px")


# --- Downloads from a real server ----------------------------------------------------------------------

PICTURE = images.jpeg((500, 400))
CAP = 100_000


@dataclass
class Site:
    server: TestServer
    headers: list[dict[str, str]]
    release: asyncio.Event

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    headers: list[dict[str, str]] = []
    release = asyncio.Event()  # handlers that stall wait for this, so the server closes at once

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers.append(dict(request.headers))
        return await handler(request)

    async def picture(request: web.Request) -> web.Response:
        return web.Response(body=PICTURE, content_type="image/jpeg")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/picture.jpg")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse early on
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"\xff" * 16_384)
        return response

    async def declared_huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 50_000_000
        await response.prepare(request)
        await response.write(b"\xff" * 1024)
        await release.wait()
        return response

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(body=PICTURE)

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        while not release.is_set():  # a byte every 50 ms: no single read ever times out
            await response.write(b"\xff")
            await asyncio.sleep(0.05)
        return response

    app = web.Application(middlewares=[record])
    app.router.add_get("/picture.jpg", picture)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/endless", endless)
    app.router.add_get("/declared-huge", declared_huge)
    app.router.add_get("/slow", slow)
    app.router.add_get("/trickle", trickle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Site(server, headers, release)
    finally:
        release.set()
        await server.close()


@pytest.fixture
async def checker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, site: Site) -> AsyncIterator[ImageChecker]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    # Credentials for this very host in a netrc: the downloader must still send none.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login member password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    policy = listed(site.url("/"))
    async with ImageChecker(download_timeout=0.5, max_download_bytes=CAP, url_policy=policy) as checker:
        yield checker


async def test_download_and_fetch(site: Site, checker: ImageChecker) -> None:
    assert await checker.download(site.url("/picture.jpg")) == PICTURE
    result = await checker.fetch(site.url("/redirect"), label="end image")
    assert (result.data, result.filename, result.reencoded) == (PICTURE, "end.jpg", False)
    assert len(site.headers) == 3
    assert not any(key.lower() in ("authorization", "cookie") for sent in site.headers for key in sent)


async def test_stream_over_the_cap_is_refused(site: Site, checker: ImageChecker) -> None:
    with pytest.raises(MediaRejected) as caught:
        await checker.download(site.url("/endless"))
    assert "larger than 0.1 MB" in caught.value.user_message
    assert not caught.value.retryable


async def test_declared_length_over_the_cap_is_refused_before_the_body(site: Site) -> None:
    policy = listed(site.url("/"))
    async with ImageChecker(download_timeout=5, max_download_bytes=CAP, url_policy=policy) as checker:
        started = time.monotonic()
        with pytest.raises(MediaRejected) as caught:
            await checker.download(site.url("/declared-huge"), label="end image")
    assert time.monotonic() - started < 2  # the body never arrives: only the header was read
    assert caught.value.user_message.startswith("The end image is 50.0 MB")
    assert not caught.value.retryable


@pytest.mark.parametrize("path", ["/slow", "/trickle"])
async def test_slow_download_is_refused_as_retryable(site: Site, checker: ImageChecker, path: str) -> None:
    started = time.monotonic()
    with pytest.raises(MediaRejected) as caught:
        # The outer limit only turns a regression into a failure instead of a hang.
        await asyncio.wait_for(checker.fetch(site.url(path)), 3)
    assert time.monotonic() - started < 2
    assert caught.value.user_message == "Downloading the image from Discord took too long; please try again."
    assert caught.value.retryable


async def test_http_error_is_refused_as_retryable(site: Site, checker: ImageChecker) -> None:
    with pytest.raises(MediaRejected) as caught:
        await checker.download(site.url("/gone.png"))
    assert "HTTP 404" in caught.value.user_message
    assert caught.value.retryable


async def test_unreachable_server_is_refused_as_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    url = f"http://127.0.0.1:{port}/picture.jpg"
    with pytest.raises(MediaRejected) as caught:
        async with ImageChecker(download_timeout=0.5, url_policy=listed(url)) as checker:
            await checker.download(url)
    assert "could not be downloaded" in caught.value.user_message
    assert caught.value.retryable


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body


def test_a_jpeg_keeps_only_jfif_icc_and_adobe_segments() -> None:
    """Issue 19, item 6: the JPEG is rebuilt from a keep list. An action camera's APP6 GPS telemetry, a
    JFXX thumbnail, an MPF index, unknown APPn and data after the image's end are all dropped."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    plain = encode(marked((400, 300)), "JPEG", icc_profile=icc)
    hostile = (
        plain[:2]
        + _segment(0xE6, b"GoPro\x00GPS5 lat=48.8584 lon=2.2945 DEVC")  # APP6 telemetry
        + _segment(0xE0, b"JFXX\x00\x10" + b"thumbnail-bytes")  # a JFXX thumbnail
        + _segment(0xE2, b"MPF\x00II*\x00position")  # an MP index (not ICC)
        + _segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")  # Adobe, YCbCr transform: kept
        + _segment(0xE9, b"secret-app9")
        + plain[2:]
        + b"TRAILER GPS 48.8584,2.2945"
    )
    result = inspect_bytes(hostile)
    assert not result.reencoded
    for gone in (b"GPS5", b"JFXX", b"MPF", b"secret-app9", b"TRAILER"):
        assert gone not in result.data, gone
    assert b"JFIF\x00" in result.data and b"Adobe" in result.data and b"ICC_PROFILE\x00" in result.data
    with Image.open(io.BytesIO(result.data)) as cleaned, Image.open(io.BytesIO(hostile)) as original:
        assert cleaned.info.get("icc_profile") == icc
        assert cleaned.tobytes() == original.tobytes()


def test_a_progressive_jpeg_with_restart_markers_keeps_every_scan() -> None:
    data = encode(noise((320, 320)), "JPEG", progressive=True, restart_marker_blocks=2)
    result = inspect_bytes(data + b"\x00" * 10 + b"junk after the end")
    with Image.open(io.BytesIO(result.data)) as cleaned, Image.open(io.BytesIO(data)) as original:
        assert cleaned.tobytes() == original.tobytes()
    assert result.data.endswith(b"\xff\xd9") and b"junk" not in result.data


def test_a_jpeg_cut_inside_its_scan_is_re_encoded_not_trusted() -> None:
    data = images.jpeg()
    assert strip_metadata(data[: len(data) - 40], "image/jpeg") is None
