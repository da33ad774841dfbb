"""Credits: prices, periods, allowances, caps, the ledger's settle paths, real concurrency, and the
/quota and /quota-admin commands through an unmodified discord.py talking to the fake Discord."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import itertools
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import discord
import pytest
from discord.ext import commands
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import InputRefused
from bot.quota.admin import GrantRefused
from bot.quota.checks import QuotaRefused
from bot.quota.rules import JobOptions, QuotaSettings, job_cost, load_zone, period_bounds, usd_micros
from bot.quota.spending import COMMIT_STATES, REFUND_STATES, QuotaService, Reservation
from bot.store import Database, ledger
from bot.store.jobs import JobStore
from bot.store.migrations import migrations
from bot.store.undeliverable import end_undeliverable
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord, running_client

# Wednesday 12 March 2025, 15:00 UTC.
NOW = dt.datetime(2025, 3, 12, 15, 0, tzinfo=dt.UTC).timestamp()
GUILD = 111
OTHER_GUILD = 222
ALICE = 1001
BOB = 1002
ADMIN = 9

SILENT_5 = JobOptions(duration=5, audio=False, voices=0)  # 5 credits with the defaults
AUDIO_5 = JobOptions(duration=5, audio=True, voices=0)  # 10
VOICES_5 = JobOptions(duration=5, audio=True, voices=1)  # 12
SILENT_10 = JobOptions(duration=10, audio=False, voices=0)  # 10

_interaction_ids = itertools.count(1)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The ledger's tests run on both engines."""
    database = await Database.open(database_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_service(db: Database, clock: Clock, **settings: Any) -> QuotaService:
    return QuotaService(db, QuotaSettings(**settings), clock=clock)


async def new_job(
    db: Database, *, user_id: int = ALICE, guild_id: int | None = GUILD, state: str = "received"
) -> int:
    job_id, created = await JobStore(db).create(
        interaction_id=next(_interaction_ids),
        guild_id=guild_id,
        channel_id=5,
        user_id=user_id,
        state=state,
        params={"prompt": "a cat waves"},
        upload_limit=10_485_760,
        lifetime_seconds=3600,
    )
    assert created
    return job_id


async def reserve(
    quota: QuotaService,
    *,
    options: JobOptions = SILENT_5,
    user_id: int = ALICE,
    guild_id: int | None = GUILD,
    role_ids: Sequence[int] = (),
) -> Reservation:
    job_id = await new_job(quota.db, user_id=user_id, guild_id=guild_id)
    return await quota.reserve(
        job_id=job_id, guild_id=guild_id, user_id=user_id, role_ids=role_ids, options=options
    )


async def available(
    quota: QuotaService, *, user_id: int = ALICE, guild_id: int | None = GUILD, role_ids: Sequence[int] = ()
) -> int:
    balance = await quota.balance(guild_id=guild_id, user_id=user_id, role_ids=role_ids)
    return balance.available


# ----- prices and settings --------------------------------------------------------------------------------


def test_default_prices_mirror_the_api() -> None:
    settings = QuotaSettings()
    assert [job_cost(o, settings) for o in (SILENT_5, AUDIO_5, VOICES_5)] == [5, 10, 12]
    assert job_cost(JobOptions(5, True, 2), settings) == 12
    assert job_cost(SILENT_10, settings) == 10
    assert job_cost(JobOptions(10, True, 0), settings) == 20
    assert job_cost(JobOptions(10, True, 2), settings) == 24
    # $0.07 per credit: 5 s silent = $0.35, 5 s with voices = $0.84, as the endpoint charges.
    assert usd_micros(5, settings) == 350_000 and usd_micros(12, settings) == 840_000
    custom = QuotaSettings(credits_per_second=2, audio_multiplier=1.5, voices_multiplier=3.3)
    assert [job_cost(o, custom) for o in (SILENT_5, AUDIO_5, VOICES_5)] == [10, 15, 33]
    assert job_cost(SILENT_5, QuotaSettings(credits_per_second=0.3)) == 2  # 1.5 rounds up


def test_settings_defaults_and_validation() -> None:
    settings = QuotaSettings()
    assert (settings.daily_credits, settings.max_concurrent_jobs, settings.guild_credits) == (50, 2, 0)
    assert settings.global_daily_usd == 0 and settings.period == "daily" and settings.timezone == "UTC"
    assert settings.cooldown_seconds == 0 and settings.dm_credits == 0 and settings.max_jobs_in_flight == 0
    for bad in (
        {"daily_credits": -1},
        {"guild_credits": -5},
        {"global_daily_usd": -0.5},
        {"cooldown_seconds": -1},
        {"max_concurrent_jobs": -1},
        {"usd_per_credit": -0.07},
        {"credits_per_second": 0},
        {"period": "hourly"},
        {"timezone": "Mars/Olympus_Mons"},
    ):
        with pytest.raises(ValidationError):
            QuotaSettings(**bad)
    assert QuotaSettings(timezone="Europe/Paris").timezone == "Europe/Paris"


class _NestedSettings(BaseSettings):
    """The way the bot's Settings nests QuotaSettings (bot/config.py)."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")
    quota: QuotaSettings = QuotaSettings()


def test_environment_names_reach_the_nested_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTA__DAILY_CREDITS", "7")
    monkeypatch.setenv("QUOTA__MAX_CONCURRENT_JOBS", "3")
    monkeypatch.setenv("QUOTA__GUILD_CREDITS", "400")
    monkeypatch.setenv("QUOTA__GLOBAL_DAILY_USD", "25.5")
    quota = _NestedSettings().quota
    assert (quota.daily_credits, quota.max_concurrent_jobs, quota.guild_credits) == (7, 3, 400)
    assert quota.global_daily_usd == 25.5


def test_periods_start_at_local_midnight() -> None:
    utc = load_zone("UTC")
    day = period_bounds(NOW, "daily", utc)
    assert day == (
        dt.datetime(2025, 3, 12, tzinfo=dt.UTC).timestamp(),
        dt.datetime(2025, 3, 13, tzinfo=dt.UTC).timestamp(),
    )
    week = period_bounds(NOW, "weekly", utc)
    assert week[0] == dt.datetime(2025, 3, 10, tzinfo=dt.UTC).timestamp()  # Monday
    assert week[1] == dt.datetime(2025, 3, 17, tzinfo=dt.UTC).timestamp()
    month = period_bounds(NOW, "monthly", utc)
    assert month == (
        dt.datetime(2025, 3, 1, tzinfo=dt.UTC).timestamp(),
        dt.datetime(2025, 4, 1, tzinfo=dt.UTC).timestamp(),
    )
    # New York moved its clocks on 9 March 2025; 15:00 UTC is 11:00 there.
    new_york = load_zone("America/New_York")
    start, end = period_bounds(NOW, "daily", new_york)
    assert dt.datetime.fromtimestamp(start, new_york).replace(tzinfo=None) == dt.datetime(2025, 3, 12)
    assert end - start == 86_400
    # The day clocks change lasts 23 hours.
    change_day = dt.datetime(2025, 3, 9, 12, tzinfo=new_york).timestamp()
    start, end = period_bounds(change_day, "daily", new_york)
    assert end - start == 23 * 3600


# ----- reserve, commit, refund ----------------------------------------------------------------------------


async def test_reserve_spends_the_allowance_then_the_bonus(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, daily_credits=20)
    assert await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, credits=10, reason="prize") == 10
    first = await reserve(quota, options=AUDIO_5)
    assert (first.cost, first.from_allowance, first.from_bonus, first.balance_after) == (10, 10, 0, 20)
    second = await reserve(quota, options=SILENT_5)
    assert (second.from_allowance, second.from_bonus, second.balance_after) == (5, 0, 15)
    third = await reserve(quota, options=VOICES_5)
    assert (third.from_allowance, third.from_bonus, third.balance_after) == (5, 7, 3)
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert (balance.allowance_left, balance.bonus, balance.spent_this_period) == (0, 3, 27)
    assert balance.resets_at == dt.datetime(2025, 3, 13, tzinfo=dt.UTC).timestamp()
    job = await JobStore(db).get(third.job_id)
    assert job is not None and job.cost_credits == 12  # written in the reserve's transaction
    assert "12 credits" in third.describe() and f"<t:{int(balance.resets_at)}:R>" in third.describe()

    with pytest.raises(QuotaRefused) as refused:
        await reserve(quota, options=SILENT_5)
    assert refused.value.code == "insufficient_credits" and refused.value.balance == 3
    assert "costs 5 credits" in refused.value.user_message and "you have 3 left" in refused.value.user_message
    assert f"<t:{int(balance.resets_at)}:R>" in refused.value.user_message
    assert isinstance(refused.value, InputRefused)


async def test_an_exact_fit_passes_and_one_credit_short_does_not(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, daily_credits=12, guild_credits=22, global_daily_usd=1.54)
    await quota.set_role_allowance(guild_id=GUILD, actor_id=ADMIN, role_id=7, credits=11)
    assert (await reserve(quota, options=VOICES_5)).balance_after == 0  # 12 of 12
    with pytest.raises(QuotaRefused, match="costs 12 credits, but you have 11 left"):
        await reserve(quota, options=VOICES_5, user_id=BOB, role_ids=[7])
    await reserve(quota, options=AUDIO_5, user_id=BOB, role_ids=[7])  # the server has used exactly 22
    with pytest.raises(QuotaRefused) as refused:
        await reserve(quota, options=JobOptions(1, False, 0), user_id=BOB, role_ids=[7])
    assert refused.value.code == "server_cap"
    # 22 credits = $1.54, exactly the operator's daily cap: one more credit anywhere is refused.
    with pytest.raises(QuotaRefused) as refused:
        await reserve(quota, options=JobOptions(1, False, 0), guild_id=OTHER_GUILD)
    assert refused.value.code == "global_cap"


async def test_quote_checks_like_reserve_and_writes_nothing(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, daily_credits=12)
    quote = await quota.quote(guild_id=GUILD, user_id=ALICE, role_ids=(), options=AUDIO_5)
    assert (quote.cost, quote.balance, quote.balance_after, quote.usd_micros) == (10, 12, 2, 700_000)
    assert quote.resets_at == dt.datetime(2025, 3, 13, tzinfo=dt.UTC).timestamp()
    with pytest.raises(QuotaRefused):
        await quota.quote(guild_id=GUILD, user_id=ALICE, role_ids=(), options=JobOptions(10, True, 1))
    assert await ledger.ledger_entries(db) == []


async def test_refund_gives_back_and_commit_is_final(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, daily_credits=20)
    refunded = await reserve(quota, options=AUDIO_5)
    assert await available(quota) == 10
    await quota.refund(refunded.job_id, "failed")
    assert await available(quota) == 20
    await quota.refund(refunded.job_id, "failed again")  # idempotent
    await quota.commit(refunded.job_id)  # too late: already refunded
    assert await available(quota) == 20
    kinds = [entry.kind for entry in await ledger.ledger_entries(db, job_id=refunded.job_id)]
    assert kinds == ["reserve", "refund"]

    committed = await reserve(quota, options=AUDIO_5)
    await quota.commit(committed.job_id)
    await quota.commit(committed.job_id)
    await quota.refund(committed.job_id, "delivery failed")  # the API was paid: no refund
    assert await available(quota) == 10  # a commit does not count the credits a second time
    kinds = [entry.kind for entry in await ledger.ledger_entries(db, job_id=committed.job_id)]
    assert kinds == ["reserve", "commit"]


async def test_settle_entries_are_unique_in_the_database_itself(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    job = await reserve(quota)
    await quota.commit(job.job_id)
    with pytest.raises(Exception, match=r"(?i)unique"):
        async with db.write() as tx:
            await tx.execute(
                "INSERT INTO quota_ledger (guild_id, user_id, kind, job_id, charged_at, at)"
                " VALUES ('111', '1001', 'refund', ?, 0, 0)",
                (job.job_id,),
            )
    with pytest.raises(Exception, match="append-only"):
        await db.execute("UPDATE quota_ledger SET allowance_delta = 0")
    with pytest.raises(Exception, match="append-only"):
        await db.execute("DELETE FROM quota_ledger")


async def insert_job_row(db: Database, kind: str, job_id: int | None) -> None:
    """A ledger row written by hand, as a bug or a second process might: the database must refuse it."""
    await db.execute(
        "INSERT INTO quota_ledger (guild_id, user_id, kind, job_id, charged_at, at)"
        " VALUES ('111', '1001', ?, ?, 0, 0)",
        (kind, job_id),
    )


async def assert_append_only(db: Database) -> None:
    with pytest.raises(Exception, match="append-only"):
        await db.execute("UPDATE quota_ledger SET allowance_delta = 0")
    with pytest.raises(Exception, match="append-only"):
        await db.execute("DELETE FROM quota_ledger")


async def test_an_undeliverable_job_costs_nothing_in_quota_nor_the_server_cap(
    db: Database, clock: Clock
) -> None:
    """Issue 19's note: the credits of a paid video that could not be fetched come back by a compensating
    entry linked to the job, so /quota's recent spending and the server's cap no longer count it."""
    quota = make_service(db, clock, daily_credits=20)
    await quota.set_cap(guild_id=GUILD, actor_id=ADMIN, credits=12)
    lost = await reserve(quota, user_id=ALICE)
    kept = await reserve(quota, user_id=BOB)
    await quota.commit(kept.job_id)
    ended = await end_undeliverable(
        db, lost.job_id, from_states=("received",), code="video_unusable", message="gone", at=clock.now
    )
    assert ended and await available(quota) == 20
    report = await quota.report(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert (report.recent_jobs, report.recent_credits) == (0, 0)
    assert await quota.recent_usage(GUILD, ALICE) == 0
    [spent] = [
        job for job in await ledger.job_spending(db, ledger.guild_key(GUILD), 0) if job.job_id == lost.job_id
    ]
    assert spent.refunded and spent.credits == 0 and spent.usd_micros > 0  # sunra billed it: USD stays
    await reserve(quota, user_id=ALICE)  # the server's cap has room again
    kinds = [entry.kind for entry in await ledger.ledger_entries(db, job_id=lost.job_id)]
    assert kinds == ["reserve", "commit", "compensate"]
    # Once per job, by the database itself; and the ledger stays append-only.
    await end_undeliverable(
        db, lost.job_id, from_states=("undeliverable",), code="again", message="again", at=clock.now
    )
    assert [entry.kind for entry in await ledger.ledger_entries(db, job_id=lost.job_id)] == kinds
    with pytest.raises(Exception, match=r"(?i)unique"):
        await insert_job_row(db, "compensate", lost.job_id)
    with pytest.raises(Exception, match=r"(?i)check"):
        await insert_job_row(db, "compensate", None)
    await assert_append_only(db)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL alters in place
async def test_the_ledgers_rebuild_in_migration_0012_keeps_every_row_and_rule(
    db: Database, clock: Clock
) -> None:
    """SQLite cannot change a CHECK in place, so 0012 rebuilds quota_ledger: run again over a ledger with
    rows of every kind, it keeps them as they were (ids included), and the ids, unique indexes and
    append-only triggers go on as before. (PostgreSQL alters its constraints in place.)"""
    assert db.engine == "sqlite"
    quota = make_service(db, clock)
    committed = await reserve(quota)
    await quota.commit(committed.job_id)
    await quota.refund((await reserve(quota)).job_id, "failed")
    await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=BOB, credits=5, reason="prize")
    before = await ledger.ledger_entries(db)
    [script] = [m.sql for m in migrations("sqlite") if m.name == "0012_ledger_compensate.sql"]
    async with db.write() as tx:
        await tx.executescript_in_tx(script)  # type: ignore[attr-defined]
    assert await ledger.ledger_entries(db) == before
    newer = await reserve(quota)
    assert [e.id for e in await ledger.ledger_entries(db, job_id=newer.job_id)] == [before[-1].id + 1]
    with pytest.raises(Exception, match=r"(?i)unique"):
        await insert_job_row(db, "commit", committed.job_id)
    await assert_append_only(db)


async def test_refund_or_commit_of_an_unreserved_job_does_nothing(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    job_id = await new_job(db)
    await quota.refund(job_id, "upload failed")
    await quota.commit(job_id)
    await quota.refund(987_654, "no such job")
    assert await ledger.ledger_entries(db) == []


async def test_reserve_is_idempotent_and_needs_the_job(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, daily_credits=20)
    job_id = await new_job(db)
    first = await quota.reserve(job_id=job_id, guild_id=GUILD, user_id=ALICE, role_ids=(), options=AUDIO_5)
    again = await quota.reserve(job_id=job_id, guild_id=GUILD, user_id=ALICE, role_ids=(), options=AUDIO_5)
    assert again.cost == first.cost and again.balance_after == first.balance_after == 10
    assert len(await ledger.ledger_entries(db)) == 1
    with pytest.raises(LookupError):
        await quota.reserve(job_id=424_242, guild_id=GUILD, user_id=ALICE, role_ids=(), options=SILENT_5)
    assert len(await ledger.ledger_entries(db)) == 1  # rolled back


async def test_allowance_resets_at_midnight_and_bonus_does_not(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, daily_credits=10)
    await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, credits=8, reason="welcome")
    await reserve(quota, options=SILENT_10)
    await reserve(quota, options=SILENT_5)  # 5 of the 8 bonus credits
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert (balance.allowance_left, balance.bonus) == (0, 3)
    clock.now = balance.resets_at
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert (balance.allowance_left, balance.bonus, balance.spent_this_period) == (10, 3, 0)
    assert balance.resets_at == balance.period_start + 86_400


async def test_refund_after_midnight_does_not_inflate_the_new_day(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, daily_credits=10)
    await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, credits=5, reason="prize")
    job = await reserve(quota, options=AUDIO_5)
    assert (job.from_allowance, job.from_bonus) == (10, 0)
    other = await reserve(quota, options=SILENT_5)
    assert (other.from_allowance, other.from_bonus) == (0, 5)
    clock.now = job.resets_at + 60  # the job fails after midnight
    await quota.refund(job.job_id, "failed")
    await quota.refund(other.job_id, "failed")
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    # The new day's allowance is whole, not 10 + 10; the bonus part comes back, it never expires.
    assert (balance.allowance_left, balance.bonus) == (10, 5)


async def test_remove_takes_bonus_first_and_never_goes_below_zero(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, daily_credits=10)
    await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, credits=4, reason="prize")
    removed = await quota.remove(
        guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, role_ids=(), credits=6, reason="x"
    )
    assert removed == 6
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert (balance.allowance_left, balance.bonus) == (8, 0)
    removed = await quota.remove(
        guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, role_ids=(), credits=50, reason="x"
    )
    assert removed == 8 and await available(quota) == 0
    clock.now = balance.resets_at  # a removal from the allowance lasts until the reset only
    assert await available(quota) == 10


# ----- allowances and limits ------------------------------------------------------------------------------


async def test_role_allowances_most_generous_wins_within_the_operator_limit(
    db: Database, clock: Clock
) -> None:
    quota = make_service(db, clock, daily_credits=50)
    for role_id, credits in ((1, 10), (2, 30), (3, 80)):
        await quota.set_role_allowance(guild_id=GUILD, actor_id=ADMIN, role_id=role_id, credits=credits)
    assert await available(quota, role_ids=[1, 2, 99]) == 30
    assert await available(quota, role_ids=[1]) == 10  # a role can also give less than the default
    assert await available(quota, role_ids=[3]) == 50  # never above the operator's daily_credits
    assert await available(quota, role_ids=[99]) == 50
    assert await available(quota, guild_id=OTHER_GUILD, role_ids=[1]) == 50  # another server's roles
    assert await quota.set_role_allowance(guild_id=GUILD, actor_id=ADMIN, role_id=2, credits=None) is None
    assert await available(quota, role_ids=[1, 2]) == 10


async def test_server_allowance_and_period_within_the_operator_limits(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, daily_credits=50)
    policy = await quota.set_allowance(guild_id=GUILD, actor_id=ADMIN, credits=80)
    assert policy.allowance == 50
    policy = await quota.set_allowance(guild_id=GUILD, actor_id=ADMIN, credits=20, period="weekly")
    # The allowance at once, the period when the day running ends (tests/test_probe_quota_zone.py): the
    # first week runs from Thursday the 13th to the end of the first whole week, Monday the 24th.
    thursday = dt.datetime(2025, 3, 13, tzinfo=dt.UTC).timestamp()
    assert (policy.allowance, policy.period, policy.pending_period) == (20, "daily", "weekly")
    assert policy.pending_at == thursday
    clock.advance(thursday - clock.now)
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert (balance.period, balance.period_start) == ("weekly", thursday)
    assert balance.resets_at == dt.datetime(2025, 3, 24, tzinfo=dt.UTC).timestamp()
    assert await available(quota, guild_id=OTHER_GUILD) == 50

    weekly = make_service(db, clock, daily_credits=50, period="weekly")
    with pytest.raises(InputRefused):
        await weekly.set_allowance(guild_id=GUILD, actor_id=ADMIN, credits=10, period="daily")

    uncapped = make_service(db, clock, daily_credits=0)
    assert await available(uncapped, guild_id=OTHER_GUILD) == 0  # servers must set their own
    policy = await uncapped.set_allowance(guild_id=OTHER_GUILD, actor_id=ADMIN, credits=500)
    assert policy.allowance == 500


async def test_server_time_zone_moves_the_reset(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    policy = await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="Asia/Tokyo")
    # The zone takes effect when the UTC day now running ends, not at once (tests/test_probe_quota_zone.py).
    utc_midnight = dt.datetime(2025, 3, 13, tzinfo=dt.UTC).timestamp()
    assert (policy.timezone, policy.pending_timezone, policy.pending_at) == (
        "UTC",
        "Asia/Tokyo",
        utc_midnight,
    )
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert balance.resets_at == utc_midnight
    clock.advance(utc_midnight - clock.now)
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    # From then, Tokyo's days; the first runs to the end of Tokyo's first whole day after the switch
    # (00:00 UTC is 09:00 in Tokyo, UTC+9), 39 hours.
    tokyo_midnight = dt.datetime(2025, 3, 15, tzinfo=load_zone("Asia/Tokyo")).timestamp()
    assert balance.period_start == utc_midnight and balance.resets_at == tokyo_midnight
    clock.advance(tokyo_midnight - clock.now)
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert balance.period_start == tokyo_midnight and balance.resets_at == tokyo_midnight + 86_400
    with pytest.raises(InputRefused, match="Unknown time zone"):
        await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="Nowhere/Land")


async def test_server_cap(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    assert (await quota.set_cap(guild_id=GUILD, actor_id=ADMIN, credits=12)).cap == 12
    first = await reserve(quota, user_id=ALICE)
    await reserve(quota, user_id=BOB)
    with pytest.raises(QuotaRefused) as refused:
        await reserve(quota, user_id=ALICE)
    assert refused.value.code == "server_cap" and refused.value.retryable
    await reserve(quota, user_id=ALICE, guild_id=OTHER_GUILD)  # the other server has no cap
    await quota.refund(first.job_id, "cancelled")
    await reserve(quota, user_id=BOB)

    operator = make_service(db, clock, guild_credits=8)
    assert (await operator.policy(OTHER_GUILD)).cap == 8
    assert (await operator.set_cap(guild_id=OTHER_GUILD, actor_id=ADMIN, credits=100)).cap == 8
    assert (await operator.set_cap(guild_id=OTHER_GUILD, actor_id=ADMIN, credits=0)).cap == 8
    assert (await operator.set_cap(guild_id=OTHER_GUILD, actor_id=ADMIN, credits=6)).cap == 6


async def test_global_usd_cap_covers_every_server_and_resets_at_utc_midnight(
    db: Database, clock: Clock
) -> None:
    quota = make_service(db, clock, global_daily_usd=1.0, dm_credits=20)
    await reserve(quota, options=AUDIO_5, guild_id=GUILD)  # $0.70
    with pytest.raises(QuotaRefused) as refused:
        await reserve(quota, options=SILENT_5, guild_id=OTHER_GUILD, user_id=BOB)  # +$0.35 > $1
    assert refused.value.code == "global_cap"
    with pytest.raises(QuotaRefused):
        await reserve(quota, options=SILENT_5, guild_id=None, user_id=BOB)
    await reserve(quota, options=JobOptions(4, False, 0), guild_id=OTHER_GUILD, user_id=BOB)  # $0.98
    clock.now = dt.datetime(2025, 3, 13, tzinfo=dt.UTC).timestamp()
    await reserve(quota, options=SILENT_5, guild_id=OTHER_GUILD, user_id=BOB)


async def test_cooldown_is_per_server_and_never_below_the_operator(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    await quota.set_cooldown(guild_id=GUILD, actor_id=ADMIN, seconds=60)
    await reserve(quota)
    clock.advance(30)
    with pytest.raises(QuotaRefused) as refused:
        await reserve(quota)
    assert refused.value.code == "cooldown" and f"<t:{int(NOW + 60)}:R>" in refused.value.user_message
    await reserve(quota, guild_id=OTHER_GUILD)
    clock.advance(30)
    await reserve(quota)

    operator = make_service(db, clock, cooldown_seconds=30)
    policy = await operator.set_cooldown(guild_id=OTHER_GUILD, actor_id=ADMIN, seconds=0)
    assert policy.cooldown_seconds == 30


async def test_block_list(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    await quota.block(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, reason="spam")
    with pytest.raises(QuotaRefused, match="spam") as refused:
        await quota.quote(guild_id=GUILD, user_id=ALICE, role_ids=(), options=SILENT_5)
    assert refused.value.code == "blocked"
    with pytest.raises(QuotaRefused):
        await reserve(quota)
    await reserve(quota, guild_id=OTHER_GUILD)  # blocked in one server only
    assert await quota.unblock(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE)
    assert not await quota.unblock(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE)
    await reserve(quota)


async def test_switches_only_restrict(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, allow_voices=False)
    with pytest.raises(QuotaRefused) as refused:
        await reserve(quota, options=VOICES_5)
    assert refused.value.code == "voices_off" and "50 credits left" in refused.value.user_message
    policy = await quota.set_switches(guild_id=GUILD, actor_id=ADMIN, allow_voices=True, allow_10s=False)
    assert not policy.allow_voices and not policy.allow_10s and policy.allow_audio  # the operator wins
    with pytest.raises(QuotaRefused) as refused:
        await reserve(quota, options=SILENT_10)
    assert refused.value.code == "10s_off"
    await reserve(quota, options=SILENT_10, guild_id=OTHER_GUILD)
    await quota.set_switches(guild_id=GUILD, actor_id=ADMIN, allow_audio=False)
    with pytest.raises(QuotaRefused) as refused:
        await reserve(quota, options=AUDIO_5)
    assert refused.value.code == "audio_off"
    await reserve(quota, options=SILENT_5)


async def test_direct_messages_are_off_unless_the_operator_gives_an_allowance(
    db: Database, clock: Clock
) -> None:
    off = make_service(db, clock)
    with pytest.raises(QuotaRefused) as refused:
        await off.quote(guild_id=None, user_id=ALICE, role_ids=(), options=SILENT_5)
    assert refused.value.code == "dm_off"

    quota = make_service(db, clock, dm_credits=20)
    job = await reserve(quota, guild_id=None, options=AUDIO_5)
    assert job.balance_after == 10
    assert await available(quota, guild_id=GUILD) == 50  # DM use is its own budget
    entries = await ledger.ledger_entries(db)
    assert [entry.guild for entry in entries] == [ledger.DM_KEY]


async def test_servers_are_isolated(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    await quota.set_allowance(guild_id=GUILD, actor_id=ADMIN, credits=10)
    await quota.set_cap(guild_id=GUILD, actor_id=ADMIN, credits=5)
    await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="Pacific/Auckland")
    await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, credits=100, reason="x")
    await reserve(quota, guild_id=GUILD)
    other = await quota.balance(guild_id=OTHER_GUILD, user_id=ALICE, role_ids=())
    assert (other.allowance, other.allowance_left, other.bonus) == (50, 50, 0)
    assert other.resets_at == dt.datetime(2025, 3, 13, tzinfo=dt.UTC).timestamp()
    assert (await quota.policy(OTHER_GUILD)).cap == 0
    assert await quota.audit_log(OTHER_GUILD) == []


async def test_recent_usage_counts_reserved_and_committed_credits(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    committed = await reserve(quota, options=SILENT_5)
    await quota.commit(committed.job_id)
    await reserve(quota, options=AUDIO_5)  # still open
    refunded = await reserve(quota, options=SILENT_5)
    await quota.refund(refunded.job_id, "failed")
    assert await quota.recent_usage(GUILD, ALICE) == 15
    assert await quota.recent_usage(GUILD, BOB) == 0
    assert quota.settings.max_concurrent_jobs == 2 and quota.settings.max_jobs_in_flight == 0


async def test_grants_are_bounded_per_server_however_they_are_split(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, guild_grant_credits=500)
    # A server admin moves the server's day as far as it goes: the bound keeps the operator's (UTC) day.
    await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="Pacific/Kiritimati")
    for user in (ALICE, BOB, ALICE):
        await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=user, credits=150, reason="split")
    clock.advance(3600)  # later the same UTC day, another admin, another member
    with pytest.raises(GrantRefused) as refused:
        await quota.grant(guild_id=GUILD, actor_id=ADMIN + 1, user_id=1003, credits=51, reason="more")
    assert "50 credits of that remain" in refused.value.user_message
    assert "Nothing was granted" in refused.value.user_message
    assert await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=1003, credits=50, reason="last") == 50
    with pytest.raises(GrantRefused, match="0 credits of that remain"):
        await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=BOB, credits=1, reason="one more")
    # Another server has its own bound.
    await quota.grant(guild_id=OTHER_GUILD, actor_id=ADMIN, user_id=ALICE, credits=500, reason="x")
    grants = [e for e in await ledger.ledger_entries(db) if e.kind == "grant" and e.guild == str(GUILD)]
    assert sum(e.bonus_delta for e in grants) == 500
    audit = await quota.audit_log(GUILD)
    refusals = [e for e in audit if e.action == "grant_refused"]
    assert [e.details["room_left"] for e in refusals] == [0, 50]
    assert (await quota.balance(guild_id=GUILD, user_id=BOB, role_ids=())).bonus == 150
    # The next UTC day opens a new period.
    clock.now = period_bounds(clock.now, "daily", dt.UTC)[1] + 1
    assert await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=BOB, credits=500, reason="new") == 650


async def test_concurrent_grants_never_pass_the_bound(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, guild_grant_credits=100)

    async def grant(user: int) -> int:
        try:
            await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=user, credits=30, reason="race")
        except GrantRefused:
            return 0
        return 30

    given = await asyncio.gather(*(grant(2000 + n) for n in range(10)))
    assert sum(given) == 90
    assert await ledger.granted(db, str(GUILD), period_bounds(clock.now, "daily", dt.UTC)[0]) == 90


async def test_an_operator_bound_of_zero_lets_no_admin_grant(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, guild_grant_credits=0)
    with pytest.raises(GrantRefused, match="does not let server admins grant"):
        await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, credits=1, reason="x")
    assert [e for e in await ledger.ledger_entries(db) if e.kind == "grant"] == []
    assert QuotaSettings().guild_grant_credits == 500


# ----- every way a job can end, and restarts --------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        *((state, "refund") for state in REFUND_STATES),
        *((state, "commit") for state in COMMIT_STATES),
        *((state, None) for state in ("received", "queued", "submitting", "submitted")),
    ],
)
async def test_settle_by_how_the_job_ended(
    db: Database, clock: Clock, state: str, expected: str | None
) -> None:
    quota = make_service(db, clock, daily_credits=20)
    job = await reserve(quota, options=AUDIO_5)
    assert await JobStore(db).transition(job.job_id, "received", state)
    settled = await quota.settle_finished()
    assert settled == (0 if expected is None else 1)
    assert await quota.settle_finished() == 0  # idempotent
    kinds = [entry.kind for entry in await ledger.ledger_entries(db, job_id=job.job_id)]
    assert kinds == ["reserve"] + ([expected] if expected else [])
    assert await available(quota) == (20 if expected == "refund" else 10)
    if expected is None:
        return
    # The runner's own call after settling changes nothing either.
    await quota.refund(job.job_id, "late")
    await quota.commit(job.job_id)
    assert [entry.kind for entry in await ledger.ledger_entries(db, job_id=job.job_id)] == kinds


@pytest.mark.parametrize("at_restart", [False, True], ids=["refund", "settled_at_restart"])
@pytest.mark.parametrize("may_be_billed", [False, True])
async def test_a_job_the_api_may_bill_gives_back_credits_but_keeps_its_usd_under_the_cap(
    db: Database, clock: Clock, may_be_billed: bool, at_restart: bool
) -> None:
    """Issue 9, item 6: an uncertain submission or an unconfirmed cancel refunds the member, and its
    USD stays counted against the operator's daily cap; a plain refund gives the USD back too. Settled
    the same way when the process died between the job's end and its refund."""
    quota = make_service(db, clock, daily_credits=20, global_daily_usd=0.70)
    first = await reserve(quota)  # $0.35 of the $0.70 cap
    state = "uncertain" if may_be_billed else "cancelled"
    assert await JobStore(db).transition(first.job_id, "received", state, may_be_billed=may_be_billed)
    if at_restart:
        assert await quota.settle_finished() == 1
    else:
        await quota.refund(first.job_id, state)
    assert await available(quota) == 20
    [refund] = [e for e in await ledger.ledger_entries(db, job_id=first.job_id) if e.kind == "refund"]
    assert refund.usd_micros == (0 if may_be_billed else -350_000)
    await reserve(quota)  # $0.35 more: within the cap either way
    if may_be_billed:
        with pytest.raises(QuotaRefused) as refused:
            await reserve(quota)
        assert refused.value.code == "global_cap"
    else:
        await reserve(quota)


@pytest.mark.parametrize(
    "reason",
    ["upload failed", "job moved before it was queued", "cancelled", "lifetime_exceeded", "internal"],
)
async def test_every_refund_reason_gives_the_credits_back(db: Database, clock: Clock, reason: str) -> None:
    quota = make_service(db, clock, daily_credits=12)
    await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, credits=3, reason="x")
    job = await reserve(quota, options=JobOptions(10, False, 0))
    job2 = await reserve(quota, options=SILENT_5)
    assert (job2.from_allowance, job2.from_bonus) == (2, 3)
    await quota.refund(job.job_id, reason)
    await quota.refund(job2.job_id, reason)
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert (balance.allowance_left, balance.bonus, balance.spent_this_period) == (12, 3, 0)
    refunds = [e for e in await ledger.ledger_entries(db) if e.kind == "refund"]
    assert {e.reason for e in refunds} == {reason} and sum(e.usd_micros for e in refunds) == -1_050_000


