"""A paid video that could not be fetched (issue 19, item 5): the job's end and the member's credits back,
in one transaction, by a compensating ledger entry (the ledger stays append-only).

The reservation is settled as a commit first if it is still open (sunra made and billed the video), then
a ``compensate`` row, linked to the job, gives the member exactly what the reservation took, to the period
it was taken from (``charged_at``): the member's and the server's sums (quota caps, /quota's recent
spending) count it with the job's reserve, so the job costs nothing there. Its USD stays counted against
the operator's daily cap, since sunra billed it. The guarded UPDATE of the job makes the whole step
happen once, whoever replays it, and the unique index quota_ledger_compensate_once (migration 0012)
allows one compensation per job whatever the code does.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.store.db import Database

UNDELIVERABLE = "undeliverable"

_COMMIT_IF_OPEN = (
    "INSERT INTO quota_ledger (guild_id, user_id, kind, job_id, allowance_delta, bonus_delta, credits,"
    " usd_micros, charged_at, at, reason)"
    " SELECT r.guild_id, r.user_id, 'commit', r.job_id, 0, 0, r.credits, 0, r.charged_at, ?, NULL"
    " FROM quota_ledger r WHERE r.kind = 'reserve' AND r.job_id = ?"
    " AND NOT EXISTS (SELECT 1 FROM quota_ledger s"
    "   WHERE s.job_id = r.job_id AND s.kind IN ('commit', 'refund'))"
    " ON CONFLICT DO NOTHING"
)
# Only after a commit: a job refunded already (it cannot be, but the ledger says what is true) gets nothing.
_COMPENSATE = (
    "INSERT INTO quota_ledger (guild_id, user_id, kind, job_id, allowance_delta, bonus_delta, credits,"
    " usd_micros, charged_at, at, actor_id, reason)"
    " SELECT r.guild_id, r.user_id, 'compensate', r.job_id, -r.allowance_delta, -r.bonus_delta, r.credits, 0,"
    " r.charged_at, ?, NULL, ?"
    " FROM quota_ledger r WHERE r.kind = 'reserve' AND r.job_id = ?"
    " AND EXISTS (SELECT 1 FROM quota_ledger c WHERE c.job_id = r.job_id AND c.kind = 'commit')"
    " ON CONFLICT DO NOTHING"
)


def compensation_reason(job_id: int) -> str:
    """The ``reason`` of a job's compensating entry, as reports show it (the row also carries its job_id)."""
    return f"job {job_id}: the paid video could not be fetched; credits given back"


async def end_undeliverable(
    db: Database,
    job_id: int,
    *,
    from_states: Iterable[str],
    code: str,
    message: str,
    at: float,
) -> bool:
    """Ends the job as ``undeliverable`` and gives its credits back; False when it had moved on."""
    allowed = tuple(from_states)
    placeholders = ", ".join("?" for _ in allowed)
    async with db.write() as tx:
        current = await tx.fetchone("SELECT state FROM jobs WHERE id = ?", (job_id,))
        changed = await tx.execute(
            "UPDATE jobs SET state = ?, updated_at = ?, error_code = ?, error_message = ?, retryable = 1,"
            f" finished_at = ? WHERE id = ? AND state IN ({placeholders})",
            (UNDELIVERABLE, at, code, message, at, job_id, *allowed),
        )
        if changed != 1:
            return False
        await tx.execute(
            "INSERT INTO job_events (job_id, from_state, to_state, at, detail) VALUES (?, ?, ?, ?, ?)",
            (job_id, current["state"] if current else None, UNDELIVERABLE, at, code),
        )
        await tx.execute(_COMMIT_IF_OPEN, (at, job_id))
        await tx.execute(_COMPENSATE, (at, compensation_reason(job_id), job_id))
    return True
