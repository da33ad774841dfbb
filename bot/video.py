"""Video work with PyAV (FFmpeg's own libraries): a clip's last frame, and a re-encoding that fits a limit.

Both are blocking and CPU-heavy: call them from a worker thread (`asyncio.to_thread`). Nothing here
parses a container by hand; FFmpeg does the demuxing, decoding and encoding.

Every video comes from outside, so the work is bounded before it starts (issue 19, item 3): the file
must be an MP4 (`looks_like_mp4`), and `probe_video` reads its size, picture size, frame count and
duration from the container, with FFmpeg told never to decode a picture larger than MAX_PIXELS (its
`max_pixels` option, also while it probes), and refuses what Kling never makes. Decoding counts frames
as it goes, and at most MAX_VIDEO_JOBS of these run at once in the whole process.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.video.frame import VideoFrame
from PIL import Image

from bot.errors import BotError
from bot.i18n import _

log = logging.getLogger(__name__)

# Room left under the upload limit for what the size estimate cannot see (multipart framing, rounding).
SIZE_MARGIN = 0.04
# Bitrate attempts before giving up: each one aims lower by the measured overshoot.
ENCODE_ATTEMPTS = 4
AUDIO_BITRATE = 128_000
# Below this many bits per pixel per frame H.264 turns to mush: the picture is made smaller instead.
MIN_BITS_PER_PIXEL = 0.04
MIN_HEIGHT = 240

# What Kling 2.6 Pro makes: at most 1080p (1920×1080), 5 or 10 s at 24-30 fps, tens of MB. Beyond these
# limits (2-4 times that, for margin) a file is not a Kling video, and decoding it could cost gigabytes.
MAX_SIDE = 3840
MAX_PIXELS = 3840 * 2160
MAX_FRAMES = 1200
MAX_SECONDS = 40.0
MAX_STREAMS = 4
MAX_VIDEO_BYTES = 500_000_000
# Video operations (probe, last frame, re-encoding) running at once in this process, whoever asks.
MAX_VIDEO_JOBS = 2
_SLOTS = threading.BoundedSemaphore(MAX_VIDEO_JOBS)
# FFmpeg's own bound on one decoded picture: the decoder refuses to open for a larger one, and the same
# option stops avformat_find_stream_info from decoding a huge first frame while it probes.
_DECODER_OPTIONS = {"max_pixels": str(MAX_PIXELS), "threads": "2"}


class VideoUnreadable(BotError):
    """The video could not be decoded; `user_message` says so."""

    user_message = _("The video could not be read, so its last frame is not available.")


class VideoRefused(VideoUnreadable):
    """The file is not a video Kling makes (not an MP4, or too large in bytes, pixels, frames or time)."""

    user_message = _("The file is not a video Kling makes, so the bot does not use it.")

    def __init__(self, user_message: str | None = None, *, detail: str = "") -> None:
        super().__init__(user_message)
        self.detail = detail  # for the operator's log: what was over which limit

    def __str__(self) -> str:
        return f"{self.user_message} ({self.detail})" if self.detail else self.user_message


@dataclass(frozen=True, slots=True)
class VideoFacts:
    """What the container says: picture size in pixels, frames (0 when it does not say), seconds."""

    width: int
    height: int
    frames: int
    seconds: float
    has_audio: bool
    codec: str = "h264"
    pixel_format: str = "yuv420p"


def looks_like_mp4(path: Path) -> bool:
    """True when the file starts with an ISO base media ``ftyp`` box (MP4, MOV and their kin)."""
    with path.open("rb") as handle:
        head = handle.read(12)
    return len(head) == 12 and head[4:8] == b"ftyp" and int.from_bytes(head[:4], "big") >= 8


@contextmanager
def video_slot() -> Iterator[None]:
    """One of the MAX_VIDEO_JOBS places for video work; blocks the calling (worker) thread until free."""
    with _SLOTS:
        yield


def _open(path: Path) -> av.container.InputContainer:
    # PyAV takes one dict of codec options per stream (its stub says list[str]; the code reads dicts).
    options: list[Any] = [dict(_DECODER_OPTIONS)] * MAX_STREAMS
    return av.open(str(path), stream_options=options)


def probe_video(path: Path) -> VideoFacts:
    """The container's facts, refused (VideoRefused) beyond what Kling makes; VideoUnreadable when FFmpeg
    cannot read it. Nothing is decoded beyond what FFmpeg's probe needs, and never a picture over
    MAX_PIXELS."""
    size = path.stat().st_size
    if size > MAX_VIDEO_BYTES:
        raise VideoRefused(detail=f"{size} bytes")
    if not looks_like_mp4(path):
        raise VideoRefused(detail="not an MP4 (no ftyp box)")
    try:
        with _open(path) as container:
            return _facts(container)
    except av.error.FFmpegError as error:
        log.info("cannot read the video %s: %s", path.name, error)
        raise VideoUnreadable() from error


def _facts(container: av.container.InputContainer) -> VideoFacts:
    if len(container.streams) > MAX_STREAMS or not container.streams.video:
        raise VideoRefused(detail=f"{len(container.streams)} streams, {len(container.streams.video)} video")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    seconds = 0.0
    if container.duration:
        seconds = container.duration / av.time_base
    elif stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    codec = stream.codec_context.name or ""
    pixel_format = stream.codec_context.format.name if stream.codec_context.format is not None else ""
    facts = VideoFacts(
        width, height, stream.frames or 0, seconds, bool(container.streams.audio), codec, pixel_format
    )
    if (
        not 0 < width <= MAX_SIDE
        or not 0 < height <= MAX_SIDE
        or width * height > MAX_PIXELS
        or facts.frames > MAX_FRAMES
        or seconds > MAX_SECONDS
    ):
        raise VideoRefused(detail=f"{width}x{height}, {facts.frames} frames, {seconds:.1f} s")
    return facts


def _bounded_decoder(stream: av.video.stream.VideoStream) -> None:
    stream.codec_context.options = dict(_DECODER_OPTIONS)


def _counted(frames: Iterator[VideoFrame]) -> Iterator[VideoFrame]:
    """Decoded frames, refused past MAX_FRAMES or over MAX_PIXELS (a stream may change size midway)."""
    for count, frame in enumerate(frames, 1):
        if count > MAX_FRAMES or frame.width * frame.height > MAX_PIXELS:
            raise VideoRefused(detail=f"frame {count} ({frame.width}x{frame.height})")
        yield frame


# What every Discord client plays inline: H.264 in 8-bit 4:2:0 with even sides. HEVC, 10-bit or 4:4:4
# pictures and odd sizes show as a download or a black frame in browsers and on phones (issue 19, item 9).
INLINE_CODECS = frozenset({"h264"})
INLINE_PIXEL_FORMATS = frozenset({"yuv420p", "yuvj420p"})


def plays_inline(facts: VideoFacts) -> bool:
    """Whether Discord's clients play the video as it is, without re-encoding."""
    return (
        facts.codec in INLINE_CODECS
        and facts.pixel_format in INLINE_PIXEL_FORMATS
        and facts.width % 2 == 0
        and facts.height % 2 == 0
    )


