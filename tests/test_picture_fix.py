"""bot/picture_fix.py: each fix makes a picture Kling accepts, and does what its name says."""

from __future__ import annotations

from io import BytesIO

import pytest
from PIL import Image

from bot.picture_decode import inspect_bytes
from bot.picture_fix import Fix, apply_fix, encode_png, fix_file, fixes_for, fixes_for_file, nearest_ratio
from tests import images


def accepted(image: Image.Image) -> bool:
    prepared = inspect_bytes(encode_png(image))  # the real checks: raises MediaRejected otherwise
    return prepared.width == image.width and prepared.height == image.height


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((3000, 600), [Fix.CROP, Fix.PAD_BLUR, Fix.PAD_PLAIN]),
        ((400, 1200), [Fix.CROP, Fix.PAD_BLUR, Fix.PAD_PLAIN]),
        ((64, 64), [Fix.UPSCALE]),
        ((640, 480), []),
    ],
)
def test_the_fixes_offered_match_the_problem(size: tuple[int, int], expected: list[Fix]) -> None:
    assert fixes_for(*size) == expected


def test_a_panorama_is_cropped_in_the_middle_to_the_widest_allowed_ratio() -> None:
    panorama = Image.new("RGB", (3000, 600), images.BLUE)
    panorama.paste(images.RED, (1400, 0, 1600, 600))  # a red stripe in the middle
    fixed = apply_fix(panorama, Fix.CROP)
    assert fixed.size == (1500, 600) and fixed.width / fixed.height == nearest_ratio(3000, 600) == 2.5
    assert fixed.getpixel((750, 300)) == images.RED and fixed.getpixel((10, 300)) == images.BLUE
    assert accepted(fixed)


def test_a_tall_picture_is_cropped_to_the_tallest_allowed_ratio() -> None:
    fixed = apply_fix(images.marked((400, 1600)), Fix.CROP)
    assert fixed.size == (400, 1000) and accepted(fixed)


@pytest.mark.parametrize("fix", [Fix.PAD_BLUR, Fix.PAD_PLAIN])
def test_padding_keeps_every_pixel_and_adds_edges(fix: Fix) -> None:
    panorama = images.marked((3000, 600))
    fixed = apply_fix(panorama, fix)
    assert fixed.size == (3000, 1200) and accepted(fixed)
    assert fixed.crop((0, 300, 3000, 900)).tobytes() == panorama.tobytes()  # the picture, centred, intact
    edge = fixed.getpixel((1500, 50))
    if fix is Fix.PAD_PLAIN:
        assert edge == fixed.getpixel((10, 10)) == fixed.getpixel((2990, 1190))  # one plain colour
    else:
        top = fixed.crop((0, 0, 3000, 300))
        assert len(top.getcolors(1_000_000) or []) > 2  # the blurred picture, not a flat colour


def test_a_tiny_icon_is_scaled_up_to_the_minimum_side() -> None:
    icon = images.marked((64, 48))
    fixed = apply_fix(icon, Fix.UPSCALE)
    assert fixed.size == (400, 300) and accepted(fixed)
    assert fixed.getpixel((10, 10)) == images.RED and fixed.getpixel((390, 290)) == images.BLUE


def test_a_small_panorama_is_cropped_and_then_scaled_up() -> None:
    fixed = apply_fix(images.marked((200, 40), mode="RGBA"), Fix.CROP)
    assert min(fixed.size) >= 300 and fixed.mode == "RGB" and accepted(fixed)


def test_a_rotated_photo_is_measured_and_fixed_as_it_is_displayed() -> None:
    upright = images.marked((300, 900))  # too tall as displayed; stored turned a quarter, with EXIF 6
    stored = images.encode(images.as_stored(upright, 6), "JPEG", exif=images.exif_orientation(6))
    assert fixes_for_file(stored) == [Fix.CROP, Fix.PAD_BLUR, Fix.PAD_PLAIN]
    fixed = Image.open(BytesIO(fix_file(stored, Fix.CROP)))
    assert fixed.size == (300, 750) and fixed.format == "PNG"
    red, green, _ = fixed.convert("RGB").getpixel((5, 10))  # the red block: top left, its top 75 px cropped
    assert red > 180 and green < 60


@pytest.mark.parametrize("fix", [Fix.PAD_BLUR, Fix.PAD_PLAIN])
@pytest.mark.parametrize("size", [(30000, 300), (300, 30000)])
def test_padding_a_long_strip_stays_within_the_upload_size(fix: Fix, size: tuple[int, int]) -> None:
    # A 27 KB PNG strip of 30000×300 was padded to a 30000×12000 canvas: 1.5 GB of memory for one press
    # (60000×300 would have killed the bot). Kling never gets more than MAX_UPLOAD_PIXELS anyway.
    from bot.media import MAX_RATIO, MAX_UPLOAD_PIXELS, MIN_RATIO

    fixed = apply_fix(Image.new("RGB", size, (10, 200, 30)), fix)
    width, height = fixed.size
    assert width * height <= MAX_UPLOAD_PIXELS and MIN_RATIO <= width / height <= MAX_RATIO
    assert min(width, height) >= 300


def test_a_huge_jpeg_panorama_is_decoded_reduced_before_it_is_fixed() -> None:
    # A 3.7 MB JPEG of 60000×4000 (Kling's checks read JPEGs up to 260 MP reduced) took 2 GB to crop.
    from bot.media import MAX_UPLOAD_PIXELS

    buffer = BytesIO()
    Image.new("L", (40000, 1300), 128).save(buffer, "JPEG", quality=70)
    cropped = Image.open(BytesIO(fix_file(buffer.getvalue(), Fix.CROP)))
    assert cropped.size == (1625, 650)  # cropped from the 20000×650 libjpeg decodes at 1/2
    assert MAX_UPLOAD_PIXELS <= 20000 * 650  # the reduction keeps more than is uploaded
