"""Real MP4 files made with PyAV for the tests: noise frames (they barely compress, so files are large on
purpose) ending on a frame of one known colour, with or without AAC sound."""

from __future__ import annotations

from pathlib import Path

import av
from PIL import Image

from tests import images

LAST_COLOUR = (200, 30, 60)


def make_video(
    path: Path,
    *,
    frames: int = 12,
    size: tuple[int, int] = (640, 360),
    fps: int = 12,
    audio: bool = False,
    lossless: bool = False,
    last: Image.Image | None = None,
    codec: str = "libx264",
    pixel_format: str = "yuv420p",
) -> Path:
    """`frames` frames of noise, the last one `last` (default: plain LAST_COLOUR). `lossless` makes a
    high-bitrate file (about 1.4 MB per 1280×720 frame)."""
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = size
        video.pix_fmt = pixel_format
        video.options = {"preset": "ultrafast", **({"qp": "0"} if lossless else {})}
        if codec == "libx265":
            video.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
        sound = out.add_stream("aac", rate=44_100) if audio else None  # every stream before the first packet
        for index in range(frames):
            if index == frames - 1:
                picture = last if last is not None else Image.new("RGB", size, LAST_COLOUR)
            else:
                picture = images.noise(size, seed=index)
            frame = av.VideoFrame.from_image(picture)
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples, pts = int(44_100 * frames / fps), 0
            while pts < samples:
                chunk = av.AudioFrame(format="s16", layout="stereo", samples=1024)
                chunk.planes[0].update(bytes(4096))
                chunk.sample_rate, chunk.pts = 44_100, pts
                out.mux(sound.encode(chunk))
                pts += 1024
            out.mux(sound.encode(None))
    return path


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def make_blank_video(path: Path, *, size: tuple[int, int], frames: int = 1, fps: int = 24) -> Path:
    """`frames` black frames, as small a file as H.264 makes: a hostile file (a huge picture, or a flood
    of frames) costs little to send and a lot to decode."""
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "51"}
        blank = av.VideoFrame(size[0], size[1], "yuv420p")
        for plane in blank.planes:
            plane.update(bytes(plane.buffer_size))
        for index in range(frames):
            blank.pts = index
            out.mux(video.encode(blank))
        out.mux(video.encode(None))
    return path
