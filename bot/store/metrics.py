"""What /metrics and /healthz read from the database: each query is one cheap statement, and the
running totals read only rows added since the last scrape."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.store.db import Database

# Rows read per scrape at most; a backlog (a long time without scrapes) is read over a few scrapes.
BATCH = 5000


async def ping(db: Database) -> None:
    """Raises when the database does not answer (closed, broken)."""
    await db.fetchone("SELECT 1")


async def jobs_by_state(db: Database, shards: Sequence[int] | None = None) -> dict[str, int]:
    """Jobs per state; only those of `shards` when given (a process of a fleet reports its own)."""
    if shards is None:
        rows = await db.fetchall("SELECT state, COUNT(*) FROM jobs GROUP BY state")
    else:
        wanted = ", ".join("?" for _ in shards)
        rows = await db.fetchall(
            f"SELECT state, COUNT(*) FROM jobs WHERE shard IN ({wanted}) GROUP BY state", tuple(shards)
        )
    return {str(row[0]): int(row[1]) for row in rows}


async def last_event_id(db: Database) -> int:
    row = await db.fetchone("SELECT COALESCE(MAX(id), 0) FROM job_events")
    return int(row[0]) if row is not None else 0


async def queue_waits_after(db: Database, after: int) -> tuple[int, list[float]]:
    """(new cursor, seconds each job waited from `queued` to `submitting`) for the submissions recorded
    in job_events after the event id `after`."""
    top = await last_event_id(db)
    rows = await db.fetchall(
        "SELECT s.id, s.at - (SELECT MAX(q.at) FROM job_events q"
        "   WHERE q.job_id = s.job_id AND q.to_state = 'queued' AND q.id < s.id)"
        " FROM job_events s WHERE s.id > ? AND s.id <= ? AND s.to_state = 'submitting'"
        " ORDER BY s.id LIMIT ?",
        (after, top, BATCH),
    )
    waits = [max(0.0, float(row[1])) for row in rows if row[1] is not None]
    return (int(rows[-1][0]) if len(rows) == BATCH else max(top, after)), waits


@dataclass(frozen=True, slots=True)
class Spent:
    """Credits and USD (in millionths) of the jobs whose reservation was committed (the API made their
    video), over the ledger rows up to `cursor`."""

    cursor: int
    credits: int
    usd_micros: int


async def spent_after(db: Database, previous: Spent) -> Spent:
    """`previous` plus the commits added to the ledger since it was read."""
    row = await db.fetchone(
        "SELECT MAX(c.id), COALESCE(SUM(c.credits), 0), COALESCE(SUM(r.usd_micros), 0)"
        " FROM quota_ledger c JOIN quota_ledger r ON r.job_id = c.job_id AND r.kind = 'reserve'"
        " WHERE c.kind = 'commit' AND c.id > ?",
        (previous.cursor,),
    )
    if row is None or row[0] is None:
        return previous
    return Spent(int(row[0]), previous.credits + int(row[1]), previous.usd_micros + int(row[2]))