async def test_restart_between_reserve_and_commit(database_url: str, clock: Clock) -> None:
    path = database_url
    db = await Database.open(path)
    quota = make_service(db, clock, daily_credits=40)
    delivered = await reserve(quota, options=AUDIO_5)
    failed = await reserve(quota, options=AUDIO_5)
    running = await reserve(quota, options=AUDIO_5)
    await db.close()  # the bot stops; meanwhile (say, a previous process) the jobs moved on

    db = await Database.open(path)
    store = JobStore(db)
    await store.transition(delivered.job_id, "received", "delivered")
    await store.transition(failed.job_id, "received", "failed")
    await store.transition(running.job_id, "received", "submitted")
    await db.close()

    db = await Database.open(path)
    try:
        quota = make_service(db, clock, daily_credits=40)
        assert await quota.settle_finished() == 2
        assert await ledger.open_reservations(db) == [running.job_id]
        assert await available(quota) == 20  # delivered and running still count, failed came back
        await quota.commit(running.job_id)
        assert await available(quota) == 20 and await ledger.open_reservations(db) == []
    finally:
        await db.close()


# ----- real concurrency -----------------------------------------------------------------------------------


async def _race(quotas: Sequence[QuotaService], job_ids: Sequence[int]) -> list[Reservation | BaseException]:
    async def one(index: int, job_id: int) -> Reservation:
        quota = quotas[index % len(quotas)]
        return await quota.reserve(
            job_id=job_id, guild_id=GUILD, user_id=ALICE, role_ids=(), options=SILENT_5
        )

    return await asyncio.gather(*(one(i, j) for i, j in enumerate(job_ids)), return_exceptions=True)


