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


# Where the queue waits were read up to: (transaction, event id). On PostgreSQL the transaction is the
# id of the one that wrote the event (migration 0014); on SQLite, whose one writer commits events in id
# order, always 0.
EventsCursor = tuple[int, int]

# The oldest transaction still open anywhere on the server: every event of an older one is committed (or
# never will be), so none can appear behind a cursor that only passes such events.
_HORIZON = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"

_WAIT = (
    "s.at - (SELECT MAX(q.at) FROM job_events q"
    " WHERE q.job_id = s.job_id AND q.to_state = 'queued' AND q.id < s.id)"
)


async def events_cursor(db: Database) -> EventsCursor:
    """A cursor past every event written so far (or still being written, on PostgreSQL: those are
    read, as they belong to this process's time)."""
    if db.engine == "postgresql":
        row = await db.fetchone(f"SELECT {_HORIZON}")
        return (int(row[0]) if row is not None else 0), 0
    row = await db.fetchone("SELECT COALESCE(MAX(id), 0) FROM job_events")
    return 0, int(row[0]) if row is not None else 0


async def queue_waits_after(db: Database, after: EventsCursor) -> tuple[EventsCursor, list[float]]:
    """(new cursor, seconds each job waited from `queued` to `submitting`) for the submissions recorded
    after the cursor `after`, each counted once whatever order their transactions commit in. At most
    BATCH a call; the rest are read by the next calls."""
    if db.engine == "postgresql":
        top = await events_cursor(db)  # events of older transactions only: none can appear behind it
        rows = await db.fetchall(
            f"SELECT s.xact, s.id, {_WAIT} FROM job_events s"
            " WHERE (s.xact, s.id) > (?, ?) AND s.xact < ? AND s.to_state = 'submitting'"
            " ORDER BY s.xact, s.id LIMIT ?",
            (after[0], after[1], top[0], BATCH),
        )
    else:
        top = await events_cursor(db)
        rows = await db.fetchall(
            f"SELECT 0, s.id, {_WAIT} FROM job_events s"
            " WHERE s.id > ? AND s.id <= ? AND s.to_state = 'submitting' ORDER BY s.id LIMIT ?",
            (after[1], top[1], BATCH),
        )
    waits = [max(0.0, float(row[2])) for row in rows if row[2] is not None]
    if len(rows) == BATCH:
        return (int(rows[-1][0]), int(rows[-1][1])), waits
    return max(top, after), waits


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
