"""The whole bot, in-process, against a fake Discord and a fake sunra on 127.0.0.1.

`World` starts KlingBot exactly as `python -m bot` would (same Settings, Database, SunraClient,
ImageChecker), pointed at the fakes, and gives tests short verbs: send an /animate, wait for its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bot.app import KlingBot
from bot.config import Settings
from bot.image_checker import ImageChecker
from bot.jobs import ENDED
from bot.netguard import UrlPolicy
from bot.store import Database, ledger
from bot.store.jobs import JobRow
from bot.sunra import RetryPolicy, SunraClient, Timeouts
from cogs.jobs._delivery import outcome_mark
from tests import images, postgres
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord, InteractionRecord, MessageRecord, running_client
from tests.fakes.discord_server._components import buttons, components_text
from tests.fakes.sunra_server import FakeSunra

SUNRA_KEY = "sk-test-0123456789abcdef"
FAST_RETRY = RetryPolicy(base=0.01, cap=0.05)
# KLING_TEST_ENGINE=postgresql runs every whole-bot test (running_world) on a fresh PostgreSQL database.
ENGINE_VARIABLE = "KLING_TEST_ENGINE"


def test_settings(discord: FakeDiscord, sunra: FakeSunra, database: Path, **overrides: Any) -> Settings:
    jobs = {"poll_first_seconds": 0.05, "poll_max_seconds": 0.2, "progress_edit_seconds": 1.0}
    jobs.update(overrides.pop("jobs", {}))
    values: dict[str, Any] = {
        "discord_token": discord.token,
        "sunra_key": SUNRA_KEY,
        "discord_api_url": discord.api_url,
        "discord_gateway_url": discord.gateway_url,
        "sunra_api_url": sunra.url,
        "database_url": f"sqlite:///{database}",
        "jobs": jobs,
        # On PostgreSQL a bot holds the whole bot's lease; a test's next bot takes it at once or soon.
        "shard_lease_seconds": 2.0,
    }
    values.update(overrides)
    # The fakes are on loopback: listed, as issue 19 says an operator would (bot/netguard.py).
    values.setdefault("sunra_file_hosts", file_hosts(discord.api_url, str(values["sunra_api_url"])))
    return Settings(**values)


def file_hosts(*urls: str) -> str:
    """SUNRA_FILE_HOSTS for servers on loopback (the fakes, a simulator): their exact host:port pairs."""
    return ",".join(httpx.URL(url).netloc.decode() for url in urls)


def listed(*urls: str) -> UrlPolicy:
    """The file host policy with these servers listed, as an operator lists hosts in SUNRA_FILE_HOSTS."""
    return UrlPolicy(file_hosts(*urls))


def loosen_rate_limits(fake: FakeDiscord) -> None:
    """Many jobs post in one channel in tests; Discord's real buckets are exercised in their own tests."""
    fake.set_rate_limit("message_create", 1000, 1.0)
    fake.set_rate_limit("message_edit", 1000, 1.0)


# Per job: its state and price, and what the ledger holds for it.
LEDGER_BY_JOB = """
SELECT j.id, j.state, j.cost_credits,
       SUM(CASE WHEN l.kind = 'reserve' THEN 1 ELSE 0 END),
       SUM(CASE WHEN l.kind = 'commit' THEN 1 ELSE 0 END),
       SUM(CASE WHEN l.kind = 'refund' THEN 1 ELSE 0 END),
       COALESCE(SUM(l.allowance_delta + l.bonus_delta), 0)
FROM jobs j LEFT JOIN quota_ledger l ON l.job_id = j.id GROUP BY j.id
"""


def assert_ledger_matches(rows: Iterable[Sequence[Any]]) -> None:
    """Every delivered job was charged exactly its price once; every other ended job charged nothing."""
    for job_id, state, cost, reserves, commits, refunds, net in rows:
        reserves, commits, refunds = reserves or 0, commits or 0, refunds or 0
        if state == "delivered":
            assert (reserves, commits, refunds, net) == (1, 1, 0, -cost), (job_id, state, net)
        elif state == "undeliverable":
            # Its credits come back by a compensating row linked to it (migration 0012): net nothing.
            assert (reserves, commits, refunds, net) == (1, 1, 0, 0), (job_id, state, net)
        elif state in ENDED:
            assert commits == 0 and net == 0 and refunds == reserves, (job_id, state, reserves, refunds)


async def balance_of(world: World, user_id: int = p.DEFAULT_USER_ID) -> int:
    """The credits the member can spend now in the default guild."""
    balance = await world.bot.quota.balance(guild_id=p.DEFAULT_GUILD_ID, user_id=user_id, role_ids=())
    return balance.available