async def test_a_hundred_simultaneous_reserves_with_room_for_three(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock, daily_credits=15)
    job_ids = [await new_job(db) for _ in range(100)]
    results = await _race([quota], job_ids)
    won = [r for r in results if isinstance(r, Reservation)]
    lost = [r for r in results if isinstance(r, QuotaRefused)]
    assert len(won) == 3 and len(lost) == 97
    assert len([e for e in await ledger.ledger_entries(db) if e.kind == "reserve"]) == 3
    assert await available(quota) == 0


async def test_two_connections_to_one_file_cannot_overspend(database_url: str, clock: Clock) -> None:
    """Two connections to one SQLite file, or two pools on one PostgreSQL database: two processes."""
    path = database_url
    first = await Database.open(path)
    second = await Database.open(path)
    try:
        job_ids = [await new_job(first) for _ in range(60)]
        quotas = [make_service(first, clock, daily_credits=15), make_service(second, clock, daily_credits=15)]
        results = await _race(quotas, job_ids)
        won = [r for r in results if isinstance(r, Reservation)]
        assert len(won) == 3, [r for r in results if not isinstance(r, (Reservation, QuotaRefused))]
        assert all(isinstance(r, (Reservation, QuotaRefused)) for r in results)
        assert await available(quotas[1]) == 0
        # Both connections settling the same jobs at once still write one settlement each.
        await asyncio.gather(*(q.commit(r.job_id) for r in won for q in quotas))
        settles = [e for e in await ledger.ledger_entries(first) if e.kind in ("commit", "refund")]
        assert sorted(e.job_id or 0 for e in settles) == sorted(r.job_id for r in won)
    finally:
        await first.close()
        await second.close()


