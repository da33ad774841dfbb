"""What a new server owner, or a hostile one, gets wrong when scaling out, and the one polite line each
mistake ends in: a schema newer than the code, a password with URL-special characters, a fleet started
with another SHARD_COUNT, a database that cannot be migrated, NUL characters, unusable SQLite paths."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from PIL import Image
from rich.console import Console

from bot.check import check_database
from bot.config import ToolSettings
from bot.errors import InputRefused
from bot.fleet import FleetMismatch, ShardLeases, ShardPlan
from bot.jobs import ENDED
from bot.logs import log_handler
from bot.request import AttachmentRef, build_request
from bot.store import Database, postgres as store_postgres
from bot.store.db import DatabaseUnreachable, parse_database_url
from bot.store.fleet import FleetStore
from bot.store.jobs import JobStore
from bot.store.migrations import Migration, migrations
from bot.store.postgres import IDLE_IN_TRANSACTION_SECONDS, MIGRATION_LOCK, unreachable
from bot.terminal import EXIT_USAGE, AnimateOptions, animate
from tests import postgres
from tests.fakes.discord_server import FakeDiscord

# Trust authentication ignores the password; it stands for a real one that must never be shown.
PASSWORD = "p@ss/w:rd %20 x"
ENCODED = "p%40ss%2Fw%3Ard%20%2520%20x"


def with_password(url: str, password: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")


async def test_a_password_with_url_characters_connects_and_is_never_shown(
    postgres_url: str, tmp_path: Path
) -> None:
    for password in (ENCODED, "p@ss/w:rd x"):
        url = with_password(postgres_url, password)
        async with await Database.open(f"  {url}\n") as db:
            assert (await db.fetchone("SELECT 1"))[0] == 1  # type: ignore[index]
        target = parse_database_url(url)
        assert target.shown.startswith("postgresql://postgres:[redacted]@127.0.0.1")
        found = await check_database(ToolSettings(database_url=url))
        assert found.level in ("ok", "note") and "[redacted]@127.0.0.1" in found.line(), found
        for secret in ("p@ss", "ss/w", "%40", "rd x"):
            assert secret not in found.line()
        error = unreachable(target, OSError(f"refused for {target.password} ({password})"))
        assert "p@ss" not in str(error) and "%40" not in str(error), error
        stream = io.StringIO()
        handler = log_handler(ToolSettings(database_url=url), stream)
        record = logging.LogRecord(
            "t", logging.INFO, "", 0, "%s %s %s", (url, target.password, password), None
        )
        handler.handle(record)
        assert "p@ss" not in stream.getvalue() and "%40" not in stream.getvalue(), stream.getvalue()


async def test_a_closed_port_with_such_a_password_is_one_line_without_it() -> None:
    url = f"postgresql://bot:{PASSWORD}@127.0.0.1:9/kling"
    try:
        await Database.open(url)
    except DatabaseUnreachable as error:
        assert "cannot connect" in str(error) and "p@ss" not in str(error) and "\n" not in str(error)
    else:
        raise AssertionError("opened a closed port")


def run_bot(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot` with these settings; it must stop before it reaches Discord."""
    environment = {**os.environ, "DISCORD_TOKEN": "abc.def", "SUNRA_KEY": "sk-refusals-0123456789", **env}
    environment.pop("BOT_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bot"], cwd=folder, env=environment, capture_output=True, text=True, timeout=60
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


async def test_a_database_migrated_by_a_newer_bot_is_refused(database_url: str, tmp_path: Path) -> None:
    async with await Database.open(database_url) as db:
        await db.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')")
    with pytest.raises(DatabaseUnreachable, match="schema is newer than this version of the bot") as refused:
        await Database.open(database_url)
    assert "migration 9999 is applied" in str(refused.value) and "\n" not in str(refused.value)
    found = await check_database(ToolSettings(database_url=database_url))
    assert found.level == "fail" and "newer than this version of the bot (migration 9999" in found.text, found
    if database_url.startswith("sqlite:"):
        done = run_bot(tmp_path, DATABASE_URL=database_url)
        assert done.returncode == 1 and "schema is newer than this version" in one_line(done.stderr)


