"""Acknowledgements first: the work after an acknowledgement waits while others are still owed.

Discord wants every interaction acknowledged (deferred or answered) within 3 s of its creation, and
fails it for the member otherwise (Discord's developer documentation, "Receiving and Responding":
"you must send an initial response within 3 seconds"). Everything after the acknowledgement — the
picture's download and checks, the reservation, the upload, the member's private answer, the
submission — has minutes. In a crowd they share one event loop and, on PostgreSQL, the cores with the
database server: when the first members' commands go on to that work at once, the last members'
acknowledgements wait behind it. So the work after an acknowledgement first waits, boundedly, until
no command of this process is still between its arrival and its acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

# The longest the work after an acknowledgement waits for the others (seconds): a steady stream of
# commands never holds it back for longer, nor does a command whose checks hang.
MAX_WAIT_SECONDS = 1.5


class PendingAcknowledgements:
    """The interactions this process has begun to handle and not yet acknowledged."""

    def __init__(self, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self._max_wait = max_wait
        self._pending = 0
        self._none = asyncio.Event()
        self._none.set()

    @property
    def count(self) -> int:
        return self._pending

    @contextlib.contextmanager
    def owed(self) -> Iterator[None]:
        """Around a command's handling from its arrival to its acknowledgement (or its refusal, which
        is its acknowledgement)."""
        self._pending += 1
        self._none.clear()
        try:
            yield
        finally:
            self._pending -= 1
            if self._pending == 0:
                self._none.set()

    async def settled(self) -> None:
        """Returns once no acknowledgement is owed, or after at most `max_wait` seconds."""
        if self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._none.wait(), self._max_wait)
