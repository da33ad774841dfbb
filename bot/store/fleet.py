"""SQL for the fleet: the shard leases (bot/fleet.py). Portable: SQLite and PostgreSQL alike.

Renewing and giving back a lease never wait for the fleet's write lock (`write(exclusive=False)`): each
is one conditional UPDATE per row of the process's own, which PostgreSQL's row locks make atomic, and a
busy fleet must neither let a lease run out nor hold up a process that is stopping."""

from __future__ import annotations

from collections.abc import Sequence

from bot.fleet import FleetMismatch, mismatch
from bot.store.db import Database


class FleetStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def leases_whole_bot(self) -> bool:
        """Whether a process without SHARD_COUNT leases the whole bot too: on PostgreSQL, the database
        a fleet shares, where two such processes would each follow every job. (A SQLite file is one
        machine's, run by one process; leasing there would make every restart after a crash wait.)"""
        return self.db.engine == "postgresql"

    async def server_time(self) -> float | None:
        """PostgreSQL's clock (seconds since the epoch, `clock_timestamp()`: the moment of the read, not of
        the transaction's start), for the fleet's clock (bot/fleet.py FleetClock); None on SQLite, whose
        one machine has one clock."""
        if self.db.engine != "postgresql":
            return None
        row = await self.db.fetchone("SELECT EXTRACT(EPOCH FROM clock_timestamp())")
        assert row is not None
        return float(row[0])

    async def take_leases(
        self, shards: Sequence[int], count: int, owner: str, *, now: float, until: float
    ) -> list[int]:
        """Takes each shard's lease that is free, run out, or already `owner`'s; returns those taken.
        Raises FleetMismatch, taking none, while another process holds a live lease under another
        shard count (read in the same transaction, so two processes started together with different
        counts cannot both pass)."""
        taken: list[int] = []
        async with self.db.write() as tx:
            other = await tx.fetchone(
                "SELECT shard_count FROM shard_leases WHERE expires_at >= ? AND owner != ?"
                " AND shard_count != ? LIMIT 1",
                (now, owner, count),
            )
            if other is not None:
                raise FleetMismatch(mismatch(int(other[0]), count))
            for shard in shards:
                changed = await tx.execute(
                    "INSERT INTO shard_leases (shard, shard_count, owner, expires_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (shard) DO UPDATE SET shard_count = excluded.shard_count,"
                    " owner = excluded.owner, expires_at = excluded.expires_at"
                    " WHERE shard_leases.expires_at < ? OR shard_leases.owner = excluded.owner",
                    (shard, count, owner, until, now),
                )
                if changed:
                    taken.append(shard)
        return taken

    async def live_counts(self, now: float) -> set[int]:
        """The shard counts under which live processes hold leases (none: no sharded process runs)."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT shard_count FROM shard_leases WHERE expires_at >= ?", (now,)
        )
        return {int(row[0]) for row in rows}

    async def renew_leases(self, shards: Sequence[int], owner: str, *, until: float) -> list[int]:
        """Extends `owner`'s leases; returns the shards it still holds."""
        kept: list[int] = []
        async with self.db.write(exclusive=False) as tx:
            for shard in shards:
                if await tx.execute(
                    "UPDATE shard_leases SET expires_at = ? WHERE shard = ? AND owner = ?",
                    (until, shard, owner),
                ):
                    kept.append(shard)
        return kept

    async def release_leases(self, owner: str) -> None:
        async with self.db.write(exclusive=False) as tx:
            await tx.execute("UPDATE shard_leases SET expires_at = 0 WHERE owner = ?", (owner,))

    async def leases(self) -> dict[int, tuple[str, float]]:
        """Every shard's (owner, expires_at), for tests and the operator."""
        rows = await self.db.fetchall("SELECT shard, owner, expires_at FROM shard_leases ORDER BY shard")
        return {int(row[0]): (str(row[1]), float(row[2])) for row in rows}
