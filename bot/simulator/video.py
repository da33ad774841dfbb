"""The simulator's videos: a real, playable MP4 made from the job's start image with PyAV.

A slow zoom into the picture (or, with an end image, a zoom in and back out while the picture fades
into the end image, so a loop ends where it began), H.264 at a modest size and frame rate so a 5-second
clip renders in a second or two; with audio, a soft tone in AAC. The first frame is the whole start image,
scaled: tests compare it with the picture that was sent.
"""

from __future__ import annotations

import io
import math
import struct
from fractions import Fraction

import av
from PIL import Image, ImageOps

FPS = 24
# The longer side of the video; both sides are even, as H.264 with 4:2:0 chroma needs.
MAX_SIDE = 640
ZOOM = 0.12  # how much closer the last frame is than the first
SAMPLE_RATE = 44_100
TONE_HZ = 220.0
TONE_VOLUME = 0.2
AUDIO_FRAME_SAMPLES = 1024


def video_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """The clip's size for a picture of width×height: aspect kept, longer side `max_side`, both even."""
    scale = max_side / max(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def render_clip(
    start: bytes,
    *,
    seconds: int,
    audio: bool,
    end: bytes | None = None,
    fps: int = FPS,
    max_side: int = MAX_SIDE,
) -> bytes:
    """The MP4 file's bytes. `start`/`end` are encoded pictures (JPEG, PNG...). CPU-bound and blocking
    (about a second per 5 s of video on a small machine): run it in a thread."""
    first = _upright_rgb(start)
    last = _upright_rgb(end) if end is not None else None
    size = video_size(*first.size, max_side=max_side)
    if last is not None:
        last = ImageOps.fit(last, first.size)
    frames = seconds * fps
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "veryfast", "crf": "23"}
        sound = container.add_stream("aac", rate=SAMPLE_RATE) if audio else None
        for index in range(frames):
            t = index / max(1, frames - 1)
            picture = _frame(first, last, t, size)
            frame = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            for frame in _tone(seconds):
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return buffer.getvalue()


def _upright_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        return ImageOps.exif_transpose(opened).convert("RGB")


def _frame(first: Image.Image, last: Image.Image | None, t: float, size: tuple[int, int]) -> Image.Image:
    # Alone: zoom in steadily. With an end image: in and back out, fading into the end image, so the
    # last frame is the end image whole (and a loop's last frame is its first).
    zoom = 1 + ZOOM * (math.sin(math.pi * t) if last is not None else t)
    width, height = first.size
    w, h = width / zoom, height / zoom
    box = ((width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2)
    picture = first.resize(size, Image.Resampling.BILINEAR, box=box)
    if last is not None and t > 0:
        picture = Image.blend(picture, last.resize(size, Image.Resampling.BILINEAR, box=box), t)
    return picture


def _tone(seconds: int) -> list[av.AudioFrame]:
    frames = []
    total = seconds * SAMPLE_RATE
    fade = SAMPLE_RATE // 10
    for offset in range(0, total, AUDIO_FRAME_SAMPLES):
        count = min(AUDIO_FRAME_SAMPLES, total - offset)
        samples = []
        for i in range(offset, offset + count):
            envelope = min(1.0, i / fade, (total - i) / fade)
            value = TONE_VOLUME * envelope * math.sin(2 * math.pi * TONE_HZ * i / SAMPLE_RATE)
            samples.append(round(value * 32767))
        frame = av.AudioFrame(format="s16", layout="mono", samples=count)
        frame.planes[0].update(struct.pack(f"<{count}h", *samples))
        frame.sample_rate = SAMPLE_RATE
        frame.pts = offset
        frame.time_base = Fraction(1, SAMPLE_RATE)
        frames.append(frame)
    return frames
