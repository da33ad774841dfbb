"""The recording of new jobs: `JobInbox.create`, the group commit that writes a crowd's commands in a
handful of transactions, each one trip to the write connection's thread (SQLite) or one statement
(PostgreSQL), and the columns a new job fills. `JobStore` (bot/store/jobs.py) is a `JobInbox`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from bot.fleet import WHOLE, ShardPlan
from bot.store.db import Database
from bot.store.sqlite import SqliteDatabase

# A job's deliver_via: its messages go through the interaction (then the DM), never into its channel.
VIA_INTERACTION = "interaction"
VIA_CHANNEL = "channel"

# The columns `JobInbox.create` fills, in the order of `_NewJob.values`, with their PostgreSQL types (the
# records of `_CREATE_IN_ONE_STATEMENT`); both engines' INSERTs are built from this one list.
NEW_JOB_COLUMNS: tuple[tuple[str, str], ...] = (
    ("interaction_id", "TEXT"),
    ("guild_id", "TEXT"),
    ("channel_id", "TEXT"),
    ("user_id", "TEXT"),
    ("state", "TEXT"),
    ("params", "TEXT"),
    ("upload_limit", "INTEGER"),
    ("created_at", "DOUBLE PRECISION"),
    ("updated_at", "DOUBLE PRECISION"),
    ("deadline", "DOUBLE PRECISION"),
    ("shard", "INTEGER"),
    ("deliver_via", "TEXT"),
    ("locale", "TEXT"),
)
# A crowd's commands are committed this many at a time, so that the first deferrals leave while the
# next batch commits: one batch of the whole crowd left the event loop idle for its commit and then sent
# every deferral at once. benchmarks/crowd.py, 500 members at once, p99 against the bare client's
# (medians of 8 alternated runs): SQLite 1.06x whole, 1.01x at 32; PostgreSQL 1.39x whole, 0.81x at 32.
GROUP_COMMIT_SIZE = 32
# Group commits under way at once: SQLite has one writer; on PostgreSQL each batch is a statement of its
# own on a connection of the pool, so a database further away than loopback does not turn a crowd's
# batches into as many round trips one after the other: through a proxy adding 5 ms each way, 500 members
# at once were acknowledged at 1.45x the bare client's p99 with four, 2.19x with one (six runs each).
GROUP_COMMITS_AT_ONCE = {"sqlite": 1, "postgresql": 4}
_NEW_JOB_NAMES = tuple(name for name, _ in NEW_JOB_COLUMNS)
_NAMES = ", ".join(_NEW_JOB_NAMES)


@dataclass(slots=True)
class _NewJob:
    """A command waiting for the next group commit (`JobInbox.create`)."""

    interaction_id: str
    values: tuple[Any, ...]
    state: str
    at: float
    done: asyncio.Future[tuple[int, bool]]

    def __post_init__(self) -> None:
        if len(self.values) != len(NEW_JOB_COLUMNS):
            raise ValueError(f"a new job has {len(NEW_JOB_COLUMNS)} columns, not {len(self.values)}")


_JOBS_OF_INTERACTIONS = (
    "SELECT id, interaction_id FROM jobs WHERE interaction_id IN (SELECT value FROM json_each(?))"
)

# SQLite (`_insert_in_sqlite`): each a single step, whatever the batch's size. The job ids of some
# interactions as one JSON object; the batch's new jobs from one JSON array of rows, in its order; their
# first events from one JSON array of [job id, state, at].
_IDS_OF_INTERACTIONS = (
    "SELECT json_group_object(interaction_id, id) FROM jobs"
    " WHERE interaction_id IN (SELECT value FROM json_each(?))"
)
_INSERT_JOBS = (
    f"INSERT INTO jobs ({_NAMES}) SELECT "
    + ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(NEW_JOB_COLUMNS)))
    + " FROM json_each(?) ORDER BY key"
)
_INSERT_FIRST_EVENTS = (
    "INSERT INTO job_events (job_id, from_state, to_state, at)"
    " SELECT json_extract(value, '$[0]'), NULL, json_extract(value, '$[1]'), json_extract(value, '$[2]')"
    " FROM json_each(?) ORDER BY key"
)

# PostgreSQL only (`JobInbox._insert_batch_in_one_statement`): a batch of new jobs as one JSON array of
# records, inserted with their first events; returns every job of the batch's interactions with whether
# this statement made it (the last SELECT sees the jobs from before the statement, `made` the new ones).
# Rows go in in the order of their interaction ids (snowflakes: the order Discord made them in), the same
# in every batch, so two batches under way at once holding the same interactions (replays) wait for each
# other's key locks in one order, never in a cycle (a deadlock).
_CREATE_IN_ONE_STATEMENT = f"""
WITH batch AS (
    SELECT * FROM json_to_recordset(CAST(? AS json)) AS b(
        {", ".join(f"{name} {kind}" for name, kind in NEW_JOB_COLUMNS)})
), made AS (
    INSERT INTO jobs ({_NAMES})
    SELECT {_NAMES}
    FROM batch ORDER BY length(interaction_id), interaction_id
    ON CONFLICT (interaction_id) DO NOTHING
    RETURNING id, interaction_id, state, created_at
), logged AS (
    INSERT INTO job_events (job_id, from_state, to_state, at)
    SELECT id, CAST(NULL AS TEXT), state, created_at FROM made
)
SELECT id, interaction_id, 1 AS created FROM made
UNION ALL
SELECT id, interaction_id, 0 AS created FROM jobs
WHERE interaction_id IN (SELECT interaction_id FROM batch)
"""


class JobInbox:
    """Records commands as jobs, a crowd's in a few commits; `shards` gives each job its guild's shard."""

    def __init__(self, db: Database, *, clock: Any = time.time, shards: ShardPlan = WHOLE) -> None:
        self.db = db
        self._clock = clock
        self.shards = shards
        self._inbox: list[_NewJob] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._max_writers = GROUP_COMMITS_AT_ONCE.get(db.engine, 1)

    async def create(
        self,
        *,
        interaction_id: int,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        state: str,
        params: Mapping[str, Any],
        upload_limit: int,
        lifetime_seconds: float,
        deliver_via: str = VIA_CHANNEL,
        locale: str | None = None,
    ) -> tuple[int, bool]:
        """Records a command; returns (job id, created) once it is committed. A replayed interaction
        returns its first job.

        Group commit: commands recorded while a transaction is under way wait for it and are then
        written together, up to GROUP_COMMIT_SIZE in one transaction, so a crowd costs a few dozen
        commits rather than one each, and each caller still returns only after its own row is
        committed. A caller cancelled meanwhile does not take its row out of the batch (the restart
        check ends a `received` job)."""
        now = self._clock()
        entry = _NewJob(
            interaction_id=str(interaction_id),
            values=(
                str(interaction_id),
                None if guild_id is None else str(guild_id),
                str(channel_id),
                str(user_id),
                state,
                json.dumps(dict(params), separators=(",", ":")),
                upload_limit,
                now,
                now,
                now + lifetime_seconds,
                self.shards.shard_of(guild_id),
                deliver_via,
                locale,
            ),
            state=state,
            at=now,
            done=asyncio.get_running_loop().create_future(),
        )
        self._inbox.append(entry)
        if len(self._writers) < self._max_writers:
            # A writer with nothing left to take when it runs ends at once.
            self._writers.add(asyncio.create_task(self._write_inbox(), name="job-inbox"))
        return await asyncio.shield(entry.done)

    async def _write_inbox(self) -> None:
        try:
            await self._write_batches()
        finally:
            # At once, not by a done callback a turn later: a command recorded in that turn would find
            # the writers all counted and start none, and wait for the next command to come.
            self._writers.discard(cast("asyncio.Task[None]", asyncio.current_task()))

    async def _write_batches(self) -> None:
        while self._inbox:
            batch, self._inbox = self._inbox[:GROUP_COMMIT_SIZE], self._inbox[GROUP_COMMIT_SIZE:]
            try:
                results = await self._insert_batch(batch)
            except Exception as error:
                for entry in batch:
                    entry.done.set_exception(error)
                continue
            except BaseException:
                for entry in batch:
                    entry.done.cancel()
                raise
            for entry, result in zip(batch, results, strict=True):
                entry.done.set_result(result)

    async def _insert_batch(self, batch: list[_NewJob]) -> list[tuple[int, bool]]:
        if self.db.engine == "postgresql":
            return await self._insert_batch_in_one_statement(batch)
        assert isinstance(self.db, SqliteDatabase)
        # Urgent: every command in the batch waits for this commit before Discord hears of it.
        known, fresh = await self.db.write_in_one_trip(
            lambda conn: _insert_in_sqlite(conn, batch), urgent=True
        )
        results: list[tuple[int, bool]] = []
        for entry in batch:
            # The same interaction twice in one batch: the first one creates the job.
            results.append((known[entry.interaction_id], fresh.pop(entry.interaction_id, None) is entry))
        return results

    async def _insert_batch_in_one_statement(self, batch: list[_NewJob]) -> list[tuple[int, bool]]:
        """PostgreSQL: the batch's jobs and their first events in one statement, which is its own
        transaction there: one round trip where a transaction would take six, and no
        wait for this process's other writers nor the fleet's write lock (the UNIQUE interaction id is
        all a replay needs; nothing here reads before it writes)."""
        first: dict[str, _NewJob] = {}
        for entry in batch:
            first.setdefault(entry.interaction_id, entry)
        records = [dict(zip(_NEW_JOB_NAMES, entry.values, strict=True)) for entry in first.values()]
        known: dict[str, int] = {}
        created: set[str] = set()
        for row in await self.db.fetchall(_CREATE_IN_ONE_STATEMENT, (json.dumps(records),)):
            known[str(row["interaction_id"])] = int(row["id"])
            if row["created"]:
                created.add(str(row["interaction_id"]))
        if missing := [interaction_id for interaction_id in first if interaction_id not in known]:
            # Made by another process's statement that committed after this one's snapshot: a replay.
            rows = await self.db.fetchall(_JOBS_OF_INTERACTIONS, (json.dumps(missing),))
            known.update({str(row["interaction_id"]): int(row["id"]) for row in rows})
        return [
            (
                known[entry.interaction_id],
                entry.interaction_id in created and first[entry.interaction_id] is entry,
            )
            for entry in batch
        ]


def _insert_in_sqlite(
    conn: sqlite3.Connection, batch: list[_NewJob]
) -> tuple[dict[str, int], dict[str, _NewJob]]:
    """SQLite, in the write connection's thread inside its transaction: the batch's new jobs and their
    first events, each statement set-based (one step of SQLite's, whatever the batch's size: the thread
    gives the interpreter's lock back at every step, and while the event loop is busy with a crowd's
    deferrals it waits up to 5 ms to take it again); (job id of every interaction of the batch, the
    entries that made a job)."""
    known = _ids_of(conn, [e.interaction_id for e in batch])
    fresh: dict[str, _NewJob] = {}
    for entry in batch:
        if entry.interaction_id not in known:
            fresh.setdefault(entry.interaction_id, entry)
    if fresh:
        conn.execute(_INSERT_JOBS, (json.dumps([e.values for e in fresh.values()]),))
        created = _ids_of(conn, list(fresh))
        events = [[created[interaction_id], e.state, e.at] for interaction_id, e in fresh.items()]
        conn.execute(_INSERT_FIRST_EVENTS, (json.dumps(events),))
        known.update(created)
    return known, fresh


def _ids_of(conn: sqlite3.Connection, interaction_ids: list[str]) -> dict[str, int]:
    (found,) = conn.execute(_IDS_OF_INTERACTIONS, (json.dumps(interaction_ids),)).fetchone()
    return {str(key): int(value) for key, value in json.loads(found or "{}").items()}
