"""The store on both engines (SQLite and PostgreSQL, via the `database_url` fixture): migrations, the write
lock, and the jobs state machine's guarded transitions; then what is particular to each engine."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.jobs import fair_order
from bot.store import Database
from bot.store.db import sqlite_path_from_url
from bot.store.inbox import (
    GROUP_COMMIT_SIZE,
    GROUP_COMMITS_AT_ONCE,
    NEW_JOB_COLUMNS,
    VIA_INTERACTION,
    _NewJob,
)
from bot.store.jobs import JobStore
from bot.store.migrations import _to_postgresql, migrations
from bot.store.sql import to_postgresql
from tests.conftest import ENGINES


async def open_store(where: Path | str) -> tuple[Database, JobStore]:
    db = await Database.open(where)
    return db, JobStore(db)


def count_batches(store: JobStore) -> list[int]:
    """The size of each group commit `store` makes from now on (each one transaction, on either engine)."""
    sizes: list[int] = []
    insert_batch = store._insert_batch

    async def counted(batch: Any) -> Any:
        sizes.append(len(batch))
        return await insert_batch(batch)

    store._insert_batch = counted  # type: ignore[method-assign]
    return sizes


async def record(store: JobStore, interaction_id: int = 1, user_id: int = 10) -> tuple[int, bool]:
    """A plain /animate recorded: (job id, whether this call made it)."""
    return await store.create(
        interaction_id=interaction_id,
        guild_id=5,
        channel_id=6,
        user_id=user_id,
        state="received",
        params={"prompt": "a cat waves"},
        upload_limit=10_485_760,
        lifetime_seconds=3600,
    )


async def new_job(store: JobStore, interaction_id: int = 1, user_id: int = 10) -> int:
    job_id, created = await record(store, interaction_id, user_id)
    assert created
    return job_id


def test_sqlite_url_parsing() -> None:
    assert sqlite_path_from_url("sqlite:///data/bot.sqlite3") == Path("data/bot.sqlite3")
    assert sqlite_path_from_url("sqlite:////abs/bot.db") == Path("/abs/bot.db")
    for bad in ("postgres://x/y", "sqlite:///", "data/bot.sqlite3"):
        with pytest.raises(ValueError):
            sqlite_path_from_url(bad)


async def test_migrations_apply_once_and_wal_is_on(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "bot.sqlite3"
    db = await Database.open(path)
    await db.close()
    db = await Database.open(path)  # reopening must not re-run a migration
    try:
        versions = [row["version"] for row in await db.fetchall("SELECT version FROM schema_migrations")]
        assert versions == sorted(set(versions)) and versions[0] == 1
        mode = await db.fetchone("PRAGMA journal_mode")
        assert mode is not None and mode[0] == "wal"
    finally:
        await db.close()


async def test_a_replayed_interaction_is_one_job(database_url: str) -> None:
    db, store = await open_store(database_url)
    async with db:
        first = await new_job(store, interaction_id=77)
        again, created = await store.create(
            interaction_id=77,
            guild_id=5,
            channel_id=6,
            user_id=10,
            state="received",
            params={},
            upload_limit=1,
            lifetime_seconds=1,
        )
        assert (again, created) == (first, False)


async def test_a_new_job_must_fill_every_column_both_engines_insert() -> None:
    """Both engines' INSERTs are built from NEW_JOB_COLUMNS: a new job with other values is refused."""
    done: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
    fits = tuple(range(len(NEW_JOB_COLUMNS)))
    assert _NewJob(interaction_id="1", values=fits, state="received", at=0.0, done=done).values == fits
    for values in (fits[:-1], (*fits, 0)):
        with pytest.raises(ValueError, match="columns"):
            _NewJob(interaction_id="1", values=values, state="received", at=0.0, done=done)


