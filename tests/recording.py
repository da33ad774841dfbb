"""A Reporter that records what the job runner would have shown on Discord (for runner tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.jobs import Progress
from bot.request import AnimateRequest
from bot.store.jobs import JobRow


@dataclass
class RecordingReporter:
    progress_posts: list[int] = field(default_factory=list)
    progress: list[tuple[int, Progress]] = field(default_factory=list)
    deliveries: list[tuple[int, bytes | None, str | None]] = field(default_factory=list)
    endings: list[tuple[int, str, str | None]] = field(default_factory=list)
    found: dict[int, int] = field(default_factory=dict)
    _next_id: int = 1000

    def _message_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def post_progress(self, job: JobRow, request: AnimateRequest, progress: Progress) -> int | None:
        self.progress_posts.append(job.id)
        return self._message_id()

    async def show_progress(self, job: JobRow, progress: Progress) -> None:
        self.progress.append((job.id, progress))

    async def deliver(self, job: JobRow, video: Path | None) -> int | None:
        data = video.read_bytes() if video is not None else None
        self.deliveries.append((job.id, data, job.video_url))
        return self._message_id()

    async def notify_end(self, job: JobRow) -> int | None:
        self.endings.append((job.id, job.state, job.error_message))
        return self._message_id()

    async def find_outcome(self, job: JobRow) -> int | None:
        return self.found.get(job.id)

    def outcomes(self, job_id: int) -> int:
        """How many final messages a job got: must always end at exactly one."""
        return sum(1 for j, *_ in self.deliveries if j == job_id) + sum(
            1 for j, *_ in self.endings if j == job_id
        )
