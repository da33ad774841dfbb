"""SQL for credits: the append-only ledger, its sums and settlements, grants and the admin audit.

Every quota statement of the bot is in this module (tables from migration 0002), except the per-server
rule rows (settings, role allowances, blocks), which are in bot/store/server_rules.py. Balances are sums over
`quota_ledger`; nothing here keeps a running counter. Functions that take a `Writer` must run inside one
`Database.write()` transaction together with the reads they depend on, which is what makes a reservation
atomic; functions that take a `Reader` accept the database or an open transaction.

Servers are keyed by `guild_key()`: the id as text, or 'dm' for direct messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bot.store.db import Database, Row
from bot.store.sql import Params

DM_KEY = "dm"
# The two ledger kinds that settle a job's reservation.
Settlement = Literal["commit", "refund"]


class Reader(Protocol):
    async def fetchone(self, sql: str, params: Params = ...) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ...) -> list[Row]: ...


class Writer(Reader, Protocol):
    """An open `Database.write()` transaction."""

    async def execute(self, sql: str, params: Params = ...) -> int: ...

    async def insert(self, sql: str, params: Params = ...) -> int: ...


def guild_key(guild_id: int | None) -> str:
    return DM_KEY if guild_id is None else str(guild_id)


# ----- a member's figures in a server -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberFigures:
    allowance_used: int  # allowance taken in the period (jobs and admin removals), net of refunds
    job_credits: int  # credits reserved for jobs in the period, net of refunds
    bonus: int  # the bonus pool now; it never resets
    last_reserve_at: float | None
    server_credits: int  # the whole server's job credits in the period (0 unless asked for)
    usd_micros_today: int  # every server's spend in the UTC day (0 unless asked for)


async def member_figures(
    db: Reader,
    guild: str,
    user_id: int,
    period: tuple[float, float],
    *,
    server_total: bool = False,
    utc_day: tuple[float, float] | None = None,
) -> MemberFigures:
    """A member's sums for the period [start, end), and the totals the caps need, in one statement:
    each statement costs a trip to aiosqlite's thread, which is most of a quota check's time. The CASE
    skips a total nobody asked for (SQLite runs a scalar subquery only when its branch is taken)."""
    found = await _figures(db, guild, [user_id], period, server_total=server_total, utc_day=utc_day)
    return found[user_id]


async def members_figures(
    db: Reader, guild: str, user_ids: Sequence[int], period: tuple[float, float]
) -> dict[int, MemberFigures]:
    """`member_figures` (without the totals) of several members of one server at once, in one
    statement: a crowd's quota checks are answered together (bot/quota/spending.py)."""
    return await _figures(db, guild, user_ids, period, server_total=False, utc_day=None)


async def _figures(
    db: Reader,
    guild: str,
    user_ids: Sequence[int],
    period: tuple[float, float],
    *,
    server_total: bool,
    utc_day: tuple[float, float] | None,
) -> dict[int, MemberFigures]:
    day_start, day_end = utc_day or (0.0, 0.0)
    rows = await db.fetchall(
        "SELECT m.value AS user_id,"
        " (SELECT COALESCE(-SUM(allowance_delta), 0) FROM quota_ledger"
        "   WHERE guild_id = :guild AND user_id = m.value AND charged_at >= :start AND charged_at < :end)"
        "   AS allowance_used,"
        " (SELECT COALESCE(-SUM(allowance_delta + bonus_delta), 0) FROM quota_ledger"
        "   WHERE guild_id = :guild AND user_id = m.value AND charged_at >= :start AND charged_at < :end"
        "   AND kind IN ('reserve', 'refund', 'compensate')) AS job_credits,"
        " (SELECT COALESCE(SUM(bonus_delta), 0) FROM quota_ledger"
        "   WHERE guild_id = :guild AND user_id = m.value AND bonus_delta != 0) AS bonus,"
        " (SELECT MAX(charged_at) FROM quota_ledger"
        "   WHERE guild_id = :guild AND user_id = m.value AND kind = 'reserve') AS last_reserve_at,"
        " CASE WHEN :server_total THEN"
        "   (SELECT COALESCE(-SUM(allowance_delta + bonus_delta), 0) FROM quota_ledger"
        "     WHERE guild_id = :guild AND charged_at >= :start AND charged_at < :end"
        "     AND kind IN ('reserve', 'refund', 'compensate'))"
        "   ELSE 0 END AS server_credits,"
        " CASE WHEN :with_day THEN"
        "   (SELECT COALESCE(SUM(usd_micros), 0) FROM quota_ledger"
        "     WHERE charged_at >= :day_start AND charged_at < :day_end)"
        "   ELSE 0 END AS usd_micros_today"
        " FROM json_each(:users) AS m",
        {
            "guild": guild,
            "users": json.dumps([str(user_id) for user_id in user_ids]),
            "start": period[0],
            "end": period[1],
            "server_total": server_total,
            "day_start": day_start,
            "day_end": day_end,
            "with_day": utc_day is not None,
        },
    )
    return {
        int(row["user_id"]): MemberFigures(
            allowance_used=int(row["allowance_used"]),
            job_credits=int(row["job_credits"]),
            bonus=int(row["bonus"]),
            last_reserve_at=row["last_reserve_at"],
            server_credits=int(row["server_credits"]),
            usd_micros_today=int(row["usd_micros_today"]),
        )
        for row in rows
    }