async def test_the_delivery_route_is_kept_for_a_restart(database_url: str) -> None:
    """A job the bot cannot post in the channel of (issue 20 item 4) says so in its row (migration 0010),
    so a restarted process never posts it there; every other job, and every old row, is 'channel'."""
    db, store = await open_store(database_url)
    async with db:
        plain = await new_job(store, interaction_id=1)
        routed, _ = await store.create(
            interaction_id=2,
            guild_id=None,
            channel_id=6,
            user_id=10,
            state="received",
            params={},
            upload_limit=1,
            lifetime_seconds=1,
            deliver_via=VIA_INTERACTION,
        )
        first, second = await store.get(plain), await store.get(routed)
        assert first is not None and second is not None
        assert (first.deliver_via, first.through_interaction) == ("channel", False)
        assert (second.deliver_via, second.through_interaction) == ("interaction", True)


async def test_a_crowd_is_recorded_in_few_commits_each_committed_before_it_returns(database_url: str) -> None:
    db, store = await open_store(database_url)
    other = await Database.open(database_url)  # another connection (or pool): another process, say
    async with db, other:
        earlier = await new_job(store, interaction_id=5)
        commits = count_batches(store)
        seen: dict[int, tuple[int, bool]] = {}

        async def member(interaction_id: int) -> None:
            result = await store.create(
                interaction_id=interaction_id,
                guild_id=5,
                channel_id=6,
                user_id=interaction_id,
                state="received",
                params={"prompt": f"member {interaction_id}"},
                upload_limit=1,
                lifetime_seconds=60,
            )
            # Committed before it returns: another connection already sees the row.
            row = await other.fetchone("SELECT interaction_id FROM jobs WHERE id = ?", (result[0],))
            assert row is not None and row[0] == str(interaction_id)
            seen.setdefault(interaction_id, result)
            if interaction_id in seen and seen[interaction_id] != result:
                seen[-interaction_id] = result

        # 200 members at once, one interaction delivered twice, one recorded before the crowd.
        await asyncio.gather(*(member(i) for i in [*range(100, 300), 150, 5]))
        assert 1 <= len(commits) <= 10
        ids = {seen[i][0] for i in range(100, 300)}
        assert len(ids) == 200 and earlier not in ids
        assert all(seen[i][1] for i in range(100, 300))
        assert seen[-150] == (seen[150][0], False)  # the replay got the first job, not a new one
        assert seen[5] == (earlier, False)
        for job_id in ids:
            assert await store.events(job_id) == [(None, "received")]
        total = await db.fetchone("SELECT COUNT(*) FROM jobs")
        assert total is not None and total[0] == 201


async def test_a_crowd_is_committed_in_small_batches_several_at_once_on_postgresql(database_url: str) -> None:
    """Batches of at most GROUP_COMMIT_SIZE, so the first deferrals leave while the next batch commits;
    on PostgreSQL several batches are under way at once (a database further than loopback does not make
    a crowd wait for its batches' round trips one after the other), on SQLite one (its one writer)."""
    db, store = await open_store(database_url)
    async with db:
        sizes: list[int] = []
        in_flight = most = 0
        insert_batch = store._insert_batch

        async def counted(batch: Any) -> Any:
            nonlocal in_flight, most
            sizes.append(len(batch))
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await insert_batch(batch)
            finally:
                in_flight -= 1

        store._insert_batch = counted  # type: ignore[method-assign]
        results = await asyncio.gather(
            *(new_job(store, interaction_id=i, user_id=i) for i in range(500, 700))
        )
        assert len(set(results)) == 200 and sum(sizes) == 200
        assert max(sizes) == GROUP_COMMIT_SIZE
        assert most == GROUP_COMMITS_AT_ONCE[db.engine] == (4 if db.engine == "postgresql" else 1)
        assert not store._writers  # every writer ended with the inbox empty
        total = await db.fetchone("SELECT COUNT(*) FROM jobs")
        assert total is not None and total[0] == 200


async def test_a_command_recorded_as_the_last_writer_ends_is_written_at_once(database_url: str) -> None:
    """A command recorded in the turn its writer finished (a gateway event delivered meanwhile) starts a
    writer of its own; counted until that writer's done callback ran, it waited for the next command,
    for ever if none came (found by a review of e53251a)."""
    db, store = await open_store(database_url)
    async with db:
        woken = asyncio.get_running_loop().create_future()
        insert_batch = store._insert_batch

        async def insert(batch: Any) -> Any:
            result = await insert_batch(batch)
            if not woken.done():
                woken.set_result(None)  # the next command's task becomes ready as the batch ends
            return result

        store._insert_batch = insert  # type: ignore[method-assign]

        async def second() -> int:
            await woken
            return await new_job(store, interaction_id=2)

        later = asyncio.ensure_future(second())
        await new_job(store, interaction_id=1)
        assert await asyncio.wait_for(later, timeout=5) > 0
        assert not store._writers and not store._inbox