# ----- reports, export, audit -----------------------------------------------------------------------------


async def test_report_counts_jobs_and_recent_spending(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    store = JobStore(db)
    queued = await reserve(quota)
    submitted = await reserve(quota)
    gone = await reserve(quota)
    await store.transition(queued.job_id, "received", "queued")
    await store.transition(submitted.job_id, "received", "submitted")
    await store.transition(gone.job_id, "received", "failed")
    await quota.refund(gone.job_id, "failed")
    report = await quota.report(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert (report.waiting, report.in_flight, report.recent_jobs, report.recent_credits) == (1, 1, 2, 10)
    assert report.balance.available == 40 and not report.blocked


async def test_export_csv_per_member_per_day(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    await reserve(quota, user_id=ALICE, options=AUDIO_5)
    await reserve(quota, user_id=BOB, options=SILENT_5)
    refunded = await reserve(quota, user_id=BOB, options=SILENT_5)
    await quota.refund(refunded.job_id, "failed")
    clock.advance(86_400)
    await reserve(quota, user_id=ALICE, options=VOICES_5)
    await reserve(quota, user_id=ALICE, options=SILENT_5)
    await reserve(quota, guild_id=OTHER_GUILD, user_id=ALICE)  # another server: not in this export
    text = await quota.export_usage(guild_id=GUILD, actor_id=ADMIN, days=7)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [
        ["date", "user_id", "jobs", "credits", "usd"],
        ["2025-03-12", str(ALICE), "1", "10", "0.70"],
        ["2025-03-12", str(BOB), "1", "5", "0.35"],
        ["2025-03-13", str(ALICE), "2", "17", "1.19"],
    ]
    one_day = await quota.export_usage(guild_id=GUILD, actor_id=ADMIN, days=1)
    assert len(one_day.splitlines()) == 2


async def test_every_admin_action_is_audited(db: Database, clock: Clock) -> None:
    quota = make_service(db, clock)
    await quota.view_member(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, role_ids=())
    await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, credits=5, reason="prize")
    await quota.remove(guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, role_ids=(), credits=2, reason="oops")
    await quota.set_allowance(guild_id=GUILD, actor_id=ADMIN, credits=30, period="weekly")
    await quota.set_role_allowance(guild_id=GUILD, actor_id=ADMIN, role_id=77, credits=40)
    await quota.set_cap(guild_id=GUILD, actor_id=ADMIN, credits=300)
    await quota.set_switches(guild_id=GUILD, actor_id=ADMIN, allow_audio=False)
    await quota.block(guild_id=GUILD, actor_id=ADMIN, user_id=BOB, reason="spam")
    await quota.unblock(guild_id=GUILD, actor_id=ADMIN, user_id=BOB)
    await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="Europe/Paris")
    await quota.set_cooldown(guild_id=GUILD, actor_id=ADMIN, seconds=30)
    await quota.export_usage(guild_id=GUILD, actor_id=ADMIN, days=3)
    entries = list(reversed(await quota.audit_log(GUILD)))
    assert [e.action for e in entries] == [
        "view",
        "grant",
        "remove",
        "allowance",
        "role-allowance",
        "cap",
        "switches",
        "block",
        "unblock",
        "timezone",
        "cooldown",
        "export",
    ]
    assert all(e.actor_id == ADMIN and e.at == NOW for e in entries)
    assert entries[1].target_id == ALICE and entries[1].details == {"credits": 5, "reason": "prize"}
    assert entries[2].details == {"asked": 2, "removed": 2, "reason": "oops"}
    midnight = dt.datetime(2025, 3, 13, tzinfo=dt.UTC).timestamp()
    assert entries[3].details == {"allowance": 30, "period": "weekly", "takes_effect_at": midnight}
    assert entries[4].target_id == 77 and entries[7].details == {"reason": "spam"}


# ----- the commands, through discord.py and the fake Discord ----------------------------------------------

ADMIN_PERMISSIONS = p.DEFAULT_EVERYONE_PERMISSIONS | p.MANAGE_GUILD
BOB_ID = 1_143_850_174_982_443_111


class QuotaTestBot(commands.Bot):
    """The least a bot needs for cogs.quota: a `quota` attribute."""

    def __init__(self, quota: QuotaService) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None)
        self.quota = quota

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None

    async def setup_hook(self) -> None:
        await self.load_extension("cogs.quota")
        guild = discord.Object(p.DEFAULT_GUILD_ID)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)