async def spend_totals(
    db: Reader, guild: str, period: tuple[float, float], utc_day: tuple[float, float] | None
) -> tuple[int, int]:
    """(the server's job credits in the period, every server's USD micros in the UTC day, or 0 when
    `utc_day` is None): what `member_figures` sums with `server_total` and `utc_day`, without the
    member's part, so concurrent quota checks can share it."""
    figures = await member_figures(db, guild, 0, period, server_total=True, utc_day=utc_day)
    return figures.server_credits, figures.usd_micros_today


# ----- reservations and their settlement ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReservationRow:
    job_id: int
    guild: str
    user_id: int
    credits: int
    from_allowance: int
    from_bonus: int
    usd_micros: int
    charged_at: float
    settled: str | None  # 'commit', 'refund' or None while open


async def find_reservation(db: Reader, job_id: int) -> ReservationRow | None:
    row = await db.fetchone(
        "SELECT r.*, (SELECT s.kind FROM quota_ledger s WHERE s.job_id = r.job_id"
        "   AND s.kind IN ('commit', 'refund')) AS settled"
        " FROM quota_ledger r WHERE r.job_id = ? AND r.kind = 'reserve'",
        (job_id,),
    )
    if row is None:
        return None
    return ReservationRow(
        job_id=int(row["job_id"]),
        guild=row["guild_id"],
        user_id=int(row["user_id"]),
        credits=int(row["credits"]),
        from_allowance=-int(row["allowance_delta"]),
        from_bonus=-int(row["bonus_delta"]),
        usd_micros=int(row["usd_micros"]),
        charged_at=float(row["charged_at"]),
        settled=row["settled"],
    )


async def set_job_cost(tx: Writer, job_id: int, credits: int) -> bool:
    """Writes the price on the job's row; False when there is no such job."""
    return await tx.execute("UPDATE jobs SET cost_credits = ? WHERE id = ?", (credits, job_id)) == 1


async def record_reservation(
    tx: Writer,
    *,
    job_id: int,
    guild: str,
    user_id: int,
    from_allowance: int,
    from_bonus: int,
    usd_micros: int,
    at: float,
) -> None:
    await tx.insert(
        "INSERT INTO quota_ledger (guild_id, user_id, kind, job_id, allowance_delta, bonus_delta, credits,"
        " usd_micros, charged_at, at) VALUES (?, ?, 'reserve', ?, ?, ?, ?, ?, ?, ?)",
        (
            guild,
            str(user_id),
            job_id,
            -from_allowance,
            -from_bonus,
            from_allowance + from_bonus,
            usd_micros,
            at,
            at,
        ),
    )


# A settlement copies its reservation: a refund negates the deltas and the spend, a commit moves nothing
# (the credits were counted as spent when reserved). A refund of a job the API may still bill
# (jobs.may_be_billed) gives the credits back but keeps the spend against the operator's USD cap.
# NOT EXISTS says what is meant; the unique index quota_ledger_settle_once guarantees it even against
# another process.
_SETTLE_SELECT = (
    "INSERT INTO quota_ledger (guild_id, user_id, kind, job_id, allowance_delta, bonus_delta, credits,"
    " usd_micros, charged_at, at, reason)"
    " SELECT r.guild_id, r.user_id, :kind, r.job_id, -r.allowance_delta * :undo, -r.bonus_delta * :undo,"
    " r.credits,"
    " -r.usd_micros * :undo * (1 - COALESCE((SELECT b.may_be_billed FROM jobs b WHERE b.id = r.job_id), 0)),"
    " r.charged_at, :at, :reason"
    " FROM quota_ledger r {join}"
    " WHERE r.kind = 'reserve' AND {which}"
    " AND NOT EXISTS (SELECT 1 FROM quota_ledger s"
    "   WHERE s.job_id = r.job_id AND s.kind IN ('commit', 'refund'))"
    " ON CONFLICT DO NOTHING"
)
_SETTLE_ONE = _SETTLE_SELECT.format(join="", which="r.job_id = :job")
_SETTLE_ENDED = _SETTLE_SELECT.format(
    join="JOIN jobs j ON j.id = r.job_id", which="j.state IN (SELECT value FROM json_each(:states))"
)


