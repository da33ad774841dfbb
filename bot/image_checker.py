"""Downloading a member's picture (size-capped, time-limited, no credentials) and preparing it in a
bounded thread pool: the I/O half of bot/media.py, split from it along that seam."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self

import httpx

from bot import picture_decode
from bot.i18n import _
from bot.media import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    MediaRejected,
    PreparedImage,
    _check_download_size,
    _limit_megabytes,
    _over_download_cap,
    label_name,
)
from bot.netguard import UnsafeUrl, UrlPolicy, guarded_stream

log = logging.getLogger("bot.media")


class ImageChecker:
    """Downloads attachments and prepares them in a bounded thread pool.

    At most `max_workers` pictures are decoded at once and at most twice that many hold a place (running
    or waiting in the pool), which bounds the memory spent on pictures; more callers wait their turn.
    """

    def __init__(
        self,
        *,
        max_workers: int = 2,
        download_timeout: float = 30.0,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        thread_name_prefix: str = "image-decode",
        url_policy: UrlPolicy | None = None,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._slots = asyncio.Semaphore(max_workers * 2)
        self._in_flight = 0
        self._download_timeout = download_timeout
        self._max_download_bytes = max_download_bytes
        # Attachment URLs are signed by Discord and need no credentials: this client never carries any
        # (no headers, no auth), so nothing secret can leak to the CDN or to a redirect target. Every
        # URL and redirect is checked by the file host policy first (bot/netguard.py).
        self._client = httpx.AsyncClient(
            follow_redirects=False, timeout=httpx.Timeout(download_timeout), auth=None
        )
        self._urls = url_policy or UrlPolicy()

    @property
    def max_download_bytes(self) -> int:
        """The download cap (MEDIA__MAX_DOWNLOAD_MB), also what `check_metadata` must be given."""
        return self._max_download_bytes

    @property
    def in_flight(self) -> int:
        """Pictures holding a place: being decoded, or queued in the pool."""
        return self._in_flight

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()
        # Never wait for a running decode on the event loop: queued ones are dropped, running ones finish.
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def fetch(self, url: str, *, label: str = "image") -> PreparedImage:
        """Downloads and prepares a picture; raises MediaRejected with the reason."""
        data = await self.download(url, label=label)
        return await self.prepare(data, label=label)

    async def download(self, url: str, *, label: str = "image") -> bytes:
        """The file's bytes, refused as soon as they exceed the cap or the time limit runs out."""
        try:
            # httpx's timeout applies to each read; this one to the whole download, so a server trickling
            # a byte at a time cannot hold a job forever.
            async with asyncio.timeout(self._download_timeout):
                return await self._read_capped(url, label)
        except (TimeoutError, httpx.TimeoutException) as error:
            raise MediaRejected(
                _(
                    "Downloading the {label} from Discord took too long; please try again.",
                    label=label_name(label),
                ),
                retryable=True,
            ) from error
        except UnsafeUrl as error:
            log.warning("refused to download the %s: %s", label, error)
            raise MediaRejected(
                _(
                    "The {label} is not on an address the bot downloads pictures from; please attach it "
                    "to your message instead.",
                    label=label_name(label),
                ),
                retryable=False,
            ) from error
        except httpx.HTTPError as error:
            log.info("downloading the %s failed: %s", label, type(error).__name__)
            raise MediaRejected(
                _(
                    "The {label} could not be downloaded from Discord; please try again.",
                    label=label_name(label),
                ),
                retryable=True,
            ) from error

    async def _read_capped(self, url: str, label: str) -> bytes:
        limit = self._max_download_bytes
        async with guarded_stream(self._client, self._urls, "GET", url) as response:
            if response.status_code != 200:
                raise MediaRejected(
                    _(
                        "Discord did not hand over the {label} (HTTP {status}). Please try again; if it "
                        "keeps failing, attach the picture anew.",
                        label=label_name(label),
                        status=response.status_code,
                    ),
                    retryable=True,
                )
            declared = _declared_length(response.headers.get("content-length"))
            if declared is not None and declared > limit:
                _check_download_size(declared, label, limit)
            body = bytearray()
            # aiter_bytes yields decoded bytes, so a compressed response is capped at its real size.
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise _over_download_cap(
                        _("larger than {limit}", limit=_limit_megabytes(limit)), label, limit
                    )
            return bytes(body)

    async def prepare(self, data: bytes, *, label: str = "image") -> PreparedImage:
        """Runs `inspect_bytes` in the pool; the event loop only waits."""
        loop = asyncio.get_running_loop()
        await self._slots.acquire()
        self._in_flight += 1
        try:
            work = self._pool.submit(
                picture_decode.inspect_bytes, data, label=label, max_input_bytes=self._max_download_bytes
            )
        except BaseException:
            self._release_slot()
            raise
        # The place is given back when the thread is done, not when the caller stops waiting: a cancelled
        # caller must not let more decodes pile up than the bound allows.
        work.add_done_callback(_in_loop(loop, self._release_slot))
        return await asyncio.wrap_future(work, loop=loop)

    def _release_slot(self) -> None:
        self._in_flight -= 1
        self._slots.release()


def _declared_length(header: str | None) -> int | None:
    if header is None:
        return None
    try:
        return int(header)
    except ValueError:
        return None


def _in_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Callable[[Future[Any]], None]:
    """A done-callback for a pool future that runs `callback` on the event loop's thread."""

    def done(_: Future[Any]) -> None:
        # A closed loop raises RuntimeError: then nobody is left waiting for a place.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback)

    return done
