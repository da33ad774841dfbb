"""Pictures as phones make them: HEIC/HEIF and AVIF, 48-200 MP photos, files over Kling's 10 MB."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageCms, JpegImagePlugin

from bot import media
from bot.media import AttachmentInfo, MediaRejected, PreparedImage, check_metadata
from bot.picture_decode import inspect_bytes
from tests import images
from tests.images import BLUE, RED, encode, marked
from tests.world import running_world

# An RGB profile that is not what a decoder assumes by default: it must travel with the pixels.
PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# 48 MP, the main camera of recent iPhones and many Android phones.
PHONE_48MP = (8064, 6048)


def decoded(result: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(result.data))
    image.load()
    return image


def close_to(actual: object, expected: tuple[int, ...], tolerance: int = 16) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def phone_photo(fmt: str, orientation: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """What a phone writes: the sensor's pixels as stored, an EXIF orientation and an ICC profile."""
    stored = images.as_stored(marked(size), orientation)
    return encode(stored, fmt, quality=90, exif=images.exif_orientation(orientation), icc_profile=PROFILE)


def stored_orientation(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        # pillow-heif hands HEIF's rotation to libheif and reports the file's tag here.
        original = image.info.get("original_orientation")
        if original is not None:
            return int(original)
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_heic_and_avif_become_upright_jpeg_with_their_profile(fmt: str, orientation: int) -> None:
    data = phone_photo(fmt, orientation)
    assert stored_orientation(data) == orientation  # the fixture really is a rotated phone photo
    result = inspect_bytes(data)
    image = decoded(result)
    assert (result.content_type, result.filename, result.reencoded) == ("image/jpeg", "start.jpg", True)
    assert (result.width, result.height, image.size) == (640, 480, (640, 480))
    assert close_to(image.getpixel((10, 10)), RED), "the red corner must be top-left once upright"
    assert close_to(image.getpixel((630, 470)), BLUE)
    assert image.info.get("icc_profile") == PROFILE
    assert ExifTags.Base.Orientation not in image.getexif()


def test_heic_with_transparency_becomes_png() -> None:
    source = marked((600, 400), "RGBA")
    source.paste((0, 0, 0, 0), (300, 0, 600, 400))
    result = inspect_bytes(encode(source, "HEIF", quality=90))
    assert result.content_type == "image/png"
    assert decoded(result).getpixel((500, 200))[3] == 0


def test_heic_and_avif_are_accepted_by_their_metadata() -> None:
    for name, kind in (("a.heic", "image/heic"), ("a.heif", "image/heif"), ("a.avif", "image/avif")):
        check_metadata(AttachmentInfo(name, kind, 2_500_000, 4032, 3024))


class DraftSpy:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[tuple[int, int]] = []
        original = JpegImagePlugin.JpegImageFile.draft

        def draft(
            image: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None
        ) -> object:
            result = original(image, mode, size)
            self.sizes.append(image.size)
            return result

        monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)