async def test_replays_split_over_batches_under_way_at_once_are_one_job_each(postgres_url: str) -> None:
    """Interactions and their replays in the reverse order, so two of the batches under way at once hold
    the same keys: inserted in the batches' own order they deadlocked in about one trial of six, and
    the losing batch's 32 commands all failed (found by a review of e53251a)."""
    db, store = await open_store(postgres_url)
    async with db:
        for trial in range(8):
            first = 10_000 * (trial + 1)
            crowd = [*range(first, first + 32), *reversed(range(first, first + 32))]
            results = await asyncio.gather(*(record(store, i, user_id=i) for i in crowd))
            assert sum(created for _, created in results) == 32
            jobs: dict[int, set[int]] = {}
            for interaction_id, (job_id, _) in zip(crowd, results, strict=True):
                jobs.setdefault(interaction_id, set()).add(job_id)
            assert all(len(ids) == 1 for ids in jobs.values()) and len(jobs) == 32


async def test_a_sqlite_group_commit_is_one_trip_to_its_thread_and_keeps_every_value(tmp_path: Path) -> None:
    """Each trip to aiosqlite's thread waits for the event loop's turn, which under a crowd is every
    deferral ready before it: a crowd's group commit is one trip whatever its size (it was about ten, and
    one interpreter-lock handover per row), and its rows hold exactly what was given."""
    db, store = await open_store(tmp_path / "bot.sqlite3")
    async with db:
        trips = 0
        run_in_thread = db._conn._execute  # type: ignore[attr-defined]

        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal trips
            trips += 1
            return await run_in_thread(fn, *args, **kwargs)

        db._conn._execute = counted  # type: ignore[attr-defined]
        commits = count_batches(store)
        at = 1_764_979_200.123456789  # a time with every bit of a double's fraction in use
        store._clock = lambda: at
        crowd = [
            store.create(
                interaction_id=1_000 + i,
                guild_id=None if i % 2 else 2**62 + i,
                channel_id=6,
                user_id=10 + i,
                state="received",
                params={"prompt": f"member {i} says “hi” ☃"},
                upload_limit=10_485_760,
                lifetime_seconds=60.5,
                deliver_via=VIA_INTERACTION,
                locale=None if i % 3 else "pt-BR",
            )
            for i in range(200)
        ]
        results = await asyncio.gather(*crowd)
        assert sum(commits) == 200 and max(commits) <= GROUP_COMMIT_SIZE
        assert trips == len(commits)
        rows = await db.fetchall("SELECT * FROM jobs ORDER BY id")
        assert [row["id"] for row in rows] == [job_id for job_id, _ in results]
        for i, row in enumerate(rows):
            assert row["interaction_id"] == str(1_000 + i)
            assert row["guild_id"] == (None if i % 2 else str(2**62 + i))
            assert (row["channel_id"], row["user_id"]) == ("6", str(10 + i))
            assert row["params"] == f'{{"prompt":"member {i} says \\u201chi\\u201d \\u2603"}}'
            assert (row["upload_limit"], row["created_at"], row["deadline"]) == (10_485_760, at, at + 60.5)
            assert (row["deliver_via"], row["locale"]) == ("interaction", None if i % 3 else "pt-BR")
        events = await db.fetchall("SELECT job_id, from_state, to_state, at FROM job_events ORDER BY job_id")
        assert [tuple(e) for e in events] == [(job_id, None, "received", at) for job_id, _ in results]


