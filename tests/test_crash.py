"""Kill -9 at any moment: the real bot (`python -m bot`) is SIGKILLed and restarted against the fakes.

Issue requirement: killing the process at any moment — right after the acknowledgement, while submitting,
while waiting, while downloading, while posting — ends every command in one video or one message, never
two, and nothing is submitted twice.

The fakes run in this (pytest) process on 127.0.0.1; the bot is a child process with its own event loop,
so a SIGKILL stops it mid-await, exactly like an OOM kill or a pulled plug. Each test decides *when* to
kill by watching the bot's SQLite `jobs` table (WAL mode: reading it while the bot writes is fine) and
the fakes' records, restarts the bot on the same database, and checks the end state. With
KLING_TEST_ENGINE=postgresql the bot runs on a PostgreSQL database of its own instead, read the same way
(tests/postgres.py).

The end state:

* every job is in a final state, and was told (``notified``) or delivered;
* every job has exactly one message carrying its outcome mark (channel posts and DMs);
* no prompt reached sunra twice, and every submit belongs to a job that has its request id or ended
  ``uncertain`` (a job killed in ``submitting`` is never resubmitted);
* neither the Discord token nor the sunra key ever appears in the bot's output.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from bot.store.sql import bind, to_postgresql
from cogs.jobs._delivery import outcome_mark
from tests import images, postgres
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord, InteractionRecord, MessageRecord, RecordedRequest
from tests.fakes.discord_server._components import buttons, components_text
from tests.fakes.sunra_server import FakeSunra, JobFailure, JobPlan
from tests.world import ENGINE_VARIABLE, LEDGER_BY_JOB, assert_ledger_matches, file_hosts, shown_text

REPO_ROOT = Path(__file__).resolve().parents[1]
SUNRA_KEY = "sk-crash-7f3a9c1e5b2d4f6a8c0e"
DISCORD_TOKEN = "MTI3NjQ4MzkyMDE1MzIyMTI0OA.GcRaSh.crash-test-token-9d8c7b6a5f4e3d2c"
ENDED = {"delivered", "failed", "cancelled", "refused", "uncertain"}
# Settings the bot must not pick up from the developer's environment.
ENV_PREFIXES = ("DISCORD_", "SUNRA_", "QUOTA__", "JOBS__", "MEDIA__")
ENV_NAMES = {"DATABASE_URL", "LOG_LEVEL", "COMMAND_GUILD_IDS", "BOT_CONFIG"}
START_TIMEOUT = 20.0
SETTLE_TIMEOUT = 25.0
# DEBUG lines left out of the log tails printed on failure (every SQL call, every gateway frame).
LOG_NOISE = (" aiosqlite: ", " discord.gateway: For Shard ID")


# ----- the bot as a child process --------------------------------------------------------------------------


class BotProcess:
    """`python -m bot` in a scratch directory, pointed at the fakes; one log file per run."""

    def __init__(self, workdir: Path, discord: FakeDiscord, sunra: FakeSunra, **env: str) -> None:
        self.workdir = workdir
        self.discord = discord
        self.sunra = sunra
        self.db_path = workdir / "bot.sqlite3"
        self.database_url = f"sqlite:///{self.db_path}"  # or a PostgreSQL database, set by start()
        self.extra_env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.logs: list[Path] = []
        self.kills = 0

    def environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.upper().startswith(ENV_PREFIXES) and key.upper() not in ENV_NAMES
        }
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            PYTHONUNBUFFERED="1",
            DISCORD_TOKEN=self.discord.token,
            SUNRA_KEY=SUNRA_KEY,
            DISCORD_API_URL=self.discord.api_url,
            DISCORD_GATEWAY_URL=self.discord.gateway_url,
            SUNRA_API_URL=self.sunra.url,
            SUNRA_FILE_HOSTS=file_hosts(
                self.discord.api_url, self.sunra.url
            ),  # the fakes on loopback are listed
            DATABASE_URL=self.database_url,
            JOBS__POLL_FIRST_SECONDS="0.05",
            JOBS__POLL_MAX_SECONDS="0.3",
            JOBS__PROGRESS_EDIT_SECONDS="1",
            LOG_LEVEL="DEBUG",
            # On PostgreSQL the process holds the whole bot's lease: a restart after kill -9 waits for
            # the killed one's to run out (bot/fleet.py), 2 s here rather than the 30 s default.
            SHARD_LEASE_SECONDS="2",
        )
        env.update(self.extra_env)
        return env

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, *, ready_within: float = START_TIMEOUT) -> None:
        """Starts a process and waits until it has its own READY gateway session and /animate exists."""
        assert not self.running, "the previous process is still running"
        if os.environ.get(ENGINE_VARIABLE) == "postgresql":
            self.database_url = await postgres.database_for(str(self.workdir))  # kept across restarts
        known = set(self.discord.sessions)
        log_path = self.workdir / f"bot-run-{len(self.logs) + 1}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log_file:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=self.workdir,
                env=self.environment(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )

        def ready() -> bool:
            if not self.running:
                raise AssertionError(
                    f"the bot exited with {self.proc and self.proc.returncode}\n{self.tail()}"
                )
            fresh = any(
                s.ready and s.connected for sid, s in self.discord.sessions.items() if sid not in known
            )
            commands = any(c["name"] == "animate" for c in self.discord.registered_commands())
            return fresh and commands

        try:
            await self.discord.wait_for(ready, timeout=ready_within, what="the bot's READY session")
        except TimeoutError as error:
            raise AssertionError(f"{error}\n{self.tail()}") from None

    async def kill(self) -> None:
        """SIGKILL: no signal handler, no finally block, no flush runs in the bot."""
        assert self.proc is not None and self.running, "no running bot to kill"
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1

    async def stop(self) -> None:
        """SIGTERM, the graceful way; SIGKILL if it does not stop in time."""
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    def tail(self, lines: int = 60) -> str:
        out = []
        for path in self.logs[-2:]:
            if path.exists():
                text = [
                    line
                    for line in path.read_text(errors="replace").splitlines()
                    if not any(noise in line for noise in LOG_NOISE)
                ][-lines:]
                out.append(f"----- {path.name} (last {len(text)} lines) -----")
                out.extend(text)
        return "\n".join(out)

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs if path.exists())


# ----- what a test sees ------------------------------------------------------------------------------------


class HoldingDiscord(FakeDiscord):
    """The fake Discord, able to keep the answer to an outcome post back after the post exists.

    With ``hold_outcome_posts`` set, the next channel post carrying an outcome mark is recorded (it is in
    the channel's history) but its HTTP answer waits until ``release`` is set: the bot is stuck between
    the post and the database write that follows it, the hardest moment to be killed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold_outcome_posts = False
        self.held: list[MessageRecord] = []
        self.release = asyncio.Event()

    async def _create_message(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        response = await super()._create_message(request, rec)
        body = rec.body if isinstance(rec.body, dict) else {}
        footers = [str((embed.get("footer") or {}).get("text", "")) for embed in body.get("embeds") or []]
        footers += components_text(body.get("components") or []).split("\n")
        if (
            self.hold_outcome_posts
            and response.status == 200
            and any(f.endswith(" · final") for f in footers)
        ):
            self.hold_outcome_posts = False
            assert isinstance(response, web.Response) and isinstance(response.body, bytes)
            self.held.append(self.message(int(json.loads(response.body)["id"])))
            self._notify()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), 30)
        return response