@dataclass
class World:
    discord: FakeDiscord
    sunra: FakeSunra
    bot: KlingBot
    db: Database
    members: set[int] = field(default_factory=set)

    def image(self, data: bytes | None = None, filename: str = "cat.png", **kw: Any) -> dict[str, Any]:
        return self.discord.add_attachment(filename, data or images.png((640, 480)), **kw)

    async def animate(
        self, prompt: str = "the cat waves", *, user_id: int | None = None, image: Any = None, **options: Any
    ) -> InteractionRecord:
        user_id = user_id or p.DEFAULT_USER_ID
        if user_id not in self.members:
            self.discord.ensure_member(p.DEFAULT_GUILD_ID, user_id)
            self.members.add(user_id)
        opts = {"image": image if image is not None else self.image(), "prompt": prompt, **options}
        return await self.discord.dispatch_interaction(
            p.slash_command(self.discord, options=opts, user_id=user_id)
        )

    async def private_answer(self, interaction: InteractionRecord, within: float = 10.0) -> str:
        """The text the member finally reads privately: the ephemeral reply or the deferred one's edit."""
        callback = await self.discord.wait_for_callback(interaction.id, timeout=within)
        if callback.type == 4:
            return str(callback.data.get("content", ""))

        def edited() -> str | None:
            for message in self.discord.messages:
                if message.kind == "interaction_response" and message.interaction_id == interaction.id:
                    content = message.message.get("content")
                    return str(content) if content else None
            return None

        return await self.discord.wait_for(edited, timeout=within)

    async def job_for(self, interaction: InteractionRecord) -> JobRow:
        row = await self.db.fetchone("SELECT id FROM jobs WHERE interaction_id = ?", (str(interaction.id),))
        assert row is not None, "no job recorded for this interaction"
        job = await self.bot.job_store.get(int(row[0]))
        assert job is not None
        return job

    async def ended(self, interaction: InteractionRecord, within: float = 20.0) -> JobRow:
        """Waits until the job has ended, its outcome is posted (or told privately) and its credits are
        settled. A refusal is recorded, told and only then refunded, in two transactions: a test that
        read the balance in between failed under load (tests/test_netguard.py)."""
        job = await self.until(
            lambda job: job.state in ENDED and (job.notified or job.state == "delivered"), interaction, within
        )
        deadline = asyncio.get_running_loop().time() + within
        while (reservation := await ledger.find_reservation(self.db, job.id)) and reservation.settled is None:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"job {job.id} ended {job.state} but its credits were not settled")
            await asyncio.sleep(0.02)
        return job

    async def until(
        self, predicate: Callable[[JobRow], bool], interaction: InteractionRecord, within: float = 20.0
    ) -> JobRow:
        loop_time = asyncio.get_running_loop().time
        deadline = loop_time() + within
        while True:
            with contextlib.suppress(AssertionError):
                job = await self.job_for(interaction)
                if predicate(job):
                    return job
            if loop_time() > deadline:
                raise TimeoutError(f"job of interaction {interaction.id} did not get there in {within}s")
            await asyncio.sleep(0.02)

    async def assert_ledger_matches_jobs(self) -> None:
        assert_ledger_matches(await self.db.fetchall(LEDGER_BY_JOB))

    def outcome_messages(self, job_id: int) -> list[MessageRecord]:
        return outcome_messages(self.discord, job_id)


def outcome_messages(discord: FakeDiscord, job_id: int) -> list[MessageRecord]:
    """Every message carrying the job's outcome mark: in an embed's footer, or a card's last line."""
    mark = outcome_mark(job_id)
    return [
        m
        for m in discord.messages
        if any(e.get("footer", {}).get("text") == mark for e in m.message.get("embeds", []))
        or f"-# {mark}" in components_text(m.message.get("components") or []).split("\n")
    ]


def shown_text(message: dict[str, Any]) -> str:
    """What a member reads of a message: its content and, in a card, its text displays and link buttons."""
    components = message.get("components") or []
    links = [str(b.get("url")) for b in buttons(components) if b.get("style") == 5]
    return "\n".join([str(message.get("content") or ""), components_text(components), *links])


@contextlib.asynccontextmanager
async def running_world(
    tmp_path: Path,
    *,
    discord: FakeDiscord | None = None,
    sunra: FakeSunra | None = None,
    timeouts: Timeouts | None = None,
    **overrides: Any,
) -> AsyncIterator[World]:
    async with contextlib.AsyncExitStack() as stack:
        if discord is None:
            discord = await stack.enter_async_context(FakeDiscord())
            loosen_rate_limits(discord)
        if sunra is None:
            sunra = await stack.enter_async_context(FakeSunra(key=SUNRA_KEY))
        url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
        if os.environ.get(ENGINE_VARIABLE) == "postgresql":
            url = await postgres.database_for(str(tmp_path))  # a restart in the test finds it again
        settings = test_settings(discord, sunra, tmp_path / "bot.sqlite3", database_url=url, **overrides)
        db = await stack.enter_async_context(await Database.open(url))
        client = await stack.enter_async_context(
            SunraClient(
                settings.sunra_base,
                SUNRA_KEY,
                retry=FAST_RETRY,
                timeouts=timeouts or Timeouts(),
                file_hosts=settings.url_policy(),
            )
        )
        checker = await stack.enter_async_context(
            ImageChecker(
                url_policy=settings.url_policy(),
                max_workers=2,
                download_timeout=10,
                max_download_bytes=settings.media.max_download_bytes,
            )
        )
        bot = KlingBot(settings, db=db, sunra=client, images=checker, workdir=tmp_path / "work")
        await stack.enter_async_context(running_client(bot, discord))
        yield World(discord, sunra, bot, db)


class Unseen:
    """A job reporter that shows nothing, for a JobRunner run without Discord (its dispatcher under test
    or measured); `shown` counts the progress it was asked to show."""

    shown = 0

    async def post_progress(self, job: JobRow, request: object, progress: object) -> int | None:
        return None

    async def show_progress(self, job: JobRow, progress: object) -> None:
        self.shown += 1

    async def deliver(self, job: JobRow, video: Path | None, *, reencoded: bool = False) -> int | None:
        return None

    async def notify_end(self, job: JobRow) -> int | None:
        return None

    async def find_outcome(self, job: JobRow) -> int | None:
        return None

    async def recover_progress(self, job: JobRow, request: object) -> int | None:
        return None

    async def close(self) -> None:
        return None
