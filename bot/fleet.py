"""Several bot processes on one token and one database: which shards a process owns, and its leases.

Discord splits a bot's guilds into shards, a guild's shard being `(guild_id >> 22) % shard_count`
(direct messages arrive on shard 0; https://discord.com/developers/docs/topics/gateway#sharding). With
`SHARD_COUNT` and `SHARD_IDS` a process connects as those shards only (discord.py's `AutoShardedBot`), so
Discord sends it only their interactions. A job belongs to the shard of its guild (`jobs.shard`).

A process owns its shards by a lease row per shard (`shard_leases`), renewed every third of
`SHARD_LEASE_SECONDS`. It takes the leases before it resumes any job, and while it renews them no other
process follows or delivers those shards' jobs. A process killed with SIGKILL stops renewing: the process
started in its place (same `SHARD_IDS`) waits until the old lease runs out, then takes it and finishes the
jobs it left (finished after restart; no live process takes another's shards over). A process that finds
its lease taken (it was paused longer than the lease) stops at once rather than share the shard's jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

# Renewals per lease period: a lease outlives two missed renewals.
RENEWALS_PER_LEASE = 3
# A stopping process gives its leases back within this (else they run out by themselves).
RELEASE_SECONDS = 2.0
# The shard count written on the lease of a process without SHARD_COUNT (the whole bot as one
# connection, on PostgreSQL): its lease is shard 0's, so a second such process, or a fleet, is refused.
WHOLE_BOT = 0


def lease_count(count: int | None) -> int:
    """The shard count a process's leases carry: SHARD_COUNT, or WHOLE_BOT without one."""
    return WHOLE_BOT if count is None else count


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """`count` shards in the fleet, of which this process owns `ids`; (None, None): one process owns the
    whole bot as one connection (the default, as before sharding)."""

    count: int | None
    ids: tuple[int, ...] | None

    @property
    def sharded(self) -> bool:
        return self.count is not None

    def shard_of(self, guild_id: int | None) -> int:
        """The shard a guild's events arrive on; 0 for direct messages and for an unsharded bot."""
        if guild_id is None or self.count is None:
            return 0
        return (guild_id >> 22) % self.count

    @property
    def owned(self) -> tuple[int, ...] | None:
        """The shards whose jobs this process follows; None: every job in the database."""
        return self.ids if self.sharded else None

    @property
    def syncs_commands(self) -> bool:
        """One process of the fleet syncs the application commands: the one owning shard 0."""
        return self.ids is None or 0 in self.ids

    @property
    def label(self) -> str:
        """ "0,1" for the metrics and /healthz; "all" for an unsharded bot."""
        return "all" if self.ids is None else ",".join(str(shard) for shard in self.ids)


# One process owning the whole bot (no SHARD_COUNT): the default.
WHOLE = ShardPlan(None, None)


def pacing_delay(sent: Sequence[float], limits: Iterable[tuple[int, float]], now: float) -> float:
    """Seconds to wait before one more submission so that at most `count` fall in any `window` seconds
    (for each `(count, window)` of `limits`), given the times `sent` of earlier ones (any order)."""
    recent_first = sorted(sent, reverse=True)
    delay = 0.0
    for count, window in limits:
        inside = [at for at in recent_first if now - at < window]
        if len(inside) >= count:
            delay = max(delay, window - (now - inside[count - 1]))
    return delay


class FleetMismatch(Exception):
    """This process's shards cannot be reckoned beside the fleet running on the database: another
    SHARD_COUNT, or no SHARD_COUNT beside a sharded fleet. The message is one sentence for the operator."""


