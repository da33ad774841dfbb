"""`kling-bot animate`: one video from a terminal, through the bot's own pipeline.

The picture goes through the same checks and conversion as an attachment (bot/media.py), the job
through the same runner (bot/jobs/) into the same database and ledger; only the two ends differ: the
picture is read from a file, and a `TerminalReporter` draws a progress bar and writes the video to a
file instead of posting to Discord. Terminal jobs are kept apart from the bot's (see JobStore's
`terminal`), so a running bot and a terminal can share the database.

The operator runs it, so no member allowance, cooldown or switch applies; the global USD cap does,
and the spend is recorded in the ledger under the server key 'operator' (`OperatorQuota`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import mimetypes
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, Progress as Bar, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from bot.config import ToolSettings
from bot.errors import BotError
from bot.fleet import FleetClock
from bot.image_checker import ImageChecker
from bot.jobs import ENDED, Command, JobRunner, Phase, Progress, State
from bot.logs import RedactSecrets, secret_values
from bot.media import MAX_IMAGE_BYTES, MediaRejected, check_metadata
from bot.quota.checks import QuotaRefused
from bot.quota.rules import MICROS_PER_USD, JobOptions, format_usd, job_cost, usd_micros, utc_day_bounds
from bot.quota.spending import Charge, QuotaService, Reservation
from bot.request import AnimateRequest, AttachmentRef, build_request, check_voice_flags, voice_flags
from bot.simulator import Simulator, SimulatorSettings
from bot.store import Database, ledger
from bot.store.db import DatabaseUnreachable, parse_database_url
from bot.store.fleet import FleetStore
from bot.store.jobs import TERMINAL_CHANNEL_ID, JobRow, JobStore
from bot.sunra import SunraClient, SunraError
from bot.video import MAX_VIDEO_BYTES

log = logging.getLogger(__name__)

# Exit codes of `kling-bot animate` (and of the other terminal commands where they apply).
EXIT_OK = 0  # the video was written
EXIT_FAILED = 1  # the job failed (or the video could not be written); for `check`: something is wrong
EXIT_USAGE = 2  # bad arguments or settings
EXIT_REFUSED = 3  # refused before anything was submitted: the picture, the prompt, the cap, the key
EXIT_CANCELLED = 4  # cancelled (Ctrl-C) or past JOBS__MAX_LIFETIME_MINUTES

# The ledger's server key and member id for the operator's own jobs.
OPERATOR_GUILD = "operator"
OPERATOR_USER_ID = 0
# `--simulate`: a few seconds in the queue and generating, so the whole run is short but visible.
SIMULATED = SimulatorSettings(queue_seconds=2.0, generate_seconds=3.0)
SETTLE_SECONDS = 5.0
CANCEL_REASON = "You cancelled it (Ctrl-C); nothing was charged."


@dataclass(frozen=True, slots=True)
class AnimateOptions:
    image: Path
    prompt: str
    end_image: Path | None = None
    duration: int = 5
    audio: bool = True
    voices: Sequence[str] = ()
    loop: bool = False
    out: Path | None = None
    simulate: bool = False


class OperatorQuota(QuotaService):
    """The operator's own jobs: priced like a member's, checked only against the global USD cap, and
    recorded in the same ledger (server 'operator'), so the bot's cap counts them too."""

    async def _charge(
        self,
        tx: ledger.Writer,
        guild_id: int | None,
        user_id: int,
        role_ids: Sequence[int],
        options: JobOptions,
        now: float,
    ) -> Charge:
        day_end = utc_day_bounds(now)[1]
        cost = job_cost(options, self.settings)
        micros = usd_micros(cost, self.settings)
        if self.settings.global_daily_usd > 0:
            figures = await ledger.member_figures(
                tx, OPERATOR_GUILD, OPERATOR_USER_ID, (now, now), utc_day=utc_day_bounds(now)
            )
            cap = round(self.settings.global_daily_usd * MICROS_PER_USD)
            if figures.usd_micros_today + micros > cap:
                resets = dt.datetime.fromtimestamp(day_end, dt.UTC)
                raise QuotaRefused(
                    f"The global spending cap is reached: ${format_usd(figures.usd_micros_today)} of "
                    f"${format_usd(cap)} spent today (UTC) and this video costs ${format_usd(micros)}. "
                    f"It resets at {resets:%Y-%m-%d %H:%M} UTC; QUOTA__GLOBAL_DAILY_USD sets it.",
                    code="global_cap",
                    retryable=True,
                )
        return Charge(OPERATOR_GUILD, OPERATOR_USER_ID, cost, micros, cost, 0, 0, day_end)

    async def _reserved(
        self,
        tx: ledger.Writer,
        row: ledger.ReservationRow,
        guild_id: int | None,
        user_id: int,
        role_ids: Sequence[int],
        now: float,
    ) -> Reservation:
        return Reservation(row.job_id, row.credits, row.usd_micros, row.credits, 0, 0, utc_day_bounds(now)[1])