@pytest.fixture
async def discord_world(db: Database, clock: Clock) -> AsyncIterator[tuple[FakeDiscord, QuotaService]]:
    quota = make_service(db, clock)
    async with FakeDiscord() as fake:
        fake.add_member(p.DEFAULT_GUILD_ID, BOB_ID, username="bob")
        async with running_client(QuotaTestBot(quota), fake):
            yield fake, quota


def _admin_command(
    fake: FakeDiscord,
    subcommand: str,
    options: list[dict[str, Any]],
    *,
    permissions: int,
    member_ids: Sequence[int] = (),
) -> dict[str, Any]:
    payload = p.slash_command(
        fake, name="quota-admin", subcommand=subcommand, options=options, member_permissions=permissions
    )
    if member_ids:
        # Discord sends the members named in the options in data.resolved; discord.py reads them there.
        members = {m: fake.guilds[p.DEFAULT_GUILD_ID].members[m] for m in member_ids}
        payload["data"]["resolved"] = {
            "users": {str(m): dict(data["user"]) for m, data in members.items()},
            "members": {
                str(m): {**{k: v for k, v in data.items() if k != "user"}, "permissions": "0"}
                for m, data in members.items()
            },
        }
    return payload


async def _answer(fake: FakeDiscord, payload: dict[str, Any]) -> Any:
    record = await fake.dispatch_interaction(payload)
    callback = await fake.wait_for_callback(record.id)
    assert callback.type == 4 and callback.ephemeral
    assert callback.data["allowed_mentions"]["parse"] == []
    return callback