def mismatch(running: int, mine: int | None) -> str:
    """Why this process refuses to start beside a fleet of `running` shards (WHOLE_BOT: a process without
    SHARD_COUNT)."""
    if running == WHOLE_BOT:
        return (
            "a process without SHARD_COUNT is running on this database and follows every job, so this "
            f"process (SHARD_COUNT={mine}) would follow some of them beside it; stop it before starting a "
            "fleet (a killed one's lease runs out after SHARD_LEASE_SECONDS)"
        )
    if mine is None or mine == WHOLE_BOT:
        return (
            f"a fleet of SHARD_COUNT={running} processes is running on this database, and this process "
            "has no SHARD_COUNT, so it would follow every shard's jobs beside them; set SHARD_COUNT="
            f"{running} and SHARD_IDS to its shards, or stop the fleet first (a killed one's leases run "
            "out after SHARD_LEASE_SECONDS)"
        )
    return (
        f"a fleet of SHARD_COUNT={running} processes is running on this database, and this process has "
        f"SHARD_COUNT={mine}: a guild's shard would differ between them and its jobs be followed twice or "
        "never; start it with the fleet's SHARD_COUNT, or stop every process of the fleet to change it (a "
        "killed one's leases run out after SHARD_LEASE_SECONDS)"
    )


# A machine's clock this far from the database server's is worth the operator's attention (NTP).
SKEW_WARNING_SECONDS = 2.0


class FleetClock:
    """The wall clock a fleet's processes share (seconds since the epoch, called like `time.time`): this
    machine's clock plus its offset from the database server's. On PostgreSQL the offset is measured at
    start and at every lease renewal (one `SELECT` of the server's `clock_timestamp()`, read at the
    midpoint of the round trip), so the leases, the submit pace, the caps' time windows and every time
    recorded in the database compare across machines whose clocks disagree: a machine a minute ahead
    would otherwise find a live process's lease run out and follow its jobs too. On SQLite (one machine)
    the offset stays 0 and nothing is read."""

    def __init__(self, base: Callable[[], float] = time.time) -> None:
        self._base = base
        self.offset = 0.0
        self._warned_at: float | None = None

    def __call__(self) -> float:
        return self._base() + self.offset

    async def keep_up(self, store: ServerTime) -> None:
        """Measures the offset again; warns (once per change of more than SKEW_WARNING_SECONDS) when
        this machine's clock is that far from the server's. Raises what the store's read raises."""
        before = self._base()
        server = await store.server_time()
        after = self._base()
        if server is None:
            return
        self.offset = server - (before + after) / 2
        if abs(self.offset) < SKEW_WARNING_SECONDS:
            self._warned_at = None
        elif self._warned_at is None or abs(self.offset - self._warned_at) > SKEW_WARNING_SECONDS:
            self._warned_at = self.offset
            log.warning(
                "this machine's clock is %.1f s %s the database server's; the fleet keeps the database's "
                "time (set up NTP on this machine)",
                abs(self.offset),
                "behind" if self.offset > 0 else "ahead of",
            )


class ServerTime(Protocol):
    async def server_time(self) -> float | None:
        """The database server's clock (seconds since the epoch); None where there is no other machine."""
        ...


class LeaseLost(Exception):
    """Another process holds a shard this process had: it must stop."""