async def test_a_failed_group_commit_reaches_every_caller_and_the_next_one_commits(database_url: str) -> None:
    db, store = await open_store(database_url)
    async with db:
        async with db.write() as tx:  # the table gone: the batch's transaction fails for real
            await tx.execute("ALTER TABLE jobs RENAME TO jobs_away")
        commits = count_batches(store)
        crowd = [new_job(store, interaction_id=i, user_id=i) for i in range(300, 340)]
        results = await asyncio.gather(*crowd, return_exceptions=True)
        # Two batches, one transaction each, and each of their callers heard of its failure.
        assert commits == [GROUP_COMMIT_SIZE, 40 - GROUP_COMMIT_SIZE]
        assert len(results) == 40 and all(isinstance(r, Exception) for r in results)
        async with db.write() as tx:
            await tx.execute("ALTER TABLE jobs_away RENAME TO jobs")
        total = await db.fetchone("SELECT COUNT(*) FROM jobs")
        assert total is not None and total[0] == 0  # nothing of the failed batch was kept
        job_id = await new_job(store, interaction_id=300)  # the writer is not wedged
        assert await store.events(job_id) == [(None, "received")]


async def test_a_caller_cancelled_while_its_batch_commits_leaves_its_row_and_the_others_their_answers(
    database_url: str,
) -> None:
    """Cancelled (a shutdown, say) while waiting: its row is still written with the rest of the batch,
    `received`, which the next start refunds and reports like a crash's; the others are not disturbed."""
    db, store = await open_store(database_url)
    async with db:
        async with db.write() as tx:  # a write under way: the crowd waits for the next group commit
            if db.engine == "postgresql":  # where the batch is one statement of its own, not under this lock
                await tx.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")
            tasks = [
                asyncio.create_task(new_job(store, interaction_id=i, user_id=i)) for i in range(400, 410)
            ]
            await asyncio.sleep(0.05)
            tasks[3].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[3], asyncio.CancelledError)
        kept = [r for i, r in enumerate(results) if i != 3]
        assert all(isinstance(r, int) for r in kept) and len(set(kept)) == 9
        row = await db.fetchone("SELECT id, state FROM jobs WHERE interaction_id = ?", ("403",))
        assert row is not None and row["state"] == "received" and row["id"] not in kept
        again, created = await store.create(
            interaction_id=403,
            guild_id=5,
            channel_id=6,
            user_id=403,
            state="received",
            params={},
            upload_limit=1,
            lifetime_seconds=1,
        )
        assert (again, created) == (row["id"], False)  # its redelivery starts nothing twice


async def test_an_urgent_write_goes_before_the_writers_waiting(database_url: str) -> None:
    db, _ = await open_store(database_url)
    order: list[str] = []

    async def writer(name: str, urgent: bool = False) -> None:
        async with db.write(urgent=urgent) as tx:
            order.append(name)
            await tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (name, name))

    async with db:
        async with db.write():
            waiting = [asyncio.create_task(writer(f"normal{i}")) for i in range(3)]
            await asyncio.sleep(0.01)
            cancelled = asyncio.create_task(writer("cancelled", urgent=True))
            urgent = asyncio.create_task(writer("urgent", urgent=True))
            await asyncio.sleep(0.01)
            cancelled.cancel()  # a cancelled waiter neither takes the lock nor blocks it
        await asyncio.gather(*waiting, urgent, cancelled, return_exceptions=True)
        assert order == ["urgent", "normal0", "normal1", "normal2"]
        async with db.write():  # and the lock is free again
            pass


async def test_place_in_queue_is_the_fair_order(database_url: str) -> None:
    rng = random.Random(13)
    db, store = await open_store(database_url)
    async with db:
        for interaction_id in range(1, 121):
            job_id = await new_job(store, interaction_id=interaction_id, user_id=rng.randint(1, 15))
            roll = rng.random()
            if roll < 0.6:
                await store.transition(job_id, "received", "queued")
            elif roll < 0.9:
                await store.transition(job_id, "received", "submitted", submitted_at=1000.0 + rng.random())
        queued = await store.in_states(["queued"])
        expected = [job.id for job in fair_order(queued, await store.started_since(1000.5))]
        places = {job.id: await store.place_in_queue(job.id, "queued", 1000.5) for job in queued}
        assert sorted(places, key=lambda i: places[i]) == expected
        assert sorted(places.values()) == list(range(1, len(queued) + 1))
        not_waiting = await store.in_states(["submitted"])
        assert await store.place_in_queue(not_waiting[0].id, "queued", 1000.5) is None


