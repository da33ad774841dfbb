"""Fixtures shared by the test files: `database_url` runs a test once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store.db import redact_url
from tests import postgres

ENGINES = ("sqlite", "postgresql")


def pytest_report_header(config: pytest.Config) -> str:
    why, where = postgres.unavailable(), redact_url(postgres.ADMIN_URL)
    if why is None:
        return f"PostgreSQL: {where} answers; the engine tests run on SQLite and PostgreSQL"
    return f"PostgreSQL: SKIPPED, no server answers at {where} ({why})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    why = postgres.unavailable()
    if why is not None:
        where = redact_url(postgres.ADMIN_URL)
        terminalreporter.write_line(
            f"PostgreSQL tests SKIPPED: no server answers at {where} ({why})", yellow=True
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    postgres.drop_kept()


def skip_without_postgres() -> None:
    why = postgres.unavailable()
    if why is not None:
        pytest.skip(f"no PostgreSQL server answers ({why})")


@pytest.fixture(params=ENGINES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A DATABASE_URL of a new, empty database: a SQLite file in tmp_path, or a PostgreSQL database made
    for this test alone and dropped after it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.sqlite3'}"
        return
    skip_without_postgres()
    async with postgres.fresh_database() as url:
        yield url


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for this test alone (the test is skipped without a server)."""
    skip_without_postgres()
    async with postgres.fresh_database() as url:
        yield url
