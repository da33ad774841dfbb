"""`kling-bot migrate-db`: a SQLite database with every kind of row, copied into PostgreSQL exactly."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot import cli
from bot.quota.rules import JobOptions, QuotaSettings
from bot.quota.spending import QuotaService
from bot.store import Database, blocklist, ledger, showcases, voices
from bot.store.copy import CopyRefused, copy_sqlite_to_postgresql
from bot.store.jobs import JobStore

NOW = 1_741_791_600.0
GUILD, ALICE, BOB, ADMIN = 111, 1001, 1002, 9


async def fill(db: Database) -> None:
    """Jobs in several states, a ledger with every kind of row, showcases with votes, voices, a block
    list, settings, an audit and meta."""
    store = JobStore(db, clock=lambda: NOW)
    quota = QuotaService(db, QuotaSettings(daily_credits=40), clock=lambda: NOW)
    await quota.grant(guild_id=GUILD, actor_id=ADMIN, user_id=BOB, credits=7, reason="contest")
    await quota.set_cap(guild_id=GUILD, actor_id=ADMIN, credits=500)
    jobs = []
    for number, user in enumerate([ALICE, BOB, ALICE, BOB], start=1):
        job_id, _ = await store.create(
            interaction_id=9_000_000_000_000_000_000 + number,  # a snowflake past 64-bit signed ints
            guild_id=GUILD,
            channel_id=5,
            user_id=user,
            state="received",
            params={"prompt": f"a cat waves ({number}) – ünïcode"},
            upload_limit=10_485_760,
            lifetime_seconds=3600,
        )
        await quota.reserve(
            job_id=job_id, guild_id=GUILD, user_id=user, role_ids=(), options=JobOptions(5, True, 0)
        )
        jobs.append(job_id)
    await store.transition(
        jobs[0], "received", "delivered", video_url="https://v/1.mp4", finished_at=NOW + 0.25
    )
    await quota.commit(jobs[0])
    await store.transition(jobs[1], "received", "failed", error_code="nsfw", retryable=False)
    await quota.refund(jobs[1], "failed")
    await store.update(jobs[2], progress_message_id=1_300_000_000_000_000_001)
    shown, _ = await showcases.create(
        db, guild_id=GUILD, job_id=jobs[0], author_id=ALICE, shared_by=str(ALICE), prompt="p", settings="5 s",
        at=NOW,
    )  # fmt: skip
    for voter in (ALICE, BOB, ADMIN):
        await showcases.toggle_vote(db, shown.id, voter, at=NOW)
    await voices.put_voice(db, GUILD, name="Narrator", voice_id="v-1", actor_id=ADMIN, at=NOW)
    await blocklist.add_pattern(db, GUILD, pattern="spam*", actor_id=ADMIN, at=NOW)
    await showcases.set_opt_out(db, GUILD, BOB, True, at=NOW)
    await store.set_meta("commands_hash", "abc")


TABLES = (
    "jobs", "job_events", "meta", "quota_ledger", "quota_guild_settings", "quota_role_allowances",
    "quota_blocks", "quota_audit", "voices", "prompt_blocklist", "showcase_servers", "showcase_optouts",
    "showcases", "showcase_votes",
)  # fmt: skip


async def contents(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    found = {}
    for table in TABLES:
        rows = await db.fetchall(f"SELECT * FROM {table}")
        # PostgreSQL's events also carry the transaction that wrote them (migration 0014), not copied.
        found[table] = sorted(
            (
                tuple(value for key, value in zip(row.keys(), row, strict=True) if key != "xact")
                for row in rows
            ),
            key=repr,
        )
    return found


async def make_source(tmp_path: Path) -> Path:
    path = tmp_path / "bot.sqlite3"
    async with await Database.open(path) as db:
        await fill(db)
        # A deleted row: its id was handed out, and PostgreSQL must never hand it out again.
        await db.execute("DELETE FROM job_events WHERE id = (SELECT MAX(id) FROM job_events)")
    return path


async def test_every_table_and_the_ledger_arrive_exactly(tmp_path: Path, postgres_url: str) -> None:
    source = await make_source(tmp_path)
    async with await Database.open(source) as db:
        before = await contents(db)
        ledger_before = await ledger.ledger_entries(db)
        top_event = (await db.fetchone("SELECT seq FROM sqlite_sequence WHERE name = 'job_events'"))[0]  # type: ignore[index]
    report = await copy_sqlite_to_postgresql(source, postgres_url)
    assert report.tables["quota_ledger"] == len(ledger_before) and report.tables["showcase_votes"] == 3
    async with await Database.open(postgres_url) as db:
        assert await contents(db) == before
        assert await ledger.ledger_entries(db) == ledger_before
        votes = await db.fetchone("SELECT vote_count FROM showcases")
        assert votes is not None and votes[0] == 3  # copied, not counted again by the trigger
        # New rows get ids past every id SQLite handed out, the deleted one included.
        async with db.write() as tx:
            event = await tx.insert(
                "INSERT INTO job_events (job_id, from_state, to_state, at) VALUES (1, NULL, 'x', 0)"
            )
        assert event == top_event + 1
        job_id, created = await JobStore(db).create(
            interaction_id=5, guild_id=GUILD, channel_id=5, user_id=ALICE, state="received", params={},
            upload_limit=1, lifetime_seconds=1,
        )  # fmt: skip
        assert created and job_id == len(before["jobs"]) + 1
        quota = QuotaService(db, QuotaSettings(daily_credits=40), clock=lambda: NOW)
        balance = await quota.balance(guild_id=GUILD, user_id=BOB, role_ids=())
        assert (balance.allowance_left, balance.bonus) == (40 - 10, 7)  # one job charged, one refunded


async def test_refuses_while_a_bot_has_the_source_open(tmp_path: Path, postgres_url: str) -> None:
    source = await make_source(tmp_path)
    async with await Database.open(source):  # the bot, running
        with pytest.raises(CopyRefused, match="in use"):
            await copy_sqlite_to_postgresql(source, postgres_url)
    async with await Database.open(postgres_url) as db:
        assert (await db.fetchall("SELECT id FROM jobs")) == []


async def test_refuses_a_target_that_holds_rows(tmp_path: Path, postgres_url: str) -> None:
    source = await make_source(tmp_path)
    await copy_sqlite_to_postgresql(source, postgres_url)
    with pytest.raises(CopyRefused, match="not empty"):
        await copy_sqlite_to_postgresql(source, postgres_url)


async def test_refuses_a_source_that_lacks_migrations(tmp_path: Path, postgres_url: str) -> None:
    source = await make_source(tmp_path)
    conn = sqlite3.connect(source)
    with conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 7")
    conn.close()
    with pytest.raises(CopyRefused, match=r"0007_cancel_reason\.sql"):
        await copy_sqlite_to_postgresql(source, postgres_url)


def test_the_command_copies_and_never_prints_the_password(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    source = asyncio.run(make_source(tmp_path))
    monkeypatch.chdir(tmp_path)  # no config/bot.toml here
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{source}")
    # Trust authentication ignores the password; it stands for a real one that must never be shown.
    with_password = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:s3cr3t-pw@")
    assert cli.main(["migrate-db", "--to", with_password], serve=lambda: None) == 0
    again = cli.main(["migrate-db", "--to", with_password], serve=lambda: None)
    out = capsys.readouterr()
    assert again == 1 and "not empty" in out.err
    assert "quota_ledger:" in out.out and "Copied" in out.out
    assert "s3cr3t-pw" not in out.out + out.err and "postgres:[redacted]@" in out.out


def test_text_with_nul_characters_is_copied_without_them_and_counted(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    source = asyncio.run(make_source(tmp_path))
    conn = sqlite3.connect(source)
    with conn:  # SQLite holds NUL in text; PostgreSQL's text cannot
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)", [("note", "a\x00b"), ("other\x00", "c\x00\x00d")]
        )
    conn.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{source}")
    assert cli.main(["migrate-db", "--to", postgres_url], serve=lambda: None) == 0
    out = capsys.readouterr().out
    assert "2 of them held NUL characters, copied without them" in out, out

    async def copied() -> list[tuple[Any, ...]]:
        async with await Database.open(postgres_url) as db:
            rows = await db.fetchall("SELECT key, value FROM meta WHERE key IN ('note', 'other')")
            return sorted(tuple(row) for row in rows)

    assert asyncio.run(copied()) == [("note", "ab"), ("other", "cd")]


def test_a_row_the_target_refuses_ends_the_copy_in_one_line(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    source = asyncio.run(make_source(tmp_path))
    conn = sqlite3.connect(source)
    with conn:  # without its NUL, the second key is the first one again
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [("twice", "a"), ("twi\x00ce", "b")])
    conn.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{source}")
    assert cli.main(["migrate-db", "--to", postgres_url], serve=lambda: None) == 1
    err = capsys.readouterr().err
    assert err.startswith("kling-bot migrate-db: meta: ") and "nothing was copied" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
