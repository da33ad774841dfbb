"""bot/video.py: the last frame and the re-encoding that fits, on real files made with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops

from bot.video import VideoUnreadable, last_frame, reencode_to_fit
from tests import images
from tests.videos import LAST_COLOUR, decoded_frames, make_video

MIB = 1024 * 1024


def close_to(image: Image.Image, expected: Image.Image, tolerance: int = 12) -> bool:
    difference = ImageChops.difference(image.convert("RGB"), expected.convert("RGB"))
    return all(high <= tolerance for _, high in difference.getextrema())


def test_the_last_frame_is_the_clips_last_picture(tmp_path: Path) -> None:
    last = images.marked((640, 360)).resize((640, 360))
    path = make_video(tmp_path / "clip.mp4", frames=40, last=last)
    frame = last_frame(path)
    assert frame.size == (640, 360) and frame.mode == "RGB"
    # H.264 in yuv420p blurs the colour edge a little; the blocks must still be where they were.
    assert close_to(frame.crop((10, 10, 150, 80)), last.crop((10, 10, 150, 80)))
    assert close_to(frame.crop((400, 200, 630, 350)), last.crop((400, 200, 630, 350)))


def test_a_file_that_is_not_a_video_is_refused_with_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 1000)
    with pytest.raises(VideoUnreadable) as raised:
        last_frame(path)
    assert "could not be read" in raised.value.user_message


def test_a_30_mb_video_is_reencoded_under_10_mib_and_still_plays(tmp_path: Path) -> None:
    source = make_video(tmp_path / "big.mp4", frames=22, size=(1280, 720), fps=12, audio=True, lossless=True)
    assert source.stat().st_size > 25_000_000
    result = reencode_to_fit(source, tmp_path / "small.mp4", max_bytes=10 * MIB)
    assert result is not None and result.size == result.path.stat().st_size < 10 * MIB
    with av.open(str(result.path)) as container:
        [video] = container.streams.video
        [audio] = container.streams.audio
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        assert audio.codec_context.name == "aac"
        assert video.width % 2 == 0 and video.height % 2 == 0
    head = result.path.read_bytes()[:64]
    assert head.index(b"moov") < 64  # faststart: the index comes before the pictures
    assert decoded_frames(result.path) == 22
    assert close_to(
        last_frame(result.path).crop((100, 100, 300, 300)), Image.new("RGB", (200, 200), LAST_COLOUR)
    )


def test_odd_dimensions_become_even_and_a_silent_clip_stays_silent(tmp_path: Path) -> None:
    source = make_video(tmp_path / "odd.mp4", frames=6, size=(642, 362), lossless=True)
    result = reencode_to_fit(source, tmp_path / "out.mp4", max_bytes=source.stat().st_size // 2)
    assert result is not None and result.width % 2 == 0 and result.height % 2 == 0
    with av.open(str(result.path)) as container:
        assert not container.streams.audio
    assert decoded_frames(result.path) == 6


def test_an_impossible_target_leaves_no_file(tmp_path: Path) -> None:
    source = make_video(tmp_path / "clip.mp4", frames=6)
    assert reencode_to_fit(source, tmp_path / "out.mp4", max_bytes=2_000) is None
    assert not (tmp_path / "out.mp4").exists()