class ProcessJobs(JobStore):
    """The jobs this process created, and no others: the bot skips terminal jobs (`terminal=True`), and
    two terminals sharing a database never queue or follow each other's."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(db, terminal=True, clock=clock)
        self.mine: set[int] = set()

    async def create(self, **fields: Any) -> tuple[int, bool]:
        job_id, created = await super().create(**fields)
        self.mine.add(job_id)
        return job_id, created

    async def in_states(self, states: Iterable[str]) -> list[JobRow]:
        return [job for job in await super().in_states(states) if job.id in self.mine]

    async def unnotified(self, states: Iterable[str]) -> list[JobRow]:
        return [job for job in await super().unnotified(states) if job.id in self.mine]


class LocalImages(ImageChecker):
    """Reads `file:` URLs from disk (capped like a download); the checks and conversion are the same."""

    async def download(self, url: str, *, label: str = "image") -> bytes:
        parts = urlsplit(url)
        if parts.scheme != "file":
            return await super().download(url, label=label)
        path = Path(url2pathname(parts.path))
        try:
            # One byte over the limit is enough for the checks to refuse it with the usual sentence.
            return await asyncio.to_thread(_read_at_most, path, MAX_IMAGE_BYTES + 1)
        except OSError as error:
            raise MediaRejected(f"The {label} {path} cannot be read ({error.strerror}).") from error


def _read_at_most(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        return handle.read(limit)


def local_attachment(path: Path, label: str) -> AttachmentRef:
    """The file as /animate would see an attachment; refused at once when it cannot be a picture."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise MediaRejected(f"The {label} {path} cannot be read ({error.strerror}).") from error
    ref = AttachmentRef(
        url=path.resolve().as_uri(),
        filename=path.name,
        content_type=mimetypes.guess_type(path.name)[0],
        size=size,
    )
    check_metadata(ref.info(), label=label)
    return ref


def default_out(image: Path) -> Path:
    """`photo.jpg` → `photo.mp4` next to it, or `photo-2.mp4`... when that exists."""
    candidate = image.with_suffix(".mp4")
    number = 2
    while candidate.exists():
        candidate = image.with_name(f"{image.stem}-{number}.mp4")
        number += 1
    return candidate


PHASE_TEXT = {
    Phase.WAITING: "Waiting for its turn",
    Phase.QUEUED: "In Kling's queue",
    Phase.GENERATING: "Generating",
    Phase.FINISHING: "Downloading the video",
}


@dataclass
class TerminalReporter:
    """The runner's Reporter for one terminal job: a progress bar, then the video written to `out`."""

    console: Console
    out: Path
    sunra: SunraClient
    job_id: int | None = None
    written: Path | None = None
    ended: asyncio.Future[JobRow] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    _bar: Bar | None = None
    _task: TaskID | None = None

    def _mine(self, job: JobRow) -> bool:
        return job.id == self.job_id

    def _show(self, progress: Progress) -> None:
        if self._bar is None:
            self._bar = Bar(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=None)
        text = PHASE_TEXT[progress.phase]
        if progress.position is not None:
            text += f" · position {progress.position}"
        assert self._task is not None
        self._bar.update(self._task, description=text)

    def _finish_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    async def post_progress(self, job: JobRow, request: AnimateRequest, progress: Progress) -> int | None:
        if self._mine(job):
            self._show(progress)
        return None

    async def show_progress(self, job: JobRow, progress: Progress) -> None:
        if self._mine(job):
            self._show(progress)

    async def deliver(self, job: JobRow, video: Path | None, *, reencoded: bool = False) -> int | None:
        # A terminal job's upload limit is JOBS__MAX_VIDEO_MB, so its video is never re-encoded.
        if not self._mine(job):
            return None
        # Written beside --out under a temporary name and moved into place only when complete: an error
        # (a cut download, a full disk, a video over the cap) never touches the operator's existing file.
        partial = self.out.with_name(f".{self.out.name}.{secrets.token_hex(4)}.part")
        try:
            if video is not None:
                await asyncio.to_thread(shutil.copyfile, video, partial)
            else:  # bigger than JOBS__MAX_VIDEO_MB: fetched again, capped at what Kling could ever make
                assert job.video_url is not None
                await self.sunra.download(job.video_url, partial, max_bytes=MAX_VIDEO_BYTES)
            await asyncio.to_thread(os.replace, partial, self.out)
            self.written = self.out
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, description=f"Video written to {self.out}")
        except (OSError, SunraError, BotError) as error:
            log.warning("job %s: the video could not be written to %s: %s", job.id, self.out, error)
        finally:
            partial.unlink(missing_ok=True)
        self._finish_bar()
        if not self.ended.done():
            self.ended.set_result(job)
        return None

    async def notify_end(self, job: JobRow) -> int | None:
        if self._mine(job):
            self._finish_bar()
            if not self.ended.done():
                self.ended.set_result(job)
        return None

    async def find_outcome(self, job: JobRow) -> int | None:
        return None

    async def recover_progress(self, job: JobRow, request: AnimateRequest) -> int | None:
        return None

    async def close(self) -> None:
        self._finish_bar()