async def test_commands_are_registered_for_managers_only(
    discord_world: tuple[FakeDiscord, QuotaService],
) -> None:
    fake, _ = discord_world
    registered = {c["name"]: c for c in fake.registered_commands()}
    admin = registered["quota-admin"]
    assert str(admin["default_member_permissions"]) == str(p.MANAGE_GUILD)
    assert admin.get("contexts") == [0] or admin.get("dm_permission") is False
    assert {o["name"] for o in admin["options"]} == {
        "view",
        "grant",
        "remove",
        "allowance",
        "role-allowance",
        "cap",
        "switches",
        "block",
        "unblock",
        "timezone",
        "cooldown",
        "export",
    }
    assert registered["quota"].get("default_member_permissions") is None


async def test_admin_commands_are_refused_at_run_time_without_manage_server(
    discord_world: tuple[FakeDiscord, QuotaService], db: Database
) -> None:
    fake, quota = discord_world
    options = [
        p.option("member", BOB_ID, type=p.OPTION_USER),
        p.option("credits", 500),
        p.option("reason", "me"),
    ]
    payload = _admin_command(
        fake, "grant", options, permissions=p.DEFAULT_EVERYONE_PERMISSIONS, member_ids=[BOB_ID]
    )
    callback = await _answer(fake, payload)
    assert "Manage Server" in callback.data["content"]
    cap = _admin_command(fake, "cap", [p.option("credits", 1)], permissions=p.DEFAULT_EVERYONE_PERMISSIONS)
    assert "Manage Server" in (await _answer(fake, cap)).data["content"]
    assert await ledger.ledger_entries(db) == [] and await quota.audit_log(p.DEFAULT_GUILD_ID) == []
    assert (await quota.policy(p.DEFAULT_GUILD_ID)).cap == 0