class ShardLeases:
    """Takes and renews this process's shard leases (SQL in bot/store/fleet.py)."""

    def __init__(
        self,
        store: LeaseStore,
        plan: ShardPlan,
        *,
        lease_seconds: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.plan = plan
        self.lease_seconds = lease_seconds
        self.owner = secrets.token_hex(8)
        # The fleet's time (FleetClock, kept up at each lease step), or a test's own clock.
        self._clock = clock if clock is not None else FleetClock()
        self._keeper: asyncio.Task[None] | None = None
        # The shards whose leases this process holds: its SHARD_IDS; without them, on a database that
        # several processes may share as a fleet (the store says: PostgreSQL), shard 0 under WHOLE_BOT,
        # so that a second process without SHARD_COUNT cannot follow every job beside it.
        self._leased: tuple[int, ...] | None = plan.ids
        if plan.ids is None and store.leases_whole_bot:
            self._leased = (0,)

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Waits until every owned shard's lease is this process's; False if `stopping` came first.
        Raises FleetMismatch when a live process of the fleet has another SHARD_COUNT, or (this process
        unsharded) when any sharded process is live, or when a shard is still held after twice
        SHARD_LEASE_SECONDS (a live process owns it: the same SHARD_IDS given twice)."""
        await self.refuse_a_mismatch()
        if self._leased is None:
            return True
        wanted = set(self._leased)
        count = lease_count(self.plan.count)
        told = False
        started = self._clock()
        while not stopping.is_set():
            now = self._clock()  # kept up by refuse_a_mismatch, then after each wait below
            held = await self.store.take_leases(
                sorted(wanted), count, self.owner, now=now, until=now + self.lease_seconds
            )
            wanted -= set(held)
            if not wanted:
                log.info("shards %s of %d are this process's", self.plan.label, count)
                return True
            if now - started > 2 * self.lease_seconds:
                # A dead process's lease has run out by now: the holder renews it, so it lives.
                await self.store.release_leases(self.owner)
                if count == WHOLE_BOT:
                    raise FleetMismatch(
                        "another process without SHARD_COUNT is running on this database and keeps "
                        "renewing its lease: both would follow every job; run one process, or a fleet "
                        "with SHARD_COUNT and SHARD_IDS"
                    )
                raise FleetMismatch(
                    f"shard(s) {','.join(str(shard) for shard in sorted(wanted))} are held by another "
                    "live process, which keeps renewing its lease: two processes were given the same "
                    "SHARD_IDS; give each process of the fleet shards of its own"
                )
            if not told:
                # A killed predecessor's lease: it runs out within SHARD_LEASE_SECONDS.
                log.warning(
                    "shard(s) %s still leased by another process; waiting for the lease to run out",
                    ",".join(str(shard) for shard in sorted(wanted)),
                )
                told = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease_seconds / RENEWALS_PER_LEASE):
                    await stopping.wait()
            await self.keep_time()
        return False

    async def keep_time(self) -> None:
        """Sets the fleet's clock by the database server's again (when it is a FleetClock)."""
        if isinstance(self._clock, FleetClock):
            await self._clock.keep_up(self.store)

    async def refuse_a_mismatch(self) -> None:
        """Raises FleetMismatch when live processes on the database hold leases under a SHARD_COUNT
        other than this process's, or under any when this process has none. (Taking the leases asks
        again in their transaction: two processes started together cannot both pass.)"""
        await self.keep_time()
        running = await self.store.live_counts(self._clock())
        if others := sorted(running - {lease_count(self.plan.count)}):
            raise FleetMismatch(mismatch(others[0], self.plan.count))

    def keep(self, on_lost: Callable[[], None]) -> None:
        """Renews the leases in the background; calls `on_lost` once if one is found taken."""
        if self._leased is None or self._keeper is not None:
            return
        self._keeper = asyncio.create_task(self._renew_forever(on_lost), name="shard-leases")

    async def _renew_forever(self, on_lost: Callable[[], None]) -> None:
        leased = self._leased
        assert leased is not None
        while True:
            await asyncio.sleep(self.lease_seconds / RENEWALS_PER_LEASE)
            try:
                await self.keep_time()
                until = self._clock() + self.lease_seconds
                kept = await self.store.renew_leases(leased, self.owner, until=until)
            except Exception:
                log.exception("renewing the shard leases failed; trying again")
                continue
            if len(kept) < len(leased):
                log.critical(
                    "another process took shard(s) of this one (paused longer than SHARD_LEASE_SECONDS?);"
                    " stopping so that no job is followed by two processes"
                )
                on_lost()
                return

    async def stop_keeping(self) -> None:
        """The first step of a clean stop: no renewal from here on, so none can land after `release`
        and hold the shards for another lease period."""
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None

    async def release(self, within: float = RELEASE_SECONDS) -> None:
        """At a clean stop, once this process no longer touches its shards' jobs: the next process takes
        the shards at once. Bounded: a lease not given back in time runs out by itself."""
        await self.stop_keeping()
        if self._leased is None:
            return
        try:
            async with asyncio.timeout(within):
                await self.store.release_leases(self.owner)
        except Exception as error:  # TimeoutError included
            log.warning("could not give the shard leases back (%r); they run out by themselves", error)


class LeaseStore(ServerTime, Protocol):
    """What ShardLeases needs from the store (bot/store/fleet.py `FleetStore`)."""

    @property
    def leases_whole_bot(self) -> bool: ...

    async def take_leases(
        self, shards: Sequence[int], count: int, owner: str, *, now: float, until: float
    ) -> list[int]: ...

    async def renew_leases(self, shards: Sequence[int], owner: str, *, until: float) -> list[int]: ...

    async def release_leases(self, owner: str) -> None: ...

    async def live_counts(self, now: float) -> set[int]: ...
