"""The fleet's clock: processes on machines whose clocks disagree still agree, on PostgreSQL, on whose
lease is live, on the submit pace and on every time they record, because each sets its clock by the
database server's (bot/fleet.py FleetClock). On SQLite, one machine, nothing is read."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from bot.fleet import FleetClock, FleetMismatch, ShardLeases, ShardPlan, pacing_delay
from bot.store import Database
from bot.store.fleet import FleetStore
from bot.store.jobs import JobStore

HOUR = 3600.0


def skewed(seconds: float) -> Callable[[], float]:
    """A machine's clock `seconds` ahead of this one's (behind when negative)."""
    return lambda: time.time() + seconds


async def test_a_clock_hours_off_is_set_by_the_servers_and_the_operator_is_told(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await Database.open(postgres_url) as db:
        store = FleetStore(db)
        for off, said in ((HOUR, "ahead of"), (-HOUR, "behind")):
            clock = FleetClock(skewed(off))
            with caplog.at_level(logging.WARNING, logger="bot.fleet"):
                await clock.keep_up(store)
            # The server runs on this machine: the fleet's time is this machine's, within a round trip.
            assert abs(clock() - time.time()) < 0.5, clock.offset
            assert f"3600.0 s {said} the database server's" in caplog.text
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="bot.fleet"):
                await clock.keep_up(store)  # the same skew again: told once
            assert caplog.text == ""
        right = FleetClock()
        with caplog.at_level(logging.WARNING, logger="bot.fleet"):
            await right.keep_up(store)
        assert abs(right.offset) < 0.5 and caplog.text == ""


async def test_on_sqlite_the_machines_clock_is_kept_and_nothing_is_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with await Database.open(tmp_path / "bot.sqlite3") as db:
        assert await FleetStore(db).server_time() is None
        clock = FleetClock(skewed(HOUR))
        await clock.keep_up(FleetStore(db))
        assert clock.offset == 0.0 and clock() - time.time() > HOUR - 1


async def test_a_live_lease_is_not_taken_by_a_process_whose_clock_runs_ahead(postgres_url: str) -> None:
    """A machine a minute ahead saw the lease of a live process (renewed every second, by a clock a
    minute behind) as run out for a minute, and took its shard: both followed its jobs."""
    async with await Database.open(postgres_url) as db:
        store = FleetStore(db)
        behind = ShardLeases(store, ShardPlan(2, (0,)), lease_seconds=3.0, clock=FleetClock(skewed(-60)))
        assert await behind.acquire(asyncio.Event())
        behind.keep(on_lost=lambda: None)
        ahead = ShardLeases(store, ShardPlan(2, (0,)), lease_seconds=3.0, clock=FleetClock(skewed(60)))
        with pytest.raises(FleetMismatch, match=r"shard\(s\) 0 are held by another live process"):
            await ahead.acquire(asyncio.Event())
        assert {owner for owner, _ in (await store.leases()).values()} == {behind.owner}
        # The process behind stops cleanly: the one ahead takes the shard at once.
        await behind.release()
        assert await ahead.acquire(asyncio.Event())
        await ahead.release()


async def test_the_pace_counts_the_claims_of_a_process_whose_clock_runs_behind(postgres_url: str) -> None:
    """sunra allows 10 submissions a second per key: a process a minute behind recorded its claims a
    minute in the past, where the other's pace never looked, and the fleet submitted twice the pace."""
    async with await Database.open(postgres_url) as db:
        clocks = [FleetClock(skewed(-60)), FleetClock(skewed(60))]
        for clock in clocks:
            await clock.keep_up(FleetStore(db))
        behind, ahead = (JobStore(db, clock=clock) for clock in clocks)
        for n in range(12):
            job_id, _ = await behind.create(
                interaction_id=n + 1, guild_id=None, channel_id=6, user_id=100 + n, state="received",
                params={"prompt": "a cat waves"}, upload_limit=10_485_760, lifetime_seconds=600,
            )  # fmt: skip
            assert await behind.transition(job_id, "received", "queued")
        limits = [(10, 1.0)]
        claimed = 0
        for store in (behind, ahead) * 6:
            chosen, wait = await store.claim_next(
                from_state="queued", to_state="submitting", busy_states=("submitting",),
                usage_since=0.0, max_busy=100, max_busy_per_member=10,
                pace=lambda sent, clock=store._clock: pacing_delay(sent, limits, clock()),
                pace_window=1.0, pace_count=10,
            )  # fmt: skip
            claimed += chosen is not None
            if chosen is None:
                assert wait > 0  # the pace is full, for both processes
        assert claimed == 10