def _settle_params(kind: Settlement, at: float, reason: str | None) -> dict[str, Any]:
    return {"kind": kind, "undo": 1 if kind == "refund" else 0, "at": at, "reason": reason}


async def settle_job(db: Database, job_id: int, kind: Settlement, *, at: float, reason: str | None) -> bool:
    """Commits or refunds one job's open reservation; False when it has none or it is already settled."""
    return await db.execute(_SETTLE_ONE, {**_settle_params(kind, at, reason), "job": job_id}) == 1


async def settle(
    db: Database, *, refund_states: Sequence[str], commit_states: Sequence[str], at: float
) -> int:
    """Settles every open reservation whose job is in one of the given states; returns how many."""
    plan: tuple[tuple[Settlement, Sequence[str], str | None], ...] = (
        ("refund", refund_states, "job ended without a video"),
        ("commit", commit_states, None),
    )
    settled = 0
    async with db.write() as tx:
        for kind, states, reason in plan:
            params = {**_settle_params(kind, at, reason), "states": json.dumps(list(states))}
            settled += await tx.execute(_SETTLE_ENDED, params)
    return settled


async def open_reservations(db: Reader) -> list[int]:
    """Job ids whose reservation is neither committed nor refunded."""
    rows = await db.fetchall(
        "SELECT r.job_id FROM quota_ledger r WHERE r.kind = 'reserve' AND NOT EXISTS"
        " (SELECT 1 FROM quota_ledger s WHERE s.job_id = r.job_id AND s.kind IN ('commit', 'refund'))"
        " ORDER BY r.job_id"
    )
    return [int(row["job_id"]) for row in rows]


# ----- admin changes --------------------------------------------------------------------------------------


async def record_adjustment(
    tx: Writer,
    *,
    kind: Literal["grant", "adjust"],
    guild: str,
    user_id: int,
    allowance_delta: int,
    bonus_delta: int,
    credits: int,
    actor_id: int,
    reason: str | None,
    at: float,
) -> None:
    await tx.insert(
        "INSERT INTO quota_ledger (guild_id, user_id, kind, allowance_delta, bonus_delta, credits,"
        " charged_at, at, actor_id, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (guild, str(user_id), kind, allowance_delta, bonus_delta, credits, at, at, str(actor_id), reason),
    )


async def add_granted(tx: Writer, guild: str, period_start: float, credits: int, *, limit: int) -> bool:
    """Adds `credits` to what the server's admins granted in the operator's period starting at
    `period_start`, only if the total stays within `limit`; False (nothing changed) otherwise. One
    statement: the conditional upsert locks the server's row, so concurrent grants (other processes
    included) cannot together pass the limit."""
    if credits > limit:
        return False
    changed = await tx.execute(
        "INSERT INTO quota_grant_totals (guild_id, period_start, credits) VALUES (?, ?, ?)"
        " ON CONFLICT (guild_id, period_start) DO UPDATE"
        " SET credits = quota_grant_totals.credits + excluded.credits"
        " WHERE quota_grant_totals.credits + excluded.credits <= ?",
        (guild, period_start, credits, limit),
    )
    return changed == 1


async def granted(db: Reader, guild: str, period_start: float) -> int:
    """Credits the server's admins granted in the operator's period starting at `period_start`."""
    row = await db.fetchone(
        "SELECT credits FROM quota_grant_totals WHERE guild_id = ? AND period_start = ?",
        (guild, period_start),
    )
    return 0 if row is None else int(row["credits"])


async def record_audit(
    tx: Writer,
    *,
    guild: str,
    actor_id: int,
    action: str,
    target_id: int | None,
    details: Mapping[str, Any],
    at: float,
) -> None:
    await tx.insert(
        "INSERT INTO quota_audit (guild_id, actor_id, action, target_id, details, at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            guild,
            str(actor_id),
            action,
            None if target_id is None else str(target_id),
            json.dumps(dict(details), sort_keys=True, separators=(",", ":")),
            at,
        ),
    )


