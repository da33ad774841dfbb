"""A new job from a finished one: Retry, Remix and Extend, without Discord.

The new job reuses what the old one already uploaded (the start and end images' URLs at sunra), so
nothing is fetched from Discord again; Extend uploads the old video's last frame instead. Every refusal is
an InputRefused whose `user_message` a member reads.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.errors import BotError, InputRefused
from bot.i18n import _
from bot.image_checker import ImageChecker
from bot.media import PreparedImage
from bot.picture_fix import encode_png, upscale_to_minimum
from bot.request import AnimateRequest, AttachmentRef, build_request
from bot.store.jobs import JobRow
from bot.sunra import SunraClient, SunraError
from bot.video import VideoUnreadable, last_frame

log = logging.getLogger(__name__)

UNKNOWN_JOB = _(
    "I don't know this video: it was made before this bot's database was started, or its record was "
    "removed. Nothing was charged; please use /animate instead."
)


class InputsGone(InputRefused):
    """The old job's pictures or video are no longer available."""

    user_message = _(
        "The pictures this video was made from are no longer available, so it cannot be made again. "
        "Nothing was charged; please use /animate with the picture."
    )


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What the runner needs for a new job: the request, and its images as URLs already uploaded to sunra
    or as a prepared picture still to upload; `start` None means the request's attachments are fetched
    and checked as /animate's are, unless `make_start` makes the start picture (Extend's last frame),
    which the runner calls only once the credit is reserved."""

    request: AnimateRequest
    start: str | PreparedImage | None
    end: str | None = None
    make_start: Callable[[], Awaitable[PreparedImage]] | None = None


def stored_request(job: JobRow) -> AnimateRequest:
    return AnimateRequest.model_validate(job.params)


def _uploaded(url: str, ref: AttachmentRef) -> AttachmentRef:
    return ref.model_copy(update={"url": url})


def _images_of(job: JobRow, request: AnimateRequest) -> tuple[AttachmentRef, AttachmentRef | None]:
    """The old job's images, pointing at their copies at sunra."""
    if job.start_image_url is None:
        raise InputsGone()
    end = None
    if request.end_image is not None:
        if job.end_image_url is None:
            raise InputsGone()
        end = _uploaded(job.end_image_url, request.end_image)
    return _uploaded(job.start_image_url, request.image), end


def retry(job: JobRow) -> FollowUp:
    """The same inputs again."""
    request = stored_request(job)
    image, end = _images_of(job, request)
    again = request.model_copy(update={"image": image, "end_image": end})
    return FollowUp(again, image.url, end.url if end else None)


def parse_duration(text: str) -> int:
    cleaned = text.strip().lower().removesuffix("seconds").removesuffix("s").strip()
    if cleaned not in ("5", "10"):
        raise InputRefused(_("The duration must be 5 or 10 (seconds), not “{text}”.", text=text.strip()[:20]))
    return int(cleaned)


def remix(job: JobRow, *, prompt: str, negative_prompt: str | None, duration: str) -> FollowUp:
    """The same images with an edited prompt, negative prompt and duration (checked like /animate's)."""
    request = stored_request(job)
    image, end = _images_of(job, request)
    voices = [*request.voice_ids, None, None]
    remixed = build_request(
        prompt=prompt,
        image=image,
        end_image=end,
        negative_prompt=negative_prompt,
        duration=parse_duration(duration),
        audio=request.audio,
        voice_1=voices[0],
        voice_2=voices[1],
        loop=request.loop,
    )
    return FollowUp(remixed, image.url, end.url if end else None)


LAST_FRAME_NAME = "last-frame.png"


def extend(job: JobRow, *, prompt: str, link: str | None) -> AnimateRequest:
    """A new video starting where the old one ends, with the (edited) prompt. Its start picture, the old
    video's last frame (`last_frame_of`), is made only after the credit is reserved, so the request
    names the old video as its image, with the size unknown (0)."""
    request = stored_request(job)
    voices = [*request.voice_ids, None, None]
    image = AttachmentRef(url=job.video_url or "", filename=LAST_FRAME_NAME, content_type="image/png", size=0)
    return build_request(
        prompt=prompt,
        image=image,
        negative_prompt=request.negative_prompt,
        duration=request.duration,
        audio=request.audio,
        voice_1=voices[0],
        voice_2=voices[1],
    ).model_copy(update={"extends_job": job.id, "extends_link": link})


async def last_frame_of(
    job: JobRow,
    *,
    sources: list[str],
    sunra: SunraClient,
    images: ImageChecker,
    workdir: Path,
    max_bytes: int,
) -> PreparedImage:
    """The old video's last frame, ready for upload (scaled up when under Kling's minimum side).

    `sources` are URLs of the video, tried in order (the Discord attachment of the post, then the API's
    link, which expires). Raises InputsGone when none can be downloaded, VideoUnreadable for a broken file.
    """
    path = workdir / f"extend-{job.id}-{secrets.token_hex(4)}.mp4"
    try:
        for url in sources:
            try:
                await sunra.download(url, path, max_bytes=max_bytes)
                break
            except (SunraError, BotError, OSError) as error:
                log.info("job %s: video not available from one source (%s)", job.id, type(error).__name__)
                path.unlink(missing_ok=True)
        else:
            raise InputsGone(
                _(
                    "The video is no longer available to continue from. Nothing was charged; please use "
                    "/animate with its last frame instead."
                )
            )
        try:
            data = await asyncio.to_thread(_frame_png, path)
        except VideoUnreadable as error:
            raise VideoUnreadable(
                _(
                    "{reason} Nothing was charged; please use /animate with a picture instead.",
                    reason=error.user_message,
                )
            ) from error
    finally:
        path.unlink(missing_ok=True)
    return await images.prepare(data, label="last frame")


def _frame_png(path: Path) -> bytes:
    return encode_png(upscale_to_minimum(last_frame(path)))