async def test_transition_only_from_the_expected_state(database_url: str) -> None:
    db, store = await open_store(database_url)
    async with db:
        job_id = await new_job(store)
        assert await store.transition(job_id, "received", "queued", start_image_url="https://f/1.jpg")
        # A stale writer that still believes the job is "received" changes nothing.
        assert not await store.transition(job_id, "received", "refused")
        assert await store.transition(job_id, ("queued", "submitting"), "submitting")
        job = await store.get(job_id)
        assert job is not None and job.state == "submitting" and job.start_image_url == "https://f/1.jpg"
        assert await store.events(job_id) == [
            (None, "received"),
            ("received", "queued"),
            ("queued", "submitting"),
        ]


async def test_unknown_columns_are_refused(database_url: str) -> None:
    db, store = await open_store(database_url)
    async with db:
        job_id = await new_job(store)
        with pytest.raises(ValueError):
            await store.update(job_id, **{"state = 'delivered', notified": 1})


async def test_concurrent_transitions_have_one_winner(database_url: str) -> None:
    db, store = await open_store(database_url)
    async with db:
        job_id = await new_job(store)
        results = await asyncio.gather(
            *(store.transition(job_id, "received", f"state{i}") for i in range(50))
        )
        assert results.count(True) == 1


async def test_write_rolls_back_on_error(database_url: str) -> None:
    db, store = await open_store(database_url)
    async with db:
        with pytest.raises(RuntimeError):
            async with db.write() as tx:
                await tx.execute("INSERT INTO meta (key, value) VALUES ('a', 'b')")
                raise RuntimeError("boom")
        assert await store.get_meta("a") is None
        await store.set_meta("a", "1")
        await store.set_meta("a", "2")
        assert await store.get_meta("a") == "2"


async def test_two_processes_share_the_file(tmp_path: Path) -> None:
    """A second connection (another process, say) sees committed rows and waits for the write lock."""
    path = tmp_path / "bot.sqlite3"
    db, store = await open_store(path)
    async with db:
        job_id = await new_job(store)
        other = sqlite3.connect(path, timeout=5)
        try:
            assert other.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone() == ("received",)
        finally:
            other.close()


@pytest.mark.parametrize(
    "cancel_at", [("BEGIN",), ("INSERT",), ("COMMIT",), ("INSERT", "ROLLBACK")], ids="+".join
)
async def test_a_write_cancelled_at_any_await_leaves_no_transaction_open(
    tmp_path: Path, cancel_at: tuple[str, ...]
) -> None:
    """A Cancel press or a shutdown lands while a write waits on one of its statements: the transaction
    completes or rolls back, and the next write works (it used to fail with "cannot start a transaction
    within a transaction" until a restart). ("INSERT", "ROLLBACK") cancels again during the rollback."""
    db, store = await open_store(tmp_path / "bot.sqlite3")
    async with db:
        loop = asyncio.get_running_loop()
        victim: asyncio.Task[None] | None = None

        def on_statement(sql: str) -> None:  # aiosqlite's thread, as each statement starts
            if victim is not None and sql.startswith(cancel_at):
                loop.call_soon_threadsafe(victim.cancel)

        # The write connection is private; tracing it is how a test lands a cancel on each await.
        await db._conn.set_trace_callback(on_statement)

        async def write() -> None:
            async with db.write() as tx:
                await tx.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")

        victim = asyncio.create_task(write())
        with pytest.raises(asyncio.CancelledError):
            await victim
        await db._conn.set_trace_callback(None)
        assert not db._conn.in_transaction
        await store.set_meta("after", "1")
        assert await store.get_meta("after") == "1"
        # A COMMIT that was already under way completes; anything earlier is rolled back.
        assert await store.get_meta("k") == ("v" if cancel_at == ("COMMIT",) else None)