def test_48mp_jpeg_is_decoded_at_half_size_and_sent_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = DraftSpy(monkeypatch)
    data = images.jpeg(PHONE_48MP)
    assert len(data) < media.MAX_IMAGE_BYTES
    result = inspect_bytes(data)
    # Within Kling's limits as it is: the very file goes, after a decode that held a quarter of its pixels.
    assert result == PreparedImage(data, "image/jpeg", "start.jpg", *PHONE_48MP, reencoded=False)
    assert spy.sizes == [(PHONE_48MP[0] // 2, PHONE_48MP[1] // 2)]


def test_rotated_48mp_jpeg_over_the_limit_is_shrunk_upright(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = DraftSpy(monkeypatch)
    data = images.rotated_jpeg(marked(PHONE_48MP), 6)
    # Kling's limit, lowered under this file's size: it stands for the 12-20 MB such photos weigh.
    result = inspect_bytes(data, max_bytes=len(data) - 1)
    image = decoded(result)
    assert spy.sizes == [(PHONE_48MP[1] // 2, PHONE_48MP[0] // 2)]  # stored sideways
    assert len(result.data) < len(data) and result.reencoded
    assert image.size == (result.width, result.height)
    assert result.width * result.height <= media.MAX_UPLOAD_PIXELS
    assert abs(result.width / result.height - 4 / 3) < 0.01
    assert close_to(image.getpixel((10, 10)), RED) and close_to(image.getpixel((result.width - 10, 10)), BLUE)


def test_large_png_within_the_bound_is_shrunk_to_the_upload_size() -> None:
    size = (6000, 4000)  # 24 MP: decoded whole (a PNG cannot be decoded reduced), re-encoded at 12 MP
    data = images.png(size)
    result = inspect_bytes(data, max_bytes=len(data) - 1)
    assert result.width * result.height <= media.MAX_UPLOAD_PIXELS
    assert abs(result.width / result.height - 1.5) < 0.01


def test_progressive_jpeg_too_large_for_the_memory_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A progressive JPEG keeps all its coefficients in memory whatever the reduction: 200 MP of them is
    # far over the bound. Refused before decoding.
    header = encode(Image.new("RGB", (16, 16)), "JPEG", progressive=True)
    sof = header.index(b"\xff\xc2")
    # The frame header's height and width fields, rewritten to claim 16320×12240.
    claimed = header[: sof + 5] + (12240).to_bytes(2, "big") + (16320).to_bytes(2, "big") + header[sof + 9 :]

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("the pixels must not be decoded")

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", no_decoding)
    with pytest.raises(MediaRejected) as caught:
        inspect_bytes(claimed)
    message = caught.value.user_message
    assert "progressive JPEG of 16320×12240 px (200 megapixels)" in message and "baseline" in message


def test_png_bomb_within_the_jpeg_limit_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = images.png_claiming(12000, 10000)  # 120 MP: a JPEG could be read reduced, a PNG cannot

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("the pixels must not be decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(MediaRejected) as caught:
        inspect_bytes(bomb)
    assert "(120 megapixels); the bot opens pictures of up to 50 megapixels" in caught.value.user_message


def test_jpeg_bomb_past_the_largest_sensors_is_refused() -> None:
    header = encode(Image.new("RGB", (16, 16)), "JPEG")
    sof = header.index(b"\xff\xc0")
    claimed = header[: sof + 5] + (30000).to_bytes(2, "big") + (30000).to_bytes(2, "big") + header[sof + 9 :]
    with pytest.raises(MediaRejected) as caught:
        inspect_bytes(claimed)
    assert "megapixels" in caught.value.user_message and "smaller picture" in caught.value.user_message


def test_a_file_over_the_download_cap_is_refused_with_the_cap() -> None:
    data = images.jpeg((640, 480))
    with pytest.raises(MediaRejected) as caught:
        inspect_bytes(data, max_input_bytes=len(data) - 1)
    assert "the bot takes pictures of at most" in caught.value.user_message
    with pytest.raises(MediaRejected) as caught:
        check_metadata(AttachmentInfo("big.jpg", "image/jpeg", 50_000_001, 8064, 6048))
    assert caught.value.user_message == (
        "The image is 50.1 MB; the bot takes pictures of at most 50 MB. "
        "Please use a smaller or more compressed picture."
    )
    # Between Kling's 10 MB and the cap: accepted, to be shrunk.
    check_metadata(AttachmentInfo("big.jpg", "image/jpeg", 30_000_000, 8064, 6048))


# --- Through the bot --------------------------------------------------------------------------------


async def test_a_heic_photo_from_a_phone_is_animated_upright(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        attachment = world.discord.add_attachment(
            "IMG_0001.HEIC", phone_photo("HEIF", 6), "image/heic", width=480, height=640
        )
        interaction = await world.animate(image=attachment)
        job = await world.ended(interaction)
        assert job.state == "delivered", job
        [upload] = world.sunra.uploads.values()
        assert (upload.content_type, upload.file_name) == ("image/jpeg", "start.jpg")
        image = Image.open(io.BytesIO(upload.data))
        assert image.size == (640, 480) and close_to(image.getpixel((10, 10)), RED)


async def test_the_metadata_check_follows_the_download_cap(tmp_path: Path) -> None:
    async with running_world(tmp_path, media={"max_download_mb": 0.1}) as world:
        data = images.encode(images.noise((400, 400)), "PNG")  # about 480 KB
        interaction = await world.animate(image=world.image(data))
        callback = await world.discord.wait_for_callback(interaction.id)
        assert callback.type == 4
        assert "the bot takes pictures of at most 0.1 MB" in callback.data["content"]
        assert world.sunra.count("submit") == 0 and world.sunra.count("upload_initiate") == 0


@pytest.mark.parametrize(("primaries", "red_x"), [(12, 0.5151), (9, 0.6734), (1, 0.4361)])
def test_a_heif_colour_from_its_nclx_box_is_kept_as_an_icc_profile(primaries: int, red_x: float) -> None:
    """Issue 19, item 6: many Android phones tag Display P3 HEIF photos with an nclx box, not an ICC
    profile; the JPEG sent carries it as an ICC profile whose red colorant is the colour space's."""
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 60, 40)).save(
        buffer,
        "HEIF",
        color_primaries=primaries,
        transfer_characteristics=13,
        matrix_coefficients=6,
        full_range_flag=1,
        save_nclx_profile=True,
    )
    result = inspect_bytes(buffer.getvalue())
    assert result.content_type == "image/jpeg" and result.reencoded
    profile_bytes = decoded(result).info.get("icc_profile")
    assert isinstance(profile_bytes, bytes)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(profile_bytes))
    assert abs(profile.profile.red_colorant[0][0] - red_x) < 0.002
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    grey = Image.new("RGB", (1, 1), (128, 128, 128))
    converted = ImageCms.applyTransform(grey, ImageCms.buildTransform(profile, srgb, "RGB", "RGB"))
    assert converted is not None and close_to(converted.getpixel((0, 0)), (128, 128, 128), 1)


def test_an_hdr_nclx_transfer_gets_no_made_up_profile() -> None:
    from bot.icc import icc_from_nclx

    assert icc_from_nclx({"color_primaries": 9, "transfer_characteristics": 16}) is None  # PQ
    assert icc_from_nclx({"color_primaries": 2, "transfer_characteristics": 13}) is None
    assert icc_from_nclx(None) is None
