"""Ledger invariants under random sequences of reserves, settlements, grants, removals, restarts and
midnights, checked against a plain bookkeeping model of the same events."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings, strategies as st

from bot.quota.checks import QuotaRefused
from bot.quota.rules import (
    PERIODS,
    JobOptions,
    Period,
    QuotaSettings,
    job_cost,
    load_zone,
    period_bounds,
    usd_micros,
    utc_day_bounds,
)
from bot.quota.spending import COMMIT_STATES, REFUND_STATES, QuotaService
from bot.store import Database, ledger
from bot.store.jobs import JobStore
from tests import postgres
from tests.conftest import skip_without_postgres

START = dt.datetime(2025, 3, 30, 20, 0, tzinfo=dt.UTC).timestamp()  # near a DST change in Europe
GUILDS = (1, 2)
USERS = (10, 11, 12)
ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham")
ALL_STATES = ("received", "queued", "submitting", "submitted", *COMMIT_STATES, *REFUND_STATES)
ADMIN = 99


# ----- operations -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reserve:
    guild: int
    user: int
    options: JobOptions


@dataclass(frozen=True)
class Settle:
    pick: int
    kind: str  # "commit" or "refund"


@dataclass(frozen=True)
class Grant:
    guild: int
    user: int
    credits: int


@dataclass(frozen=True)
class Remove:
    guild: int
    user: int
    credits: int


@dataclass(frozen=True)
class Advance:
    seconds: int


@dataclass(frozen=True)
class EndThenRestart:
    """A job reaches a state while the bot is down; on start the bot settles what ended."""

    pick: int
    state: str


Operation = Reserve | Settle | Grant | Remove | Advance | EndThenRestart

guilds = st.sampled_from(GUILDS)
users = st.sampled_from(USERS)
job_options = st.builds(
    JobOptions, duration=st.sampled_from([5, 10]), audio=st.booleans(), voices=st.integers(0, 2)
)
# Reserves and settlements come up most often; a midnight now and then (hours, sometimes days).
_weighted: list[st.SearchStrategy[Operation]] = [
    *[st.builds(Reserve, guilds, users, job_options)] * 5,
    *[st.builds(Settle, st.integers(0, 10_000), st.sampled_from(["commit", "refund"]))] * 2,
    *[st.builds(Grant, guilds, users, st.integers(1, 15))] * 2,
    st.builds(Remove, guilds, users, st.integers(1, 20)),
    st.builds(Advance, st.integers(0, 8 * 3600) | st.integers(0, 40 * 86_400)),
    st.builds(EndThenRestart, st.integers(0, 10_000), st.sampled_from(ALL_STATES)),
]
operations = st.sampled_from(_weighted).flatmap(lambda strategy: strategy)
quota_settings = st.builds(
    QuotaSettings,
    daily_credits=st.integers(0, 40),
    period=st.sampled_from(PERIODS),
    timezone=st.sampled_from(ZONES),
    guild_credits=st.sampled_from([0, 0, 40, 100]),
    global_daily_usd=st.sampled_from([0.0, 0.0, 3.5, 7.0]),
    guild_grant_credits=st.just(10**9),  # the grant bound has tests of its own (test_quota.py)
)


# ----- the model ------------------------------------------------------------------------------------------


@dataclass
class ModelJob:
    job_id: int
    guild: int
    user: int
    cost: int
    from_allowance: int
    from_bonus: int
    usd_micros: int
    charged_at: float
    settled: str | None = None


@dataclass
class Model:
    """Plain bookkeeping of what happened, without SQL: what every balance must be."""

    settings: QuotaSettings
    jobs: list[ModelJob] = field(default_factory=list)
    bonus: dict[tuple[int, int], int] = field(default_factory=dict)
    removed_allowance: list[tuple[int, int, int, float]] = field(default_factory=list)
    interactions: int = 0

    def bounds(self, now: float) -> tuple[float, float]:
        return period_bounds(now, self.settings.period, load_zone(self.settings.timezone))

    def charged(self) -> list[ModelJob]:
        return [job for job in self.jobs if job.settled != "refund"]

    def allowance_left(self, guild: int, user: int, now: float) -> int:
        start, end = self.bounds(now)
        used = sum(
            j.from_allowance
            for j in self.charged()
            if (j.guild, j.user) == (guild, user) and start <= j.charged_at < end
        )
        used += sum(
            n for g, u, n, at in self.removed_allowance if (g, u) == (guild, user) and start <= at < end
        )
        return max(0, self.settings.daily_credits - used)

    def bonus_of(self, guild: int, user: int) -> int:
        return self.bonus.get((guild, user), 0)

    def may_reserve(self, guild: int, user: int, cost: int, now: float) -> bool:
        if cost > self.allowance_left(guild, user, now) + self.bonus_of(guild, user):
            return False
        if self.settings.guild_credits:
            start, end = self.bounds(now)
            spent = sum(j.cost for j in self.charged() if j.guild == guild and start <= j.charged_at < end)
            if spent + cost > self.settings.guild_credits:
                return False
        if self.settings.global_daily_usd:
            start, end = utc_day_bounds(now)
            spent_micros = sum(j.usd_micros for j in self.charged() if start <= j.charged_at < end)
            cap = round(self.settings.global_daily_usd * 1_000_000)
            if spent_micros + usd_micros(cost, self.settings) > cap:
                return False
        return True

    def open_jobs(self) -> list[ModelJob]:
        return [job for job in self.jobs if job.settled is None]


# ----- the scenario ---------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


async def _new_job(store: JobStore, number: int, guild: int, user: int) -> int:
    job_id, _ = await store.create(
        interaction_id=number,
        guild_id=guild,
        channel_id=3,
        user_id=user,
        state="received",
        params={},
        upload_limit=1,
        lifetime_seconds=3600,
    )
    return job_id


async def _apply(op: Operation, quota: QuotaService, store: JobStore, model: Model, clock: Clock) -> None:
    now = clock.now
    if isinstance(op, Reserve):
        cost = job_cost(op.options, model.settings)
        expected = model.may_reserve(op.guild, op.user, cost, now)
        left = model.allowance_left(op.guild, op.user, now)
        model.interactions += 1
        job_id = await _new_job(store, model.interactions, op.guild, op.user)
        try:
            got = await quota.reserve(
                job_id=job_id, guild_id=op.guild, user_id=op.user, role_ids=(), options=op.options
            )
        except QuotaRefused:
            assert not expected, "refused although the member had room"
            return
        assert expected, "reserved although the member had no room"
        assert (got.cost, got.from_allowance, got.from_bonus) == (
            cost,
            min(cost, left),
            cost - min(cost, left),
        )
        model.bonus[(op.guild, op.user)] = model.bonus_of(op.guild, op.user) - got.from_bonus
        micros = usd_micros(cost, model.settings)
        model.jobs.append(
            ModelJob(job_id, op.guild, op.user, cost, got.from_allowance, got.from_bonus, micros, now)
        )
    elif isinstance(op, Settle):
        if not model.jobs:
            return
        job = model.jobs[op.pick % len(model.jobs)]
        if op.kind == "commit":
            await quota.commit(job.job_id)
        else:
            await quota.refund(job.job_id, "failed")
        _model_settle(model, job, op.kind)
    elif isinstance(op, Grant):
        await quota.grant(guild_id=op.guild, actor_id=ADMIN, user_id=op.user, credits=op.credits, reason="p")
        model.bonus[(op.guild, op.user)] = model.bonus_of(op.guild, op.user) + op.credits
    elif isinstance(op, Remove):
        removed = await quota.remove(
            guild_id=op.guild, actor_id=ADMIN, user_id=op.user, role_ids=(), credits=op.credits, reason="r"
        )
        from_bonus = min(op.credits, model.bonus_of(op.guild, op.user))
        from_allowance = min(op.credits - from_bonus, model.allowance_left(op.guild, op.user, now))
        assert removed == from_bonus + from_allowance
        model.bonus[(op.guild, op.user)] = model.bonus_of(op.guild, op.user) - from_bonus
        model.removed_allowance.append((op.guild, op.user, from_allowance, now))
    elif isinstance(op, Advance):
        clock.now += op.seconds
    else:
        await _end_then_restart(op, quota, store, model)


def _model_settle(model: Model, job: ModelJob, kind: str) -> None:
    if job.settled is not None:
        return  # settled once, forever
    job.settled = kind
    if kind == "refund":
        model.bonus[(job.guild, job.user)] = model.bonus_of(job.guild, job.user) + job.from_bonus


async def _end_then_restart(op: EndThenRestart, quota: QuotaService, store: JobStore, model: Model) -> None:
    if not model.jobs:
        return
    job = model.jobs[op.pick % len(model.jobs)]
    await store.transition(job.job_id, ALL_STATES, op.state)
    first = await quota.settle_finished()
    assert await quota.settle_finished() == 0, "settling twice must change nothing"
    expected = 0
    for candidate in model.jobs:
        row = await store.get(candidate.job_id)
        assert row is not None
        if candidate.settled is None and row.state in REFUND_STATES:
            _model_settle(model, candidate, "refund")
            expected += 1
        elif candidate.settled is None and row.state in COMMIT_STATES:
            _model_settle(model, candidate, "commit")
            expected += 1
    assert first == expected


async def _check_invariants(quota: QuotaService, db: Database, model: Model, now: float) -> None:
    for guild in GUILDS:
        for user in USERS:
            balance = await quota.balance(guild_id=guild, user_id=user, role_ids=())
            assert balance.allowance_left >= 0 and balance.bonus >= 0
            assert balance.allowance_left == model.allowance_left(guild, user, now)
            assert balance.bonus == model.bonus_of(guild, user)
            assert balance.available == balance.allowance_left + balance.bonus
    entries = await ledger.ledger_entries(db)
    settlements: dict[int, list[str]] = {}
    for entry in entries:
        if entry.kind in ("commit", "refund"):
            assert entry.job_id is not None
            settlements.setdefault(entry.job_id, []).append(entry.kind)
    assert all(len(kinds) == 1 for kinds in settlements.values()), "a job was settled twice"
    for job in model.jobs:
        assert settlements.get(job.job_id, [None]) == [job.settled]
    # Conservation: every reserved credit is committed, refunded or still open.
    reserved = sum(e.credits for e in entries if e.kind == "reserve")
    settled = sum(e.credits for e in entries if e.kind in ("commit", "refund"))
    assert reserved == settled + sum(job.cost for job in model.open_jobs())
    # The operator's spend is exactly what was charged and not refunded.
    assert sum(e.usd_micros for e in entries) == sum(job.usd_micros for job in model.charged())
    assert sorted(await ledger.open_reservations(db)) == sorted(job.job_id for job in model.open_jobs())


async def _run(quota_settings: QuotaSettings, ops: Sequence[Operation], where: str = ":memory:") -> None:
    db = await Database.open(where)
    try:
        clock = Clock()
        quota = QuotaService(db, quota_settings, clock=clock)
        store = JobStore(db, clock=clock)
        model = Model(quota_settings)
        for op in ops:
            await _apply(op, quota, store, model, clock)
            await _check_invariants(quota, db, model, clock.now)
    finally:
        await db.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quota_settings, st.lists(operations, min_size=10, max_size=40))
def test_ledger_matches_the_model_under_random_operations(
    quota_settings: QuotaSettings, ops: list[Operation]
) -> None:
    asyncio.run(_run(quota_settings, ops))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quota_settings, st.lists(operations, min_size=10, max_size=40))
def test_the_postgresql_ledger_matches_the_model_under_random_operations(
    quota_settings: QuotaSettings, ops: list[Operation]
) -> None:
    """The same operations on PostgreSQL, each example in a database of its own (fewer examples: each
    makes and drops one)."""
    skip_without_postgres()

    async def on_a_fresh_database() -> None:
        async with postgres.fresh_database() as url:
            await _run(quota_settings, ops, url)

    asyncio.run(on_a_fresh_database())


# ----- pure functions -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False),
    st.sampled_from(PERIODS),
    st.sampled_from((*ZONES, "America/Sao_Paulo", "Asia/Beirut", "Australia/Lord_Howe")),
)
def test_periods_hold_now_and_follow_each_other(now: float, period: Period, zone_name: str) -> None:
    zone = load_zone(zone_name)
    start, end = period_bounds(now, period, zone)
    assert start <= now < end
    assert period_bounds(end, period, zone)[0] == end  # the next period starts where this one ends
    assert period_bounds(start, period, zone) == (start, end)
    days = {"daily": (0.9, 1.1), "weekly": (6.9, 7.1), "monthly": (27.9, 31.1)}[period]
    assert days[0] * 86_400 <= end - start <= days[1] * 86_400


@settings(max_examples=200, deadline=None)
@given(
    job_options,
    st.floats(min_value=0.1, max_value=10),
    st.floats(min_value=1, max_value=5),
    st.floats(min_value=1, max_value=5),
)
def test_prices_round_up_and_grow_with_the_options(
    options: JobOptions, per_second: float, audio: float, voices: float
) -> None:
    s = QuotaSettings(credits_per_second=per_second, audio_multiplier=audio, voices_multiplier=voices)
    cost = job_cost(options, s)
    multiplier = voices if options.voices else audio if options.audio else 1.0
    exact = options.duration * per_second * multiplier
    assert isinstance(cost, int) and exact - 1e-6 <= cost < exact + 1
    assert job_cost(JobOptions(5, False, 0), s) <= job_cost(JobOptions(10, False, 0), s)
    if audio <= voices:
        assert job_cost(JobOptions(5, True, 0), s) <= job_cost(JobOptions(5, True, 1), s)
