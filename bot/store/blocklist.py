"""SQL for the `prompt_blocklist` table (migration 0004): each server's blocked prompt patterns."""

from __future__ import annotations

import json
from collections.abc import Sequence

from bot.store.db import Database
from bot.store.ledger import Reader, audit


async def list_patterns(db: Reader, guild_id: int) -> list[str]:
    return (await list_patterns_of(db, [guild_id]))[guild_id]


async def list_patterns_of(db: Reader, guild_ids: Sequence[int]) -> dict[int, list[str]]:
    """The patterns of several servers, each in the order /blocklist lists them (case aside), in one
    statement whatever their number (a server without entries gets [])."""
    rows = await db.fetchall(
        "SELECT guild_id, pattern FROM prompt_blocklist WHERE guild_id IN (SELECT value FROM json_each(?))"
        " ORDER BY pattern COLLATE NOCASE",
        (json.dumps([str(guild_id) for guild_id in guild_ids]),),
    )
    found: dict[int, list[str]] = {guild_id: [] for guild_id in guild_ids}
    for row in rows:
        found[int(row["guild_id"])].append(str(row["pattern"]))
    return found


async def add_pattern(db: Database, guild_id: int, *, pattern: str, actor_id: int, at: float) -> bool:
    """Adds a pattern and audits it; False when the server already had it (in any case)."""
    async with db.write() as tx:
        added = await tx.execute(
            "INSERT INTO prompt_blocklist (guild_id, pattern, added_by, added_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (guild_id, pattern) DO NOTHING",
            (str(guild_id), pattern, str(actor_id), at),
        )
        if added:
            await audit(tx, guild_id, actor_id, "blocklist_add", {"pattern": pattern}, at)
    return bool(added)


async def remove_pattern(db: Database, guild_id: int, *, pattern: str, actor_id: int, at: float) -> bool:
    """Removes a pattern (any case) and audits it; False when the server did not have it."""
    async with db.write() as tx:
        removed = await tx.execute(
            "DELETE FROM prompt_blocklist WHERE guild_id = ? AND pattern = ?", (str(guild_id), pattern)
        )
        if removed:
            await audit(tx, guild_id, actor_id, "blocklist_remove", {"pattern": pattern}, at)
    return bool(removed)