async def test_a_write_cancelled_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE waits in SQLite's busy handler; the task is cancelled meanwhile, and the BEGIN
    that goes through afterwards must not stay open."""
    path = tmp_path / "bot.sqlite3"
    db, store = await open_store(path)
    async with db:
        other = sqlite3.connect(path, timeout=5, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            task = asyncio.create_task(store.set_meta("k", "v"))
            await asyncio.sleep(0.2)
            task.cancel()
            await asyncio.sleep(0.1)
            other.execute("COMMIT")
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            other.close()
        assert not db._conn.in_transaction
        await store.set_meta("after", "1")
        assert await store.get_meta("after") == "1"


async def test_reads_see_only_committed_data(database_url: str) -> None:
    """A read while another task's transaction is open sees the row as committed, never the change
    that is then rolled back."""
    db, store = await open_store(database_url)
    async with db:
        job_id = await new_job(store)
        inside, finish = asyncio.Event(), asyncio.Event()

        async def doomed() -> None:
            async with db.write() as tx:
                await tx.execute("UPDATE jobs SET state = 'delivered' WHERE id = ?", (job_id,))
                inside.set()
                await finish.wait()
                raise RuntimeError("rolled back")

        task = asyncio.create_task(doomed())
        await inside.wait()
        during = await store.get(job_id)
        assert during is not None and during.state == "received"
        finish.set()
        with pytest.raises(RuntimeError):
            await task
        after = await store.get(job_id)
        assert after is not None and after.state == "received"


# ----- both engines: migrations -----------------------------------------------------------------------


async def test_migrations_apply_once(database_url: str) -> None:
    db = await Database.open(database_url)
    await db.close()
    db = await Database.open(database_url)  # reopening must not re-run a migration
    async with db:
        rows = await db.fetchall("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [row["name"] for row in rows] == [m.name for m in migrations(db.engine)]
        assert rows[0][0] == 1


def test_every_migration_has_a_file_for_each_engine() -> None:
    for engine in ENGINES:
        found = migrations(engine)
        assert [m.version for m in found] == sorted({m.version for m in found})
    assert [m.name for m in migrations("sqlite")] == [m.name for m in migrations("postgresql")]


def test_postgresql_spelling_of_shared_migrations() -> None:
    script = (
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, -- REAL here stays\n"
        " note TEXT DEFAULT 'REAL', k TEXT, PRIMARY KEY (k)) WITHOUT ROWID;"
    )
    assert _to_postgresql(script) == (
        "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
        " at DOUBLE PRECISION NOT NULL, -- REAL here stays\n"
        " note TEXT DEFAULT 'REAL', k TEXT, PRIMARY KEY (k));"
    )


# ----- PostgreSQL: the translation and what several processes need --------------------------------------


def test_placeholders_are_numbered_outside_literals_and_comments() -> None:
    text, order = to_postgresql("SELECT '?', \"a?\", x::json FROM t WHERE a = ? -- why?\n AND b = ?")
    assert text == "SELECT '?', \"a?\", x::json FROM t WHERE a = $1 -- why?\n AND b = $2" and order == 2
    text, order = to_postgresql("SELECT ':no' FROM t WHERE a = :a AND (:b IS NULL OR b = :b) AND c = :a")
    assert text == "SELECT ':no' FROM t WHERE a = $1 AND ($2 IS NULL OR b = $2) AND c = $1"
    assert order == ("a", "b")
    text, _ = to_postgresql(
        "SELECT m.value FROM json_each(:users) AS m WHERE x IN (SELECT value FROM json_each(:x))"
    )
    assert "json_array_elements_text(CAST($1 AS json)) AS m(value)" in text
    with pytest.raises(ValueError):
        to_postgresql("SELECT ? WHERE a = :a")


async def test_postgresql_schema_keeps_times_exact_and_ids_wide(postgres_url: str) -> None:
    async with await Database.open(postgres_url) as db:
        rows = await db.fetchall(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
        types = {(row[0], row[1]): row[2] for row in rows}
        assert "real" not in types.values(), "a 4-byte REAL would round epoch times to minutes"
        assert types[("jobs", "created_at")] == "double precision"
        assert types[("jobs", "id")] == types[("quota_ledger", "id")] == "bigint"
        assert types[("jobs", "user_id")] == "text"


async def test_postgresql_ledger_is_append_only_and_votes_are_counted(postgres_url: str) -> None:
    async with await Database.open(postgres_url) as db:
        store = JobStore(db)
        job_id = await new_job(store)
        async with db.write() as tx:
            await tx.insert(
                "INSERT INTO quota_ledger (guild_id, user_id, kind, job_id, credits, charged_at, at)"
                " VALUES ('5', '10', 'reserve', ?, 5, 1.5, 1.5)",
                (job_id,),
            )
        for statement in (
            "UPDATE quota_ledger SET credits = 6",
            "DELETE FROM quota_ledger",
            "TRUNCATE quota_ledger",
        ):
            with pytest.raises(Exception, match="append-only"):
                await db.execute(statement)
        async with db.write() as tx:  # the unique partial index: one reservation per job
            assert not await tx.execute(
                "INSERT INTO quota_ledger (guild_id, user_id, kind, job_id, credits, charged_at, at)"
                " VALUES ('5', '10', 'reserve', ?, 5, 1.5, 1.5) ON CONFLICT DO NOTHING",
                (job_id,),
            )
        async with db.write() as tx:
            showcase = await tx.insert(
                "INSERT INTO showcases (guild_id, job_id, author_id, shared_by, prompt, settings, created_at)"
                " VALUES ('5', ?, '10', '10', 'p', 's', 1.0)",
                (job_id,),
            )
            await tx.executemany(
                "INSERT INTO showcase_votes (showcase_id, user_id, at) VALUES (?, ?, ?)",
                [(showcase, user, 2.0) for user in (1, 2, 3)],  # ints into TEXT, as SQLite takes them
            )
            await tx.execute("DELETE FROM showcase_votes WHERE user_id = ?", (2,))
        row = await db.fetchone("SELECT vote_count FROM showcases WHERE id = ?", (showcase,))
        assert row is not None and row["vote_count"] == 2


async def test_postgresql_voice_names_ignore_case(postgres_url: str) -> None:
    async with await Database.open(postgres_url) as db:
        await db.execute(
            "INSERT INTO voices (guild_id, name, voice_id, added_by, added_at)"
            " VALUES ('1', 'Narrator', 'v1', '2', 0)"
        )
        row = await db.fetchone(
            "SELECT voice_id FROM voices WHERE guild_id = '1' AND name = ?", ("nARRATOR",)
        )
        assert row is not None and row[0] == "v1"


async def test_processes_starting_at_once_migrate_an_empty_database_once(postgres_url: str) -> None:
    """Four processes open the same empty database at the same moment: each starts without an error and
    every migration is recorded once."""
    code = (
        "import asyncio, sys\nfrom bot.store import Database\n"
        "async def main():\n"
        "    db = await Database.open(sys.argv[1])\n"
        "    await db.close()\n"
        "asyncio.run(main())\n"
    )
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, postgres_url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(4)
    ]
    results = [await p.communicate() for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, [err.decode()[-800:] for _, err in results]
    async with await Database.open(postgres_url) as db:
        rows = await db.fetchall("SELECT version FROM schema_migrations")
        assert sorted(row[0] for row in rows) == [m.version for m in migrations("postgresql")]


async def test_a_postgresql_write_cancelled_mid_statement_leaves_nothing_behind(postgres_url: str) -> None:
    db, store = await open_store(postgres_url)
    async with db:
        started = asyncio.Event()

        async def write() -> None:
            async with db.write() as tx:
                await tx.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
                started.set()
                await tx.fetchone("SELECT pg_sleep(5)")

        victim = asyncio.create_task(write())
        await started.wait()
        await asyncio.sleep(0.05)
        victim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await victim
        assert await store.get_meta("k") is None
        await store.set_meta("after", "1")  # the write lock and the advisory lock are free again
        assert await store.get_meta("after") == "1"


async def test_every_store_read_runs_on_both_engines(database_url: str) -> None:
    """Each reading function of the store once, on a database holding every kind of row: a statement
    that one engine does not accept fails here."""
    from bot.store import blocklist, ledger, metrics, showcases, voices
    from tests.test_migrate_db import ALICE, GUILD, fill

    async with await Database.open(database_url) as db:
        await fill(db)
        store = JobStore(db)
        assert await metrics.jobs_by_state(db) == {"delivered": 1, "failed": 1, "received": 2}
        cursor, _ = await metrics.queue_waits_after(db, (0, 0))
        assert cursor == await metrics.events_cursor(db)
        assert await metrics.queue_waits_after(db, cursor) == (cursor, [])
        spent = await metrics.spent_after(db, metrics.Spent(0, 0, 0))
        assert (spent.credits, spent.usd_micros) == (10, 700_000)
        top, total = await showcases.page(db, GUILD, sort="votes", page=0)
        assert total == 1 and top[0].vote_count == 3
        assert await showcases.top_since(db, GUILD, None, limit=5) == await showcases.top_since(
            db, GUILD, 0.0, limit=5
        )
        assert await showcases.top_creators(db, GUILD, None, limit=5) == [(ALICE, 1, 3)]
        assert await showcases.opted_out(db, GUILD, 1002)
        await showcases.update_server(db, GUILD, {"channel_id": 5, "weekly_post": True}, at=1.0)
        assert [s.channel_id for s in await showcases.servers_with_weekly_post(db)] == [5]
        assert await voices.put_voice(db, GUILD, name="narrator", voice_id="v2", actor_id=1, at=1.0) == "v-1"
        assert await voices.list_voices(db, GUILD) == [voices.VoiceRow("narrator", "v2")]
        assert not await blocklist.add_pattern(db, GUILD, pattern="SPAM*", actor_id=1, at=1.0)
        assert await blocklist.list_patterns(db, GUILD) == ["spam*"]
        jobs, count = await store.history(ALICE, offset=0, limit=5)
        assert count == 2 and [job.user_id for job in jobs] == [ALICE, ALICE]
        assert await store.count_by_user(["received"]) == {1001: 1, 1002: 1}
        assert [job.error_code for job in await store.unnotified(["failed"])] == ["nsfw"]
        actions = [e.action for e in await ledger.audit_entries(db, str(GUILD))]
        assert actions[:2] == ["voice_add", "blocklist_add"]
        assert len(await ledger.job_spending(db, str(GUILD), 0.0)) == 4
        assert len(await showcases.unposted(db, before=9e9)) == 1
        assert isinstance(await showcases.auto_due(db, since=0.0), list)


async def test_queue_waits_are_counted_once_whatever_order_their_transactions_commit(
    postgres_url: str,
) -> None:
    """PostgreSQL hands out event ids before commit: job 1's `submitting` event takes the lower id but
    commits after job 2's. A scrape between the two commits must not move past job 1's event for good
    (the id cursor did: its wait was never counted)."""
    import asyncpg

    from bot.store import metrics

    async with await Database.open(postgres_url) as db:
        store = JobStore(db)
        jobs = [await new_job(store, interaction_id=n, user_id=n) for n in (1, 2)]
        for job_id in jobs:
            await db.execute(
                "INSERT INTO job_events (job_id, from_state, to_state, at)"
                " VALUES (?, 'received', 'queued', 100)",
                (job_id,),
            )
        cursor = await metrics.events_cursor(db)
        first, second = await asyncpg.connect(db.target.url), await asyncpg.connect(db.target.url)
        try:
            submitted = (
                "INSERT INTO job_events (job_id, from_state, to_state, at)"
                " VALUES ($1, 'queued', 'submitting', $2)"
            )
            open_tx = first.transaction()
            await open_tx.start()
            await first.execute(submitted, jobs[0], 103.0)  # the lower id, still uncommitted
            await second.execute(submitted, jobs[1], 105.0)  # the higher id, committed at once
            cursor, waits_before = await metrics.queue_waits_after(db, cursor)
            await open_tx.commit()
            cursor, waits_after = await metrics.queue_waits_after(db, cursor)
        finally:
            await first.close()
            await second.close()
        assert sorted(waits_before + waits_after) == [3.0, 5.0]
        assert await metrics.queue_waits_after(db, cursor) == (cursor, [])