async def audit(
    tx: Writer, guild_id: int, actor_id: int, action: str, details: Mapping[str, Any], at: float
) -> None:
    """An admin's change to a server's lists (voices, block list), which names no member."""
    await record_audit(
        tx, guild=str(guild_id), actor_id=actor_id, action=action, target_id=None, details=details, at=at
    )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    guild: str
    actor_id: int
    action: str
    target_id: int | None
    details: dict[str, Any]
    at: float


async def audit_entries(db: Reader, guild: str, limit: int = 50) -> list[AuditEntry]:
    """The server's latest admin actions, newest first."""
    rows = await db.fetchall(
        "SELECT * FROM quota_audit WHERE guild_id = ? ORDER BY id DESC LIMIT ?", (guild, limit)
    )
    return [
        AuditEntry(
            guild=row["guild_id"],
            actor_id=int(row["actor_id"]),
            action=row["action"],
            target_id=None if row["target_id"] is None else int(row["target_id"]),
            details=json.loads(row["details"]),
            at=float(row["at"]),
        )
        for row in rows
    ]


# ----- reports --------------------------------------------------------------------------------------------


async def job_counts(
    db: Reader, guild_id: int | None, user_id: int, *, waiting: Sequence[str], in_flight: Sequence[str]
) -> tuple[int, int]:
    """(jobs waiting in the bot's queue, jobs at the API) for a member, from the jobs table."""
    row = await db.fetchone(
        "SELECT"
        " COUNT(*) FILTER (WHERE state IN (SELECT value FROM json_each(:waiting))) AS waiting,"
        " COUNT(*) FILTER (WHERE state IN (SELECT value FROM json_each(:in_flight))) AS in_flight"
        " FROM jobs WHERE user_id = :user AND guild_id IS NOT DISTINCT FROM :guild",
        {
            "waiting": json.dumps(list(waiting)),
            "in_flight": json.dumps(list(in_flight)),
            "user": str(user_id),
            "guild": None if guild_id is None else str(guild_id),
        },
    )
    assert row is not None
    return int(row["waiting"]), int(row["in_flight"])


@dataclass(frozen=True, slots=True)
class JobSpend:
    job_id: int
    user_id: int
    charged_at: float
    credits: int  # net of a refund: 0 once refunded
    usd_micros: int
    refunded: bool


async def job_spending(db: Reader, guild: str, since: float, user_id: int | None = None) -> list[JobSpend]:
    """Each job charged in the server since `since` (optionally one member's), oldest first."""
    rows = await db.fetchall(
        "SELECT job_id, user_id, MIN(charged_at) AS charged_at,"
        " -SUM(allowance_delta + bonus_delta) AS credits, SUM(usd_micros) AS usd_micros,"
        " COUNT(*) FILTER (WHERE kind IN ('refund', 'compensate')) AS refunded"
        " FROM quota_ledger WHERE guild_id = :guild AND charged_at >= :since"
        " AND kind IN ('reserve', 'refund', 'compensate')"
        " AND (CAST(:user AS TEXT) IS NULL OR user_id = :user)"
        " GROUP BY job_id, user_id ORDER BY charged_at, job_id",
        {"guild": guild, "since": since, "user": None if user_id is None else str(user_id)},
    )
    return [
        JobSpend(
            job_id=int(row["job_id"]),
            user_id=int(row["user_id"]),
            charged_at=float(row["charged_at"]),
            credits=int(row["credits"]),
            usd_micros=int(row["usd_micros"]),
            refunded=bool(row["refunded"]),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    guild: str
    user_id: int
    kind: str
    job_id: int | None
    allowance_delta: int
    bonus_delta: int
    credits: int
    usd_micros: int
    charged_at: float
    at: float
    reason: str | None


async def ledger_entries(db: Reader, *, job_id: int | None = None) -> list[LedgerEntry]:
    """The raw ledger, oldest first (all of it, or one job's rows): for audits, tests and exports."""
    rows = await db.fetchall(
        "SELECT * FROM quota_ledger WHERE (CAST(:job AS BIGINT) IS NULL OR job_id = :job) ORDER BY id",
        {"job": job_id},
    )
    return [
        LedgerEntry(
            id=int(row["id"]),
            guild=row["guild_id"],
            user_id=int(row["user_id"]),
            kind=row["kind"],
            job_id=row["job_id"],
            allowance_delta=int(row["allowance_delta"]),
            bonus_delta=int(row["bonus_delta"]),
            credits=int(row["credits"]),
            usd_micros=int(row["usd_micros"]),
            charged_at=float(row["charged_at"]),
            at=float(row["at"]),
            reason=row["reason"],
        )
        for row in rows
    ]