async def test_an_admin_grants_and_the_member_sees_it_in_quota(
    discord_world: tuple[FakeDiscord, QuotaService],
) -> None:
    fake, quota = discord_world
    options = [
        p.option("member", BOB_ID, type=p.OPTION_USER),
        p.option("credits", 20),
        p.option("reason", "won"),
    ]
    payload = _admin_command(fake, "grant", options, permissions=ADMIN_PERMISSIONS, member_ids=[BOB_ID])
    callback = await _answer(fake, payload)
    assert callback.data["content"] == f"Gave <@{BOB_ID}> 20 bonus credits. Their bonus is now 20."
    entry = (await quota.audit_log(p.DEFAULT_GUILD_ID))[0]
    assert (entry.action, entry.actor_id, entry.target_id) == ("grant", p.DEFAULT_USER_ID, BOB_ID)

    mine = await _answer(fake, p.slash_command(fake, name="quota", user_id=BOB_ID))
    content = mine.data["content"]
    assert "**Your credits:** 70 — 50 of 50 per day + 20 bonus." in content
    assert "0 waiting in line, 0 in progress" in content and "5 s with audio: 10" in content

    tz = _admin_command(fake, "timezone", [p.option("tz", "Nowhere/Land")], permissions=ADMIN_PERMISSIONS)
    assert "Unknown time zone" in (await _answer(fake, tz)).data["content"]
    tz = _admin_command(fake, "timezone", [p.option("tz", "Asia/Tokyo")], permissions=ADMIN_PERMISSIONS)
    moved = (await _answer(fake, tz)).data["content"]
    # The zone waits for the end of the period now running; the admin is told when.
    switch = (await quota.policy(p.DEFAULT_GUILD_ID)).pending_at
    assert moved.startswith("The time zone changes to Asia/Tokyo") and f"<t:{int(switch or 0)}:f>" in moved
    # The member's /quota shows the reset of the period running: the switch.
    mine = await _answer(fake, p.slash_command(fake, name="quota", user_id=BOB_ID))
    assert f"**Resets** <t:{int(switch or 0)}:R> (<t:{int(switch or 0)}:f>)" in mine.data["content"]
    # An admin's view of the server names the change still waiting.
    view = [p.option("member", BOB_ID, type=p.OPTION_USER)]
    payload = _admin_command(fake, "view", view, permissions=ADMIN_PERMISSIONS, member_ids=[BOB_ID])
    viewed = (await _answer(fake, payload)).data["content"]
    assert "(time zone UTC)" in viewed and "The time zone changes to Asia/Tokyo" in viewed

    # Past the operator's bound (500 per day by default) a grant is refused whole, saying the room left.
    big = [p.option("member", BOB_ID, type=p.OPTION_USER), p.option("credits", 481), p.option("reason", "x")]
    payload = _admin_command(fake, "grant", big, permissions=ADMIN_PERMISSIONS, member_ids=[BOB_ID])
    refused = (await _answer(fake, payload)).data["content"]
    assert refused.startswith("Nothing was granted") and "480 credits of that remain" in refused
    assert (await quota.balance(guild_id=p.DEFAULT_GUILD_ID, user_id=BOB_ID, role_ids=())).bonus == 20
    assert (await quota.audit_log(p.DEFAULT_GUILD_ID))[0].action == "grant_refused"


