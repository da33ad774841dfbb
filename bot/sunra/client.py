"""The :class:`SunraClient`: one per process, shared by every job; the job's calls (submit, result,
cancel, upload, download). Its transport and retry loop are in base.py, its status waits in waiting.py.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from bot.netguard import guarded_stream
from bot.sunra.base import _RETRIED
from bot.sunra.errors import DownloadTooLarge, NoVideo, TransientError
from bot.sunra.models import (
    KLING_ENDPOINT,
    KlingInput,
    KlingResult,
    Submission,
    cancel_accepted,
    ignore_body,
    result_from,
    submission_from,
    ticket_from,
)
from bot.sunra.transport import int_header, request_path, safe_url
from bot.sunra.waiting import StatusWaiting

log = logging.getLogger(__name__)

TRANSFER_CHUNK_BYTES = 64 * 1024


class SunraClient(StatusWaiting):
    """Async client for the Kling endpoint; one per process, shared by every job (``async with``)."""

    def __repr__(self) -> str:
        return f"SunraClient(base_url={self._base_text!r})"

    async def __aenter__(self) -> SunraClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ----- submit -----------------------------------------------------------------------------------------

    async def submit(self, data: KlingInput) -> Submission:
        """Queues one job. Retried only when no job can have been created (429, connection refused)."""
        blocked = self.submissions_blocked
        if blocked is not None:
            raise blocked.with_traceback(None)
        path = f"/queue/{KLING_ENDPOINT}"
        submission = await self._call(
            "POST", path, parse=submission_from, json_body=data.payload(), submit=True
        )
        log.info("sunra accepted job %s", submission.request_id)
        return submission

    # ----- result, cancel ---------------------------------------------------------------------------------

    async def result(self, request_id: str) -> KlingResult:
        """The finished job's video. Raises PredictionFailed when the job failed, and NoVideo when the
        API, asked again for a short while (RetryPolicy.attempts), still has no usable video for it."""
        return await self._call(
            "GET", request_path(request_id), parse=result_from, request_scoped=True, also_retried=(NoVideo,)
        )

    async def cancel(self, request_id: str) -> bool:
        """Asks the API to stop a job: True if accepted, False if it had already ended (400/409)."""
        return await self._call(
            "PUT",
            request_path(request_id, "/cancel"),
            parse=cancel_accepted,
            request_scoped=True,
            answers=frozenset({400, 409}),
        )

    # ----- files ------------------------------------------------------------------------------------------

    async def upload(self, data: bytes, *, content_type: str, file_name: str) -> str:
        """Uploads a file to sunra storage and returns its public URL (for ``start_image_url``)."""
        ticket = await self._call(
            "POST",
            "/storage/upload/initiate",
            parse=ticket_from,
            json_body={"content_type": content_type, "file_name": file_name},
        )
        await self._call(
            "PUT",
            ticket.upload_url,
            parse=ignore_body,
            content=data,
            headers={"Content-Type": content_type},
            api=False,
        )
        log.debug("uploaded %d bytes as %s", len(data), safe_url(ticket.file_url))
        return ticket.file_url

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> int:
        """Streams ``url`` (without the key) into ``dest``; returns the bytes written.

        Raises DownloadTooLarge (and leaves no file) when the body exceeds ``max_bytes``, UnsafeUrl when
        the URL or a redirect is one the file host policy refuses (see bot/netguard.py).
        """
        label = f"GET {safe_url(url)}"
        attempts = max(1, self._retry.attempts)
        for attempt in range(1, attempts + 1):
            try:
                return await self._download_once(url, dest, max_bytes, label)
            except _RETRIED as error:
                if attempt == attempts:
                    raise
                await self._pause_before_retry(label, error, attempt, attempts)
        raise AssertionError("unreachable")

    async def _download_once(self, url: str, dest: Path, max_bytes: int, label: str) -> int:
        written = 0
        try:
            async with guarded_stream(self._plain, self._files, "GET", url) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._error_from(response, label, api=False)
                declared = int_header(response.headers, "content-length")
                if declared is not None and declared > max_bytes:
                    raise DownloadTooLarge(limit=max_bytes, size=declared)
                handle = await asyncio.to_thread(dest.open, "wb")
                try:
                    async for chunk in response.aiter_bytes(TRANSFER_CHUNK_BYTES):
                        written += len(chunk)
                        if written > max_bytes:
                            raise DownloadTooLarge(limit=max_bytes)
                        await asyncio.to_thread(handle.write, chunk)
                finally:
                    _close(handle)
        except httpx.TransportError as exc:
            _remove(dest)
            raise TransientError(detail=self._transport_detail(label, exc)) from exc
        except BaseException:
            _remove(dest)
            raise
        return written


def _close(handle: IO[bytes]) -> None:
    # Synchronous on purpose: it must also run while the task is being cancelled.
    handle.close()


def _remove(path: Path) -> None:
    # Synchronous on purpose: a partial file must go even while the task is being cancelled.
    path.unlink(missing_ok=True)
