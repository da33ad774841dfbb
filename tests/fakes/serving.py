"""Serving a fake from the command line until it is told to stop (shared by the fakes' ``__main__``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable


async def serve_until_signalled(stop: Callable[[], Awaitable[None]]) -> None:
    """Waits for SIGTERM or SIGINT, then awaits ``stop()`` (also when the wait is cancelled)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await stop()