def check_playable(path: Path) -> bool:
    """`plays_inline` of the file's container facts (probed, bounded as `probe_video`); raises as it."""
    with video_slot():
        return plays_inline(probe_video(path))


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
    decoded whole; a file whose seek fails is decoded from the start. Bounded as the module says: raises
    VideoRefused beyond what Kling makes, VideoUnreadable for a broken file.
    """
    with video_slot():
        return _last_frame(path)


def _last_frame(path: Path) -> Image.Image:
    probe_video(path)
    try:
        with _open(path) as container:
            if not container.streams.video:
                raise VideoUnreadable(_("The file has no picture to continue from."))
            stream = container.streams.video[0]
            _bounded_decoder(stream)
            duration = container.duration  # in av.time_base units (microseconds), or None
            frame = None
            if duration and duration > 2 * av.time_base:
                container.seek(duration - av.time_base)
                frame = _last_decoded(container, stream)
            if frame is None:
                container.seek(0)
                frame = _last_decoded(container, stream)
            if frame is None:
                raise VideoUnreadable(_("The video has no frames to continue from."))
            picture: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
            return picture.convert("RGB")
    except av.error.FFmpegError as error:
        log.info("cannot read the video %s: %s", path.name, error)
        raise VideoUnreadable() from error


def _last_decoded(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> VideoFrame | None:
    last = None
    for frame in _counted(container.decode(stream)):
        last = frame
    return last


# --- Re-encoding to fit ---------------------------------------------------------------------------------


def reencode_to_fit(source: Path, dest: Path, *, max_bytes: int) -> Reencoded | None:
    """Re-encodes `source` into `dest` so that it is at most `max_bytes` (minus SIZE_MARGIN) and plays
    inline in every Discord client: H.264 in yuv420p with even dimensions, the index (moov) at the front
    (`faststart`), AAC sound when the source has sound.

    The first bitrate comes from the duration; each further attempt aims lower by the overshoot measured.
    Returns None (and leaves no `dest`) when no attempt fits. Raises VideoRefused beyond what Kling makes
    (see `probe_video`), VideoUnreadable for a broken source.
    """
    with video_slot():
        return _reencode_to_fit(source, dest, max_bytes=max_bytes)


def _reencode_to_fit(source: Path, dest: Path, *, max_bytes: int) -> Reencoded | None:
    target = int(max_bytes * (1 - SIZE_MARGIN))
    facts = probe_video(source)
    duration, has_audio = max(facts.seconds or 1.0, 0.1), facts.has_audio
    try:
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
        raise VideoUnreadable(_("The video could not be re-encoded.")) from error
    except VideoRefused:
        dest.unlink(missing_ok=True)
        raise
    dest.unlink(missing_ok=True)
    return None


def _even(value: int) -> int:
    return max(2, value - value % 2)


def _encode(source: Path, dest: Path, *, video_bits: int) -> tuple[int, int]:
    with _open(source) as inp:
        in_video = inp.streams.video[0]
        _bounded_decoder(in_video)
        decoded = 0
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
                        decoded += 1
                        if decoded > MAX_FRAMES:
                            raise VideoRefused(detail=f"more than {MAX_FRAMES} frames")
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