async def test_export_is_a_csv_attachment(
    discord_world: tuple[FakeDiscord, QuotaService], db: Database
) -> None:
    fake, quota = discord_world
    job_id = await new_job(db, guild_id=p.DEFAULT_GUILD_ID, user_id=BOB_ID)
    await quota.reserve(
        job_id=job_id, guild_id=p.DEFAULT_GUILD_ID, user_id=BOB_ID, role_ids=(), options=AUDIO_5
    )
    payload = _admin_command(fake, "export", [p.option("days", 7)], permissions=ADMIN_PERMISSIONS)
    callback = await _answer(fake, payload)
    assert [f.filename for f in callback.files] == [f"usage-{p.DEFAULT_GUILD_ID}-7d.csv"]
    assert (
        callback.files[0].data.decode() == f"date,user_id,jobs,credits,usd\n2025-03-12,{BOB_ID},1,10,0.70\n"
    )


async def test_two_processes_reserving_at_once_never_pass_the_allowance(postgres_url: str) -> None:
    """Two bot processes on one PostgreSQL database, each reserving 40 jobs of one member at the same
    moment against room for three: three reservations in all, whichever process wins them."""
    async with await Database.open(postgres_url) as db:
        job_ids = [await new_job(db) for _ in range(80)]
    halves = [job_ids[0::2], job_ids[1::2]]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.reserve_worker",
            postgres_url,
            str(NOW),
            *map(str, half),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for half in halves
    ]
    outputs = [await process.communicate() for process in processes]
    assert [p.returncode for p in processes] == [0, 0], [err.decode()[-1500:] for _, err in outputs]
    won = [int(out.decode().strip()) for out, _ in outputs]
    async with await Database.open(postgres_url) as db:
        reserves = [e for e in await ledger.ledger_entries(db) if e.kind == "reserve"]
        quota = make_service(db, Clock(), daily_credits=15)
        assert sum(won) == len(reserves) == 3
        assert await available(quota) == 0


@pytest.mark.parametrize("name", ["localtime", "right/UTC", "posix/Europe/Paris", "Factory", "../etc/passwd"])
async def test_a_time_zone_must_be_a_place(db: Database, clock: Clock, name: str) -> None:
    """The host machine's zone ("localtime") or a tz database file that is no place's zone is refused
    like a misspelt one, and nothing is scheduled."""
    quota = make_service(db, clock)
    with pytest.raises(InputRefused, match="Unknown time zone"):
        await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone=name)
    assert (await quota.policy(GUILD)).pending_timezone is None