def configure_terminal_logging(console: Console, settings: ToolSettings) -> None:
    """Warnings and errors only, drawn by rich so they do not tear the progress bar; no secret shown."""
    handler = RichHandler(console=console, show_path=False, show_time=False)
    handler.addFilter(RedactSecrets(secret_values(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


@contextlib.asynccontextmanager
async def simulated(settings: ToolSettings) -> AsyncIterator[ToolSettings]:
    """Settings that point at an in-process simulator and a throw-away database: nothing is spent and
    the real ledger is not touched."""
    with tempfile.TemporaryDirectory(prefix="kling-simulate-") as folder:
        async with Simulator(SIMULATED) as simulator:
            yield settings.model_copy(
                update={
                    "sunra_api_url": simulator.url,
                    "sunra_key": SecretStr("simulator"),
                    # The simulator serves its files on loopback: listed, like an operator would.
                    "sunra_file_hosts": httpx.URL(simulator.url).netloc.decode(),
                    "database_url": f"sqlite:///{Path(folder) / 'simulate.sqlite3'}",
                }
            )


async def animate(settings: ToolSettings, options: AnimateOptions, console: Console) -> int:
    """Runs one job from the terminal; returns the exit code (EXIT_*)."""
    try:
        voices = voice_flags(options.voices)
    except BotError as refusal:  # too many, or not a voice id: the arguments are wrong
        console.print(f"[red]Refused:[/] {escape(refusal.user_message)}", highlight=False)
        return EXIT_USAGE
    try:
        check_voice_flags(options.prompt, voices, audio=options.audio)
        request = build_request(
            prompt=options.prompt,
            image=local_attachment(options.image, "image"),
            end_image=_end_image(options),
            duration=options.duration,
            audio=options.audio,
            voice_1=voices[0] if voices else None,
            voice_2=voices[1] if len(voices) > 1 else None,
        )
    except BotError as refusal:
        console.print(f"[red]Refused:[/] {escape(refusal.user_message)}", highlight=False)
        return EXIT_REFUSED
    out = options.out or default_out(options.image)
    pictures = [options.image, *([options.end_image] if options.end_image else [])]
    if (unwritable := _unwritable(out, pictures)) is not None:
        # Found after the job, the video would be paid for and left at a link that expires.
        console.print(f"[red]--out:[/] {escape(unwritable)}", highlight=False)
        return EXIT_USAGE
    if options.simulate:
        async with simulated(settings) as offline:
            console.print(f"Simulating the sunra API at {offline.sunra_base}: nothing is spent.")
            return await _run(offline, request, out, console)
    where = parse_database_url(settings.database_url).shown
    console.print(f"Sending to {settings.sunra_base}; the spend is recorded in {where}.", highlight=False)
    return await _run(settings, request, out, console)


def _unwritable(out: Path, pictures: Sequence[Path]) -> str | None:
    """Why the video could not be written to `out`, found before anything is spent; None when it can.
    The folder is tried by creating a file in it, as the video's temporary file will be: `os.access`
    says yes to root on a read-only mount."""
    if out.is_dir():
        return f"{out} is a folder; name the video file"
    folder = out.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if out.exists() and any(picture.exists() and out.samefile(picture) for picture in pictures):
        return f"{out} is the picture the video is made from; name another file"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".kling-check-"):
            pass
    except OSError as error:
        return f"{folder} cannot be written to ({error.strerror or error})"
    return None


def _end_image(options: AnimateOptions) -> AttachmentRef | None:
    if options.loop:
        return local_attachment(options.image, "end image")
    return local_attachment(options.end_image, "end image") if options.end_image else None


async def _run(settings: ToolSettings, request: AnimateRequest, out: Path, console: Console) -> int:
    assert settings.sunra_key is not None
    try:
        db = await Database.open(settings.database_url)
    except (DatabaseUnreachable, ValueError) as error:
        # A setting that cannot work, said in one line before anything is spent (exit 2, as for --out).
        console.print(f"[red]Database:[/] {escape(str(error))}", highlight=False)
        return EXIT_USAGE
    # The fleet's time (bot/fleet.py): the job's times and the day it is charged to are the bots'.
    clock = FleetClock()
    try:
        with db.unreachable_in_one_sentence():
            await clock.keep_up(FleetStore(db))
    except DatabaseUnreachable as error:
        await db.close()
        console.print(f"[red]Database:[/] {escape(str(error))}", highlight=False)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory(prefix="kling-animate-") as workdir:
        async with (
            db,
            SunraClient(settings.sunra_base, settings.sunra_key, file_hosts=settings.url_policy()) as sunra,
            LocalImages(
                max_workers=1,
                download_timeout=settings.media.download_timeout_seconds,
                url_policy=settings.url_policy(),
            ) as images,
        ):
            runner = JobRunner(
                store=ProcessJobs(db, clock=clock),
                sunra=sunra,
                images=images,
                quota=OperatorQuota(db, settings.quota, clock=clock),
                settings=settings.jobs,
                workdir=Path(workdir),
                clock=clock,
            )
            reporter = TerminalReporter(console, out, sunra)
            runner.start(reporter)
            try:
                return await _follow(runner, reporter, request, settings, console)
            finally:
                await runner.stop()


async def _follow(
    runner: JobRunner,
    reporter: TerminalReporter,
    request: AnimateRequest,
    settings: ToolSettings,
    console: Console,
) -> int:
    command = Command(
        interaction_id=-secrets.randbits(62),  # never a Discord snowflake (those are positive)
        guild_id=None,
        channel_id=TERMINAL_CHANNEL_ID,
        user_id=OPERATOR_USER_ID,
        role_ids=(),
        upload_limit=int(settings.jobs.max_video_mb * 1_000_000),
        request=request,
    )
    job_id, _ = await runner.record(command)
    reporter.job_id = job_id
    accepting = asyncio.create_task(runner.accept(job_id, command))
    cancelling: set[asyncio.Task[bool]] = set()
    interrupts = 0

    def on_interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            reporter.ended.cancel()  # a second Ctrl-C: stop waiting at once
        elif not accepting.done():
            accepting.cancel()  # nothing was submitted yet: the job ends refused, nothing reserved
        else:
            console.print("Cancelling the job at the API… (Ctrl-C again to stop waiting)")
            task = asyncio.create_task(runner.cancel(job_id, CANCEL_REASON))
            cancelling.add(task)
            task.add_done_callback(cancelling.discard)
            task.add_done_callback(too_late)

    def too_late(task: asyncio.Task[bool]) -> None:
        if not task.cancelled() and task.exception() is None and not task.result():
            console.print("Too late to cancel: the video is made and is being written.")

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        try:
            accepted = await accepting
        except asyncio.CancelledError:
            console.print("Cancelled before anything was submitted; nothing was charged.")
            return EXIT_CANCELLED
        except BotError as refusal:
            console.print(f"[red]Refused:[/] {escape(refusal.user_message)}", highlight=False)
            return EXIT_REFUSED
        cost = accepted.reservation
        console.print(
            f"Job {job_id}: {request.describe_settings()} · {cost.cost} credits "
            f"(${format_usd(cost.usd_micros)})",
            highlight=False,
        )
        try:
            job = await reporter.ended
        except asyncio.CancelledError:
            found = await runner.store.get(job_id)
            where = f" (request id {found.request_id})" if found and found.request_id else ""
            console.print(f"Stopped waiting; the job may still run at the API{where}.")
            return EXIT_CANCELLED
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    # The runner records the ending just after telling the reporter; let it, so the row is final.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SETTLE_SECONDS):
            # A few row reads, bounded by the timeout: the runner offers no event for "recorded".
            while (found := await runner.store.get(job_id)) is not None and found.state not in ENDED:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    return _verdict(job, reporter, console)


def _verdict(job: JobRow, reporter: TerminalReporter, console: Console) -> int:
    if job.state in (State.DELIVERING, State.DELIVERED, State.COMPLETED):
        if reporter.written is not None:
            print(reporter.written, flush=True)
            return EXIT_OK
        console.print(
            f"[red]The video was made but could not be written;[/] it is at {escape(job.video_url or '')}"
        )
        return EXIT_FAILED
    message = job.error_message or "The job ended without a video."
    console.print(f"[red]{job.state.capitalize()}:[/] {escape(message)}", highlight=False)
    return EXIT_CANCELLED if job.state == State.CANCELLED else EXIT_FAILED
