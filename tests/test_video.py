"""bot/video.py: the last frame and the re-encoding that fits, on real files made with PyAV."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops

from bot.video import (
    MAX_FRAMES,
    VideoRefused,
    VideoUnreadable,
    last_frame,
    looks_like_mp4,
    probe_video,
    reencode_to_fit,
)
from tests import images
from tests.videos import LAST_COLOUR, decoded_frames, make_blank_video, make_video

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


def test_a_picture_larger_than_kling_makes_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    bomb = make_blank_video(tmp_path / "bomb.mp4", size=(8192, 8192))
    assert bomb.stat().st_size < 300_000 and looks_like_mp4(bomb)
    for work in (probe_video, last_frame, lambda p: reencode_to_fit(p, tmp_path / "o.mp4", max_bytes=10**6)):
        with pytest.raises(VideoRefused) as caught:
            work(bomb)
        assert "8192x8192" in str(caught.value) and caught.value.user_message.endswith(".")
    assert not (tmp_path / "o.mp4").exists()


def test_a_flood_of_frames_is_refused(tmp_path: Path) -> None:
    flood = make_blank_video(tmp_path / "flood.mp4", size=(32, 32), frames=MAX_FRAMES + 50)
    with pytest.raises(VideoRefused):
        probe_video(flood)
    with pytest.raises(VideoRefused):
        reencode_to_fit(flood, tmp_path / "o.mp4", max_bytes=10**6)


def test_what_is_not_an_mp4_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "error.mp4"
    page.write_bytes(b"<html><body>404 Not Found</body></html>")
    assert not looks_like_mp4(page)
    with pytest.raises(VideoRefused):
        probe_video(page)
    clip = make_video(tmp_path / "clip.mp4", frames=3)
    facts = probe_video(clip)
    assert (facts.width, facts.height, facts.frames) == (640, 360, 3) and not facts.has_audio


def test_delivering_then_extending_an_8192_frame_grows_the_process_by_under_300_mb(tmp_path: Path) -> None:
    """Issue 19, item 3, in a fresh process: the bound is on memory, measured as the peak RSS growth."""
    bomb = make_blank_video(tmp_path / "bomb.mp4", size=(8192, 8192))
    script = (
        "import sys\n"
        # VmHWM, not ru_maxrss: a child's ru_maxrss starts at pytest's peak (Linux keeps it over exec).
        "def peak_kib():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1])\n"
        "from pathlib import Path\n"
        "from bot.video import VideoRefused, last_frame, looks_like_mp4, reencode_to_fit\n"
        "before = peak_kib()\n"
        "path = Path(sys.argv[1])\n"
        "assert looks_like_mp4(path)\n"
        "for work in (lambda: reencode_to_fit(path, path.with_suffix('.o.mp4'), max_bytes=100_000),"
        " lambda: last_frame(path)):\n"
        "    try:\n"
        "        work()\n"
        "    except VideoRefused:\n"
        "        pass\n"
        "print(peak_kib() - before)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, cwd=root, check=True
    )
    grown_kib = int(done.stdout.strip())
    assert grown_kib < 300 * 1024, grown_kib
