"""Video work with PyAV (FFmpeg's own libraries): a clip's last frame, and a re-encoding that fits a limit.

Both are blocking and CPU-heavy: call them from a worker thread (`asyncio.to_thread`). Nothing here
parses a container by hand; FFmpeg does the demuxing, decoding and encoding.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.video.frame import VideoFrame
from PIL import Image

from bot.errors import BotError

log = logging.getLogger(__name__)

# Room left under the upload limit for what the size estimate cannot see (multipart framing, rounding).
SIZE_MARGIN = 0.04
# Bitrate attempts before giving up: each one aims lower by the measured overshoot.
ENCODE_ATTEMPTS = 4
AUDIO_BITRATE = 128_000
# Below this many bits per pixel per frame H.264 turns to mush: the picture is made smaller instead.
MIN_BITS_PER_PIXEL = 0.04
MIN_HEIGHT = 240


class VideoUnreadable(BotError):
    """The video could not be decoded; `user_message` says so."""

    user_message = "The video could not be read, so its last frame is not available."


@dataclass(frozen=True, slots=True)
class Reencoded:
    """A re-encoding that fits: where it is, its size in bytes and its picture size."""

    path: Path
    size: int
    width: int
    height: int


# --- The last frame -------------------------------------------------------------------------------------


def last_frame(path: Path) -> Image.Image:
    """The clip's last decodable frame as an RGB picture.

    Seeks to the last second first (FFmpeg lands on the key frame before it), so a long clip is not
    decoded whole; a file whose seek fails is decoded from the start. Raises VideoUnreadable.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoUnreadable("The file has no picture to continue from.")
            stream = container.streams.video[0]
            duration = container.duration  # in av.time_base units (microseconds), or None
            frame = None
            if duration and duration > 2 * av.time_base:
                container.seek(duration - av.time_base)
                frame = _last_decoded(container, stream)
            if frame is None:
                container.seek(0)
                frame = _last_decoded(container, stream)
            if frame is None:
                raise VideoUnreadable("The video has no frames to continue from.")
            picture: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
            return picture.convert("RGB")
    except av.error.FFmpegError as error:
        log.info("cannot read the video %s: %s", path.name, error)
        raise VideoUnreadable() from error


def _last_decoded(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> VideoFrame | None:
    last = None
    for frame in container.decode(stream):
        last = frame
    return last


# --- Re-encoding to fit ---------------------------------------------------------------------------------


def reencode_to_fit(source: Path, dest: Path, *, max_bytes: int) -> Reencoded | None:
    """Re-encodes `source` into `dest` so that it is at most `max_bytes` (minus SIZE_MARGIN) and plays
    inline in every Discord client: H.264 in yuv420p with even dimensions, the index (moov) at the front
    (`faststart`), AAC sound when the source has sound.

    The first bitrate comes from the duration; each further attempt aims lower by the overshoot measured.
    Returns None (and leaves no `dest`) when no attempt fits. Raises VideoUnreadable for a broken source.
    """
    target = int(max_bytes * (1 - SIZE_MARGIN))
    try:
        duration, has_audio = _probe(source)
        audio_bits = AUDIO_BITRATE if has_audio else 0
        total = target * 8 / duration
        video_bits = int(total * 0.95) - audio_bits
        for attempt in range(1, ENCODE_ATTEMPTS + 1):
            if video_bits <= 0:
                break
            width, height = _encode(source, dest, video_bits=video_bits)
            size = dest.stat().st_size
            log.info(
                "re-encode %d: %d kbit/s -> %d bytes (target %d)", attempt, video_bits // 1000, size, target
            )
            if size <= target:
                return Reencoded(dest, size, width, height)
            video_bits = int(video_bits * target / size * 0.9)
    except av.error.FFmpegError as error:
        dest.unlink(missing_ok=True)
        raise VideoUnreadable("The video could not be re-encoded.") from error
    dest.unlink(missing_ok=True)
    return None


def _probe(source: Path) -> tuple[float, bool]:
    with av.open(str(source)) as container:
        if not container.streams.video:
            raise VideoUnreadable("The file has no picture.")
        stream = container.streams.video[0]
        seconds = None
        if container.duration:
            seconds = container.duration / av.time_base
        elif stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        return max(seconds or 1.0, 0.1), bool(container.streams.audio)


def _even(value: int) -> int:
    return max(2, value - value % 2)


def _encode(source: Path, dest: Path, *, video_bits: int) -> tuple[int, int]:
    with av.open(str(source)) as inp:
        in_video = inp.streams.video[0]
        in_audio = inp.streams.audio[0] if inp.streams.audio else None
        rate = in_video.average_rate or Fraction(24)
        width, height = _output_size(in_video.width, in_video.height, video_bits, float(rate))
        with av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            video = out.add_stream("libx264", rate=rate)
            video.width, video.height = width, height
            video.pix_fmt = "yuv420p"
            video.bit_rate = video_bits
            # Rate control that holds the average (x264's ABR alone overshoots short clips).
            video.options = {
                "preset": "veryfast",
                "maxrate": str(video_bits),
                "bufsize": str(video_bits),
                "profile": "high",
            }
            audio = None
            resampler = None
            if in_audio is not None:
                audio = out.add_stream("aac", rate=in_audio.rate or 48_000)
                audio.bit_rate = AUDIO_BITRATE
                resampler = AudioResampler(format="fltp", layout=audio.layout, rate=audio.rate)
            streams = [s for s in (in_video, in_audio) if s is not None]
            for packet in inp.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, VideoFrame):
                        picture = frame.reformat(width=width, height=height, format="yuv420p")
                        picture.pts, picture.time_base = frame.pts, frame.time_base
                        out.mux(video.encode(picture))
                    elif isinstance(frame, AudioFrame) and audio is not None and resampler is not None:
                        for chunk in resampler.resample(frame):
                            out.mux(audio.encode(chunk))
            out.mux(video.encode(None))
            if audio is not None and resampler is not None:
                for chunk in resampler.resample(None):
                    out.mux(audio.encode(chunk))
                out.mux(audio.encode(None))
    return width, height


def _output_size(width: int, height: int, video_bits: int, fps: float) -> tuple[int, int]:
    """Even dimensions; smaller when the bitrate would spread too thin over the full picture."""
    scale = 1.0
    bits_per_pixel = video_bits / max(1.0, fps) / (width * height)
    if bits_per_pixel < MIN_BITS_PER_PIXEL:
        scale = max(MIN_HEIGHT / max(1, min(width, height)), math.sqrt(bits_per_pixel / MIN_BITS_PER_PIXEL))
        scale = min(scale, 1.0)
    return _even(round(width * scale)), _even(round(height * scale))