@dataclass
class Crash:
    discord: HoldingDiscord
    sunra: FakeSunra
    bot: BotProcess
    members: set[int] = field(default_factory=set)
    interactions: list[InteractionRecord] = field(default_factory=list)
    # Which process run each command was dispatched to (1 = the first start).
    run_of: dict[int, int] = field(default_factory=dict)

    # ----- commands

    async def animate(self, prompt: str, *, user_id: int = p.DEFAULT_USER_ID) -> InteractionRecord:
        assert self.bot.running, "dispatching to a dead bot would lose the command before it exists"
        if user_id not in self.members:
            self.discord.ensure_member(p.DEFAULT_GUILD_ID, user_id)
            self.members.add(user_id)
        image = self.discord.add_attachment("cat.png", images.png((640, 480)))
        payload = p.slash_command(
            self.discord, options={"image": image, "prompt": prompt, "audio": False}, user_id=user_id
        )
        interaction = await self.discord.dispatch_interaction(payload)
        assert interaction.delivered_to, "no live gateway session got the command"
        self.interactions.append(interaction)
        self.run_of[interaction.id] = len(self.bot.logs)
        return interaction

    # ----- the database

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        if self.bot.database_url.startswith("postgresql"):
            return _query_postgresql(self.bot.database_url, sql, args)
        if not self.bot.db_path.exists():
            return []
        con = sqlite3.connect(self.bot.db_path, timeout=5)
        try:
            con.row_factory = sqlite3.Row
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def jobs(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM jobs ORDER BY id")

    def job(self, interaction: InteractionRecord) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM jobs WHERE interaction_id = ?", (str(interaction.id),))
        return rows[0] if rows else None

    def events(self, job_id: int) -> list[tuple[str | None, str]]:
        rows = self.query(
            "SELECT from_state, to_state FROM job_events WHERE job_id = ? ORDER BY id", (job_id,)
        )
        return [(row[0], row[1]) for row in rows]

    async def until(self, predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        """Polls the fakes and the database (every request wakes it; at least every 20 ms)."""
        try:
            return await self.discord.wait_for(predicate, timeout=timeout, what=what)
        except TimeoutError as error:
            raise AssertionError(f"{error}\njobs: {self.describe()}\n{self.bot.tail()}") from None

    def settled(self) -> bool:
        rows = self.jobs()
        recorded = {row["interaction_id"] for row in rows}
        # A command the running process got must have become a job (one a killed process got may not),
        # unless it was refused at once (a type-4 answer, no job); assert_exactly_once rejects those.
        current = len(self.bot.logs)
        refused = {c.interaction_id for c in self.discord.callbacks if c.type == 4}
        if any(
            str(i.id) not in recorded and i.id not in refused
            for i in self.interactions
            if self.run_of[i.id] == current
        ):
            return False
        return all(row["state"] in ENDED and (row["notified"] or row["state"] == "delivered") for row in rows)

    async def wait_settled(self, timeout: float = SETTLE_TIMEOUT) -> list[sqlite3.Row]:  # noqa: ASYNC109
        await self.until(self.settled, "every job to end and be told", timeout)
        return self.jobs()

    def describe(self) -> str:
        return "; ".join(
            f"#{row['id']} {row['state']} notified={row['notified']} req={row['request_id']}"
            for row in self.jobs()
        )

    # ----- the channel

    def outcome_messages(self, job_id: int) -> list[MessageRecord]:
        mark = outcome_mark(job_id)
        return [
            m
            for m in self.discord.messages
            if m.kind == "channel"
            and not m.deleted
            and (
                any((e.get("footer") or {}).get("text") == mark for e in m.message.get("embeds") or [])
                or f"-# {mark}" in components_text(m.message.get("components") or []).split("\n")
            )
        ]

    def message_posts(self, since: int = 0) -> list[RecordedRequest]:
        """POSTs to any channel's messages (channel posts and DMs), from request number ``since`` on."""
        return [
            r
            for r in self.discord.requests[since:]
            if r.method == "POST" and r.path.startswith("/channels/") and r.path.endswith("/messages")
        ]

    # ----- the end state

    def assert_exactly_once(self) -> list[sqlite3.Row]:
        rows = self.jobs()
        detail = f"jobs: {self.describe()}\n{self.bot.tail()}"
        recorded = {row["interaction_id"] for row in rows}
        for interaction in self.interactions:
            callbacks = [c for c in self.discord.callbacks if c.interaction_id == interaction.id]
            # Type 5 (deferred) is the acknowledgement of an accepted command; type 4 would be a refusal.
            assert all(c.type == 5 for c in callbacks), f"command {interaction.id} refused\n{detail}"
            if callbacks:
                assert str(interaction.id) in recorded, (
                    f"acknowledged command {interaction.id} has no job\n{detail}"
                )
        for row in rows:
            job_id = row["id"]
            assert row["state"] in ENDED, f"job {job_id} did not end\n{detail}"
            assert row["state"] != "refused", f"job {job_id} was refused; this test expects none\n{detail}"
            assert row["notified"] or row["state"] == "delivered", f"job {job_id} never told\n{detail}"
            outcomes = self.outcome_messages(job_id)
            assert len(outcomes) == 1, f"job {job_id}: {len(outcomes)} outcome messages\n{detail}"
            if row["result_message_id"] is not None:
                assert int(row["result_message_id"]) == outcomes[0].id, f"job {job_id}\n{detail}"
            if row["state"] == "delivered":
                assert row["request_id"] in self.sunra.jobs, f"job {job_id}\n{detail}"
                message = outcomes[0]
                if message.files:
                    assert message.files[0].data == self.sunra.video_bytes(row["request_id"])
                else:
                    assert self.sunra.jobs[row["request_id"]].video_url in shown_text(message.message)
        # Nothing submitted twice: each prompt (unique per job) reached sunra at most once, and every
        # submit is a job that kept its request id or ended uncertain (killed while submitting).
        prompts = [body.get("prompt") for body in self.sunra.submissions if isinstance(body, dict)]
        assert len(prompts) == len(set(prompts)), f"a prompt was submitted twice: {prompts}\n{detail}"
        with_id = [row for row in rows if row["request_id"] is not None]
        assert len({row["request_id"] for row in with_id}) == len(with_id), detail
        uncertain = [row for row in rows if row["state"] == "uncertain"]
        submits = self.sunra.count("submit")
        assert len(with_id) <= submits <= len(with_id) + len(uncertain), (
            f"{submits} submits for {len(with_id)} jobs with a request id and {len(uncertain)} uncertain"
            f"\n{detail}"
        )
        for row in with_id:
            params_prompt = self.sunra.jobs[row["request_id"]].input["prompt"]
            assert params_prompt in row["params"], f"job {row['id']} holds another job's request id"
        # No credit lost or charged twice, whenever the process died.
        assert_ledger_matches(self.query(LEDGER_BY_JOB))
        return rows

    def assert_no_secrets_logged(self) -> None:
        text = self.bot.log_text()
        assert SUNRA_KEY not in text, "the sunra key was logged"
        assert self.discord.token not in text, "the Discord token was logged"


def _query_postgresql(url: str, sql: str, args: tuple[Any, ...]) -> list[Any]:
    """One read of the bot's PostgreSQL database from a synchronous predicate: its own connection on
    its own loop in a thread (the test's loop is busy waiting); [] while the bot has made no tables."""
    statement, order = to_postgresql(sql)

    async def read() -> list[Any]:
        con = await asyncpg.connect(url, timeout=5)
        try:
            return list(await con.fetch(statement, *bind(order, args)))
        except asyncpg.UndefinedTableError:
            return []
        finally:
            await con.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


@contextlib.asynccontextmanager
async def crash_world(tmp_path: Path, **env: str) -> AsyncIterator[Crash]:
    discord = HoldingDiscord(token=DISCORD_TOKEN)
    async with discord, FakeSunra(key=SUNRA_KEY) as sunra:
        discord.set_rate_limit("message_create", 1000, 1.0)
        discord.set_rate_limit("message_edit", 1000, 1.0)
        bot = BotProcess(tmp_path, discord, sunra, **env)
        world = Crash(discord, sunra, bot)
        try:
            await bot.start()
            yield world
            world.assert_no_secrets_logged()
        except BaseException:
            print(bot.tail(120))
            raise
        finally:
            discord.release.set()
            if bot.running:
                assert bot.proc is not None
                bot.proc.kill()
                await bot.proc.wait()


# ----- the crash points ------------------------------------------------------------------------------------


async def kill_when(world: Crash, predicate: Callable[[], Any], what: str) -> Any:
    """SIGKILLs the bot the moment ``predicate`` holds (checked on every request the fakes get)."""
    found = await world.until(predicate, what)
    await world.bot.kill()
    return found


def job_state_is(world: Crash, interaction: InteractionRecord, state: str) -> Callable[[], Any]:
    def check() -> Any:
        row = world.job(interaction)
        return row if row is not None and row["state"] == state else None

    return check


async def test_without_a_crash_one_video_and_a_clean_stop(tmp_path: Path) -> None:
    """The baseline the crash tests are measured against, and SIGTERM stopping the bot cleanly."""
    async with asyncio.timeout(30), crash_world(tmp_path) as world:
        await world.animate("a calm sea")
        await world.wait_settled()
        [row] = world.assert_exactly_once()
        assert row["state"] == "delivered"
        await world.bot.stop()
        assert world.bot.proc is not None and world.bot.proc.returncode == 0, world.bot.tail()


@pytest.mark.parametrize("moment", ["at_once", "while_checking"])
async def test_killed_right_after_the_acknowledgement(tmp_path: Path, moment: str) -> None:
    """Deferred, not yet queued: the restarted bot tells the member once and submits nothing twice.

    ``at_once`` kills the instant the deferral reaches Discord (the job is usually still being checked);
    ``while_checking`` holds the picture's upload to sunra so the job is surely still ``received``.
    """
    async with asyncio.timeout(40), crash_world(tmp_path) as world:
        if moment == "while_checking":
            world.sunra.fail_next("upload_initiate", 503, delay=30)
        interaction = await world.animate("a paper boat drifts")

        def acknowledged() -> bool:
            deferred = any(
                c.interaction_id == interaction.id and c.type == 5 for c in world.discord.callbacks
            )
            if moment == "while_checking":
                return deferred and world.sunra.count("upload_initiate") >= 1
            return deferred

        await kill_when(world, acknowledged, "the deferral")
        at_kill = world.job(interaction)
        assert at_kill is not None, "the job is written down before Discord is answered"
        print(f"killed in state {at_kill['state']}")
        if moment == "while_checking":
            assert at_kill["state"] == "received", dict(at_kill)
        await world.bot.start()
        [row] = await world.wait_settled()
        world.assert_exactly_once()
        if at_kill["state"] == "received":
            assert row["state"] == "failed" and row["error_code"] == "restarted_before_check", dict(row)
            assert world.sunra.count("submit") == 0
            [message] = world.outcome_messages(row["id"])
            assert "restarted before your picture was checked" in message.content
        else:  # the kill came after queueing: the job simply goes on
            assert row["state"] == "delivered", dict(row)
            assert world.sunra.count("submit") == 1


async def test_killed_while_submitting_ends_uncertain_and_is_never_resubmitted(tmp_path: Path) -> None:
    async with asyncio.timeout(40), crash_world(tmp_path) as world:
        world.sunra.hang_next_submit(30)  # sunra makes the job; its answer never reaches the bot
        interaction = await world.animate("a kite climbs")
        submitting = job_state_is(world, interaction, "submitting")
        await kill_when(world, lambda: submitting() and len(world.sunra.jobs) == 1, "the submit in flight")
        await world.bot.start()
        [row] = await world.wait_settled()
        assert row["state"] == "uncertain" and row["error_code"] == "submission_uncertain", dict(row)
        assert row["request_id"] is None and row["notified"]
        await asyncio.sleep(0.5)  # room for a wrong resubmission to show up
        world.assert_exactly_once()
        assert world.sunra.count("submit") == 1
        assert world.events(row["id"]).count(("queued", "submitting")) == 1
        [message] = world.outcome_messages(row["id"])
        assert [int(u["id"]) for u in message.message["mentions"]] == [p.DEFAULT_USER_ID]


async def test_killed_while_waiting_follows_the_same_job_after_restart(tmp_path: Path) -> None:
    async with asyncio.timeout(40), crash_world(tmp_path) as world:
        world.sunra.next_job(seconds=4.0, queue_seconds=1.0)
        interaction = await world.animate("a lighthouse blinks")
        submitted = job_state_is(world, interaction, "submitted")

        def followed() -> int:
            return world.sunra.count("stream") + world.sunra.count("status")

        at_kill = await kill_when(world, lambda: followed() >= 1 and submitted(), "the job to be waited for")
        request_id = at_kill["request_id"]
        assert request_id is not None and not world.sunra.jobs[request_id].is_done()
        followed_before = followed()
        await world.bot.start()
        [row] = await world.wait_settled()
        world.assert_exactly_once()
        assert row["state"] == "delivered" and row["request_id"] == request_id, dict(row)
        assert world.sunra.count("submit") == 1
        assert followed() > followed_before, "the restarted bot must follow the job it had submitted"
        [message] = world.outcome_messages(row["id"])
        assert message.files[0].data == world.sunra.video_bytes(request_id)


async def test_killed_while_downloading_delivers_once_after_restart(tmp_path: Path) -> None:
    async with asyncio.timeout(40), crash_world(tmp_path) as world:
        world.sunra.fail_next("video", 503, delay=30)  # the first download hangs
        interaction = await world.animate("a kettle boils")
        completed = job_state_is(world, interaction, "completed")
        await kill_when(world, lambda: world.sunra.count("video") == 1 and completed(), "the download")
        posts_before = len(world.message_posts())
        await world.bot.start()
        [row] = await world.wait_settled()
        world.assert_exactly_once()
        assert row["state"] == "delivered", dict(row)
        assert world.sunra.count("submit") == 1 and world.sunra.count("video") == 2
        [message] = world.outcome_messages(row["id"])
        assert message.files[0].data == world.sunra.video_bytes(row["request_id"])
        assert len(world.message_posts()) == posts_before + 1


async def test_killed_while_posting_before_the_post_lands(tmp_path: Path) -> None:
    """The final post failed once (500: discord.py waits a second to retry) and the bot dies meanwhile."""
    async with asyncio.timeout(40), crash_world(tmp_path) as world:
        world.sunra.next_job(seconds=1.0)
        interaction = await world.animate("a candle flickers")
        await world.until(
            lambda: (row := world.job(interaction)) is not None and row["progress_message_id"] is not None,
            "the progress message",
        )
        world.discord.inject_error(f"/channels/{p.DEFAULT_CHANNEL_ID}/messages", method="POST", status=500)
        delivering = job_state_is(world, interaction, "delivering")

        def failed_post() -> bool:
            return any(r.status == 500 for r in world.message_posts())

        at_kill = await kill_when(world, lambda: failed_post() and delivering(), "the failed final post")
        assert world.outcome_messages(at_kill["id"]) == []
        await world.bot.start()
        [row] = await world.wait_settled()
        world.assert_exactly_once()
        assert row["state"] == "delivered", dict(row)


@pytest.mark.parametrize("ending", ["video", "failure"])
async def test_killed_after_the_post_landed_but_before_it_was_recorded(tmp_path: Path, ending: str) -> None:
    """The final post is in the channel, the database does not know: the restarted bot must find it in
    the channel's history and post nothing. The fake holds back the answer to the post, so the bot is
    deterministically stuck between the post and the database write when it is killed."""
    async with asyncio.timeout(40), crash_world(tmp_path) as world:
        if ending == "failure":
            world.sunra.fail_next_job("Content flagged", retryable=False, seconds=0.5)
        world.discord.hold_outcome_posts = True
        interaction = await world.animate("a fox jumps")
        await kill_when(world, lambda: world.discord.held, "the final post")
        [held] = world.discord.held
        at_kill = world.job(interaction)
        assert at_kill is not None
        assert at_kill["state"] == ("delivering" if ending == "video" else "failed"), dict(at_kill)
        assert not at_kill["notified"] and at_kill["result_message_id"] is None
        world.discord.release.set()
        requests_before = len(world.discord.requests)
        await world.bot.start()
        [row] = await world.wait_settled()
        world.assert_exactly_once()
        assert row["state"] == ("delivered" if ending == "video" else "failed"), dict(row)
        assert int(row["result_message_id"]) == held.id
        assert world.message_posts(since=requests_before) == [], "the restarted bot posted again"
        # ...and the progress message is closed: its final status, no Cancel button left.
        progress = world.discord.message(int(row["progress_message_id"]))
        expected = "Done" if ending == "video" else "Ended without a video"
        await world.discord.wait_for(
            lambda: (
                expected in components_text(progress.message["components"])
                and not buttons(progress.message["components"])
            ),
            timeout=10,
        )


@pytest.mark.parametrize("moment", ["state_delivering", "post_seen"])
async def test_killed_around_the_final_post_either_way(tmp_path: Path, moment: str) -> None:
    """Racy on purpose: kill the instant the job turns ``delivering``, or the instant its final message
    shows up in the channel. Whichever side of the post the kill lands on: exactly one message."""
    async with asyncio.timeout(40), crash_world(tmp_path) as world:
        interaction = await world.animate("a wave breaks")

        def now() -> bool:
            row = world.job(interaction)
            if row is None:
                return False
            if moment == "state_delivering":
                return bool(row["state"] == "delivering")
            return bool(world.outcome_messages(row["id"]))

        await kill_when(world, now, moment)
        at_kill = world.job(interaction)
        assert at_kill is not None
        posted = world.outcome_messages(at_kill["id"])
        print(f"killed in state {at_kill['state']} with {len(posted)} final post(s)")
        requests_before = len(world.discord.requests)
        await world.bot.start()
        [row] = await world.wait_settled()
        world.assert_exactly_once()
        assert row["state"] == "delivered", dict(row)
        assert world.sunra.count("submit") == 1
        if posted:  # found in the history, not merely deduplicated by Discord's nonce check
            assert world.message_posts(since=requests_before) == [], "the restarted bot posted again"


async def test_killed_at_random_moments_with_many_jobs_in_flight(tmp_path: Path) -> None:
    """Six jobs from three members (videos, slow videos, failures, a slow submit, slow downloads), three
    SIGKILLs at seeded random moments, a restart after each: every command ends in exactly one message,
    nothing is submitted twice. ``CRASH_SEED=n`` in the environment replays another schedule."""
    seed = int(os.environ.get("CRASH_SEED", "4"))
    rng = random.Random(seed)
    members = [p.DEFAULT_USER_ID, 1_143_850_174_982_443_080, 1_143_850_174_982_443_081]
    async with asyncio.timeout(75), crash_world(tmp_path) as world:
        world.sunra.job_seconds = 0.8
        world.sunra.plan_jobs(JobPlan(seconds=2.0), prompt_contains="[slow]", times=None)
        world.sunra.plan_jobs(
            JobPlan(seconds=0.6, fail=JobFailure("Content flagged", retryable=False)),
            prompt_contains="[fail]",
            times=None,
        )
        world.sunra.hang_next_submit(0.8)  # the first submit is answered late: killable in "submitting"
        world.sunra.fail_next("video", 503, delay=0.5, times=2)  # two slow, failed downloads (retried)
        kinds = ["", "[slow] ", "[fail] ", "", "[slow] ", ""]
        batches = [3, 2, 1]  # commands sent to the first, second and third process
        number = 0
        kill_delays: list[float] = []
        at_kills: list[list[str]] = []
        for batch in batches:
            for _ in range(batch):
                user = members[number % len(members)]
                await world.animate(f"{kinds[number]}job {number} of member {user}", user_id=user)
                number += 1
                await asyncio.sleep(rng.uniform(0.0, 0.3))
            delay = rng.uniform(0.05, 1.5)
            kill_delays.append(round(delay, 2))
            await asyncio.sleep(delay)
            await world.bot.kill()
            at_kills.append([row["state"] for row in world.jobs()])
            await world.bot.start()
        rows = await world.wait_settled(timeout=40)
        world.assert_exactly_once()
        assert world.bot.kills == 3
        states = [row["state"] for row in rows]
        print(f"seed {seed}: kills after {kill_delays} s, job states then {at_kills}; at the end {states}")
        assert len(rows) >= sum(batches) - len(batches), "at most one command per kill may die unrecorded"
        for row in rows:  # a failure at sunra is a failure, never a video, whatever the kills
            if "[fail]" in row["params"] and row["request_id"] is not None:
                assert row["state"] == "failed", dict(row)


async def test_killed_at_random_moments_while_members_press_cancel(tmp_path: Path) -> None:
    """Issue 9's cancel storm with real kills: commands from three members, Cancel pressed at random on
    running jobs, the process SIGKILLed three times at seeded moments and restarted. Every job ends once
    with one message, the ledger balances, no reservation stays open, and a new job still delivers."""
    seed = int(os.environ.get("CRASH_SEED", "4"))
    rng = random.Random(seed)
    members = [p.DEFAULT_USER_ID, 1_143_850_174_982_443_080, 1_143_850_174_982_443_081]
    pressed: list[str] = []
    async with asyncio.timeout(100), crash_world(tmp_path, QUOTA__MAX_CONCURRENT_JOBS="1") as world:
        world.sunra.job_seconds = 0.8
        world.sunra.plan_jobs(JobPlan(seconds=2.0), prompt_contains="[slow]", times=None)
        world.sunra.fail_next("cancel", 503, times=4)  # one cancel the API does not confirm
        number = 0
        for life in range(3):
            for _ in range(rng.randint(12, 22)):
                if number < 4 * (life + 1) and rng.random() < 0.35:
                    kind = rng.choice(["", "[slow] "])
                    await world.animate(f"{kind}storm {number}", user_id=members[number % len(members)])
                    number += 1
                live = [row for row in world.jobs() if row["state"] not in ENDED]
                if live and rng.random() < 0.3:
                    row = rng.choice(live)
                    pressed.append(row["state"])
                    click = p.button_click(
                        world.discord, f"kling:cancel:{row['id']}", user_id=int(row["user_id"])
                    )
                    await world.discord.dispatch_interaction(click)
                await asyncio.sleep(rng.uniform(0.02, 0.15))
            await world.bot.kill()
            await world.bot.start()
        rows = await world.wait_settled(timeout=40)
        print(f"seed {seed}: presses in states {pressed}; at the end {[row['state'] for row in rows]}")
        world.assert_exactly_once()
        for row in rows:
            endings = [to for _, to in world.events(row["id"]) if to in ENDED]
            assert len(endings) == 1, f"job {row['id']} ended {endings}"
        open_reservations = world.query(
            "SELECT r.job_id FROM quota_ledger r WHERE r.kind = 'reserve' AND NOT EXISTS (SELECT 1 FROM"
            " quota_ledger s WHERE s.job_id = r.job_id AND s.kind IN ('commit', 'refund'))"
        )
        assert open_reservations == [], [row[0] for row in open_reservations]
        after = await world.animate("after the storm")
        await world.wait_settled(timeout=20)
        last = world.job(after)
        assert last is not None and last["state"] == "delivered", dict(last or {})


async def test_sigterm_while_a_crowd_is_being_accepted_stops_cleanly(tmp_path: Path) -> None:
    """SIGTERM while forty commands are still being checked and queued: the process exits 0 without a
    traceback (no handler outlives the database), and the next start ends every recorded job once."""
    members = [p.DEFAULT_USER_ID + number for number in range(40)]
    async with asyncio.timeout(60), crash_world(tmp_path, QUOTA__MAX_CONCURRENT_JOBS="50") as world:
        await asyncio.gather(
            *(world.animate(f"crowd {number}", user_id=user) for number, user in enumerate(members))
        )
        await world.until(lambda: any(row["state"] == "queued" for row in world.jobs()), "a queued job")
        await world.bot.stop()
        assert world.bot.proc is not None and world.bot.proc.returncode == 0, world.bot.tail()
        stopped = world.bot.log_text()
        assert "Traceback" not in stopped and "no active connection" not in stopped, world.bot.tail()
        await world.bot.start()
        rows = await world.wait_settled()
        world.assert_exactly_once()
        assert len(rows) == len(members)
        # A graceful stop lets the submissions already sent be answered: none is left uncertain.
        assert [row["id"] for row in rows if row["state"] == "uncertain"] == [], world.describe()
        assert "Traceback" not in world.bot.log_text(), world.bot.tail()


async def test_sigterm_while_submitting_lets_the_submission_finish(tmp_path: Path) -> None:
    """A graceful stop waits for a submit already sent: its request id is recorded and the job is
    followed after the restart, where a SIGKILL at the same moment would end it "uncertain"."""
    async with asyncio.timeout(40), crash_world(tmp_path) as world:
        world.sunra.hang_next_submit(1.5)
        interaction = await world.animate("a slow answer")
        await world.until(lambda: world.sunra.count("submit") == 1, "the submit to reach sunra")
        await world.bot.stop()
        assert world.bot.proc is not None and world.bot.proc.returncode == 0, world.bot.tail()
        row = world.job(interaction)
        assert row is not None and row["state"] == "submitted" and row["request_id"], dict(row or {})
        await world.bot.start()
        [row] = await world.wait_settled()
        world.assert_exactly_once()
        assert row["state"] == "delivered" and world.sunra.count("submit") == 1, dict(row)
        assert "Traceback" not in world.bot.log_text(), world.bot.tail()