@contextlib.asynccontextmanager
async def database_as(**create: str) -> AsyncIterator[str]:
    """A new database made with these CREATE DATABASE options (ENCODING …); its URL. Dropped after."""
    name = f"kling_test_{secrets.token_hex(6)}"
    options = " ".join(f"{key} '{value}'" for key, value in create.items())
    admin = await asyncpg.connect(postgres.ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" {options}')
    finally:
        await admin.close()
    try:
        yield postgres.url_of(name)
    finally:
        admin = await asyncpg.connect(postgres.ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_a_database_that_cannot_hold_every_text_is_refused_in_one_line(
    postgres_url: str, tmp_path: Path
) -> None:
    async with database_as(ENCODING="SQL_ASCII", TEMPLATE="template0", LC_COLLATE="C", LC_CTYPE="C") as url:
        with pytest.raises(DatabaseUnreachable, match=r"encoded SQL_ASCII.*createdb --encoding=UTF8"):
            await Database.open(url)
        found = await check_database(ToolSettings(database_url=url))
        assert found.level == "fail" and "encoded SQL_ASCII" in found.text, found
        done = run_bot(tmp_path, DATABASE_URL=url)
        assert done.returncode == 1 and "encoded SQL_ASCII" in one_line(done.stderr)


async def test_a_user_without_the_create_privilege_is_refused_in_one_line(postgres_url: str) -> None:
    role = f"kling_limited_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres.ADMIN_URL)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        limited = postgres_url.replace("postgresql://postgres@", f"postgresql://{role}:pw-limited@")
        with pytest.raises(DatabaseUnreachable, match="may not change the database's tables") as refused:
            await Database.open(limited)
        assert "\n" not in str(refused.value) and "pw-limited" not in str(refused.value)
        # Migrated by its owner, the database is used by a role that only reads and writes rows.
        await (await Database.open(postgres_url)).close()
        owner = await asyncpg.connect(postgres_url)
        await owner.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'
        )
        await owner.execute(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        await owner.close()
        async with await Database.open(limited) as db:
            assert await db.fetchone("SELECT COUNT(*) FROM jobs") is not None
        owner = await asyncpg.connect(postgres_url)
        await owner.execute(f'DROP OWNED BY "{role}"')
        await owner.close()
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_a_failing_migration_leaves_nothing_half_applied(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = [
        *migrations("postgresql"),
        Migration(9998, "9998_broken.sql", "CREATE TABLE t (a INT); SELECT 1/0"),
    ]
    monkeypatch.setattr(store_postgres, "migrations", lambda engine: broken)
    with pytest.raises(DatabaseUnreachable, match=r"cannot apply 9998_broken.sql \(division by zero\)"):
        await Database.open(postgres_url)
    conn = await asyncpg.connect(postgres_url)
    try:  # one transaction: not even the first migrations stayed
        assert await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL")
    finally:
        await conn.close()


async def test_starters_together_migrate_once_and_a_stuck_transaction_is_ended(postgres_url: str) -> None:
    opened = await asyncio.gather(*(Database.open(postgres_url) for _ in range(6)))
    try:
        db = opened[0]
        rows = await db.fetchall("SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in rows] == [m.version for m in migrations("postgresql")]
        locks = await db.fetchone(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = ?"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (MIGRATION_LOCK,),
        )
        assert locks is not None and locks[0] == 0  # the migration lock went with its transaction
        shown = await db.fetchone("SHOW idle_in_transaction_session_timeout")
        assert shown is not None and shown[0] == f"{IDLE_IN_TRANSACTION_SECONDS}s"
    finally:
        await asyncio.gather(*(each.close() for each in opened))


def unusable_sqlite_paths(folder: Path) -> list[tuple[Path, str]]:
    (folder / "a-file").write_text("not a folder")
    (folder / "junk.sqlite3").write_bytes(b"not a SQLite database, only text " * 200)
    (folder / "a-folder").mkdir()
    return [
        (folder / "a-file" / "data" / "bot.sqlite3", "a part of its folder is a file"),
        (folder / "junk.sqlite3", "not a SQLite database"),
        (folder / "a-folder", "it is a folder"),
        (Path("/proc/kling-bot.sqlite3"), "cannot keep the bot's database there"),
    ]


async def test_an_unusable_sqlite_path_ends_in_one_line(tmp_path: Path) -> None:
    for path, why in unusable_sqlite_paths(tmp_path):
        with pytest.raises(DatabaseUnreachable) as refused:
            await Database.open(f"sqlite:///{path}")
        said = str(refused.value)
        assert why in said and said.startswith(f"{path}: cannot keep") and "\n" not in said, said
        assert said.endswith("set DATABASE_URL to a file in a folder the bot can write to")
    (tmp_path / "again").mkdir()
    path, why = unusable_sqlite_paths(tmp_path / "again")[1]
    done = run_bot(tmp_path, DATABASE_URL=f"sqlite:///{path}")
    assert done.returncode == 1 and why in one_line(done.stderr)


async def test_animate_exits_2_on_a_database_it_cannot_use(tmp_path: Path) -> None:
    image = tmp_path / "picture.png"
    Image.new("RGB", (800, 600), (40, 90, 160)).save(image)
    for path, why in unusable_sqlite_paths(tmp_path):
        settings = ToolSettings(
            database_url=f"sqlite:///{path}",
            sunra_key="sk-refusals-0123456789",
            sunra_api_url="http://127.0.0.1:9/v1",  # never reached: the database is opened first
        )
        buffer = io.StringIO()
        options = AnimateOptions(image, "waves roll in", out=tmp_path / "out.mp4")
        code = await animate(settings, options, Console(file=buffer, width=300))
        said = buffer.getvalue()
        assert code == EXIT_USAGE == 2 and why in said and "Traceback" not in said, said
        assert not (tmp_path / "out.mp4").exists()


async def test_nul_characters_never_reach_the_database(database_url: str) -> None:
    picture = AttachmentRef(
        url="https://cdn.discordapp.com/a.png", filename="a.png", size=10, content_type="image/png"
    )
    request = build_request(prompt="\x00a cat\x00 waves\x00", negative_prompt="blur\x00", image=picture)
    assert (request.prompt, request.negative_prompt) == ("a cat waves", "blur")
    with pytest.raises(InputRefused):
        build_request(prompt="\x00 \x00", image=picture)
    async with await Database.open(database_url) as db:  # and defensively, at the store
        await db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("k\x00", "v\x00w"))
        row = await db.fetchone("SELECT key, value FROM meta WHERE key LIKE 'k%'")
        assert row is not None and row[1] in ("vw", "v\x00w")
        if database_url.startswith("postgresql"):
            assert tuple(row) == ("k", "vw")


async def test_another_shard_count_or_none_beside_a_running_fleet_is_refused(database_url: str) -> None:
    async with await Database.open(database_url) as db:
        fleet = FleetStore(db)
        running = ShardLeases(fleet, ShardPlan(2, (0,)), lease_seconds=30.0)
        assert await running.acquire(asyncio.Event())
        for plan, said in (
            (ShardPlan(3, (1,)), "running on this database, and this process has SHARD_COUNT=3"),
            (ShardPlan(None, None), "this process has no SHARD_COUNT"),
        ):
            other = ShardLeases(fleet, plan, lease_seconds=30.0)
            with pytest.raises(FleetMismatch, match="a fleet of SHARD_COUNT=2 processes") as refused:
                await other.acquire(asyncio.Event())
            assert said in str(refused.value) and "\n" not in str(refused.value)
        # `kling-bot check` says so too, before anything is started.
        for count, said in ((3, "this process has SHARD_COUNT=3"), (None, "this process has no SHARD_COUNT")):
            found = await check_database(ToolSettings(database_url=database_url, shard_count=count))
            assert found.level == "fail" and said in found.text, found
        found = await check_database(ToolSettings(database_url=database_url, shard_count=2))
        assert found.level == "ok", found
        # Even past the early look, taking the leases asks again in the same transaction.
        with pytest.raises(FleetMismatch):
            await fleet.take_leases([1], 3, "late", now=time.time(), until=time.time() + 30)
        assert set(await fleet.leases()) == {0}  # it took none
        joining = ShardLeases(fleet, ShardPlan(2, (1,)), lease_seconds=30.0)  # the same count joins
        assert await joining.acquire(asyncio.Event())
        await joining.release()
        await running.release()
        # Once the fleet stopped, another SHARD_COUNT (or none) may start.
        assert await ShardLeases(fleet, ShardPlan(3, (0, 1, 2)), lease_seconds=30.0).acquire(asyncio.Event())


async def test_jobs_are_owned_by_their_shard_under_the_current_shard_count(database_url: str) -> None:
    guild = (7 << 22) | 5  # shard 7 % 2 = 1 under two shards, 7 % 4 = 3 under four
    async with await Database.open(database_url) as db:
        unsharded = JobStore(db)
        old = await queued(unsharded, 1, guild)  # recorded by a process without SHARD_COUNT: shard 0
        two = JobStore(db, shards=ShardPlan(2, (1,)))
        assert [job.id for job in await two.in_states(["queued"])] == []  # not yet its own
        assert await two.reckon_shards(ENDED) == 1
        assert [job.id for job in await two.in_states(["queued"])] == [old]
        four = JobStore(db, shards=ShardPlan(4, (3,)))  # the fleet restarted with four shards
        assert await four.reckon_shards(ENDED) == 1 and await four.reckon_shards(ENDED) == 0
        assert [job.id for job in await four.in_states(["queued"])] == [old]
        assert await JobStore(db, shards=ShardPlan(4, (0, 1, 2))).in_states(["queued"]) == []


async def queued(store: JobStore, interaction_id: int, guild_id: int) -> int:
    job_id, created = await store.create(
        interaction_id=interaction_id,
        guild_id=guild_id,
        channel_id=6,
        user_id=10,
        state="received",
        params={"prompt": "a cat waves"},
        upload_limit=10_485_760,
        lifetime_seconds=3600,
    )
    assert created and await store.transition(job_id, "received", "queued")
    return job_id


async def test_an_unsharded_bot_beside_a_running_fleet_stops_in_one_line_before_discord(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.sqlite3"
    async with await Database.open(path) as db:  # a live lease of a two-shard fleet
        await FleetStore(db).take_leases([0], 2, "fleet", now=time.time(), until=time.time() + 600)
    # Discord's address answers nothing: the refusal comes before the bot asks it anything.
    done = run_bot(tmp_path, DATABASE_URL=f"sqlite:///{path}", DISCORD_API_URL="http://127.0.0.1:9/api")
    assert done.returncode == 2, done.stderr
    assert "this process has no SHARD_COUNT" in one_line(done.stderr)


async def test_the_same_shard_ids_given_to_two_live_processes_are_refused(database_url: str) -> None:
    async with await Database.open(database_url) as db:
        fleet = FleetStore(db)
        first = ShardLeases(fleet, ShardPlan(2, (0, 1)), lease_seconds=1.0)
        assert await first.acquire(asyncio.Event())
        first.keep(on_lost=lambda: None)  # it lives: it renews
        second = ShardLeases(fleet, ShardPlan(2, (1,)), lease_seconds=1.0)
        started = asyncio.get_running_loop().time()
        with pytest.raises(FleetMismatch, match=r"shard\(s\) 1 are held by another live process") as refused:
            await second.acquire(asyncio.Event())
        assert "the same SHARD_IDS" in str(refused.value)
        assert 2.0 <= asyncio.get_running_loop().time() - started < 4.0
        assert {owner for owner, _ in (await fleet.leases()).values()} == {first.owner}
        await first.release()


async def test_a_second_process_without_shard_count_on_postgresql_is_refused(postgres_url: str) -> None:
    """Two processes without SHARD_COUNT on one PostgreSQL database would each follow every job: the
    first holds the whole bot's lease, the second is refused in one sentence, and so is a fleet."""
    async with await Database.open(postgres_url) as db:
        fleet = FleetStore(db)
        first = ShardLeases(fleet, ShardPlan(None, None), lease_seconds=1.0)
        assert await first.acquire(asyncio.Event())
        first.keep(on_lost=lambda: None)  # it lives: it renews
        second = ShardLeases(fleet, ShardPlan(None, None), lease_seconds=1.0)
        with pytest.raises(FleetMismatch, match=r"another process without SHARD_COUNT is running"):
            await second.acquire(asyncio.Event())
        with pytest.raises(
            FleetMismatch, match=r"a process without SHARD_COUNT is running .*\(SHARD_COUNT=2\)"
        ):
            await ShardLeases(fleet, ShardPlan(2, (1,)), lease_seconds=1.0).acquire(asyncio.Event())
        assert (await check_database(ToolSettings(database_url=postgres_url))).level != "fail"
        found = await check_database(ToolSettings(database_url=postgres_url, shard_count=2))
        assert found.level == "fail" and "a process without SHARD_COUNT is running" in found.text, found
        assert {owner for owner, _ in (await fleet.leases()).values()} == {first.owner}
        await first.release()
        # Given back at a clean stop: the next one takes it at once.
        after = ShardLeases(fleet, ShardPlan(None, None), lease_seconds=1.0)
        started = asyncio.get_running_loop().time()
        assert await after.acquire(asyncio.Event())
        assert asyncio.get_running_loop().time() - started < 0.5
        await after.release()


async def test_a_process_without_shard_count_on_sqlite_takes_no_lease(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "bot.sqlite3") as db:
        leases = ShardLeases(FleetStore(db), ShardPlan(None, None), lease_seconds=1.0)
        assert await leases.acquire(asyncio.Event())
        leases.keep(on_lost=lambda: None)
        assert await FleetStore(db).leases() == {}
        await leases.release()


async def test_a_database_lost_while_the_lease_is_awaited_ends_the_start_in_one_line(
    postgres_url: str, tmp_path: Path
) -> None:
    """A restart waits for a lease (up to twice SHARD_LEASE_SECONDS): the database going away meanwhile
    ends the process with exit 1 and one sentence naming the server, never a traceback."""
    async with await Database.open(postgres_url) as db:  # shard 0's lease, held by a live process
        await FleetStore(db).take_leases([0], 2, "alive", now=time.time(), until=time.time() + 600)
    name = postgres_url.rsplit("/", 1)[1]
    async with FakeDiscord() as discord:
        environment = {
            **{key: value for key, value in os.environ.items() if not key.startswith(("DISCORD_", "SUNRA_"))},
            "DISCORD_TOKEN": discord.token,
            "DISCORD_API_URL": discord.api_url,
            "DISCORD_GATEWAY_URL": discord.gateway_url,
            "SUNRA_KEY": "sk-refusals-0123456789",
            "DATABASE_URL": postgres_url,
            "SHARD_COUNT": "2",
            "SHARD_IDS": "0",
            "SHARD_LEASE_SECONDS": "60",
        }
        environment.pop("BOT_CONFIG", None)
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=environment,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert bot.stdout is not None
        said: list[str] = []
        try:
            async with asyncio.timeout(30):
                while "waiting" not in (line := (await bot.stdout.readline()).decode()):
                    assert line, "".join(said)
                    said.append(line)
            admin = await asyncpg.connect(postgres.url_of("postgres"))
            try:
                await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
                )
                async with asyncio.timeout(30):
                    rest = (await bot.stdout.read()).decode()
                    await bot.wait()
            finally:
                await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
                await admin.close()
        finally:
            if bot.returncode is None:
                bot.kill()
                await bot.wait()
    assert bot.returncode == 1, rest
    assert "Traceback" not in rest, rest
    said = f"CRITICAL bot: database: postgresql://[redacted]@127.0.0.1:5432/{name}: cannot connect"
    assert said in rest, rest
