"""SQL for the `voices` table (migration 0004): each server's named voice ids."""

from __future__ import annotations

from dataclasses import dataclass

from bot.store.db import Database
from bot.store.ledger import Reader, audit


@dataclass(frozen=True, slots=True)
class VoiceRow:
    name: str
    voice_id: str


async def list_voices(db: Reader, guild_id: int) -> list[VoiceRow]:
    """The server's voices, sorted by name without case."""
    rows = await db.fetchall(
        "SELECT name, voice_id FROM voices WHERE guild_id = ? ORDER BY name COLLATE NOCASE", (str(guild_id),)
    )
    return [VoiceRow(row["name"], row["voice_id"]) for row in rows]


async def put_voice(
    db: Database, guild_id: int, *, name: str, voice_id: str, actor_id: int, at: float
) -> str | None:
    """Adds or replaces a voice (one name per server, whatever its case) and audits it; the voice id the
    name had before, or None when the name is new."""
    async with db.write() as tx:
        before = await tx.fetchone(
            "SELECT voice_id FROM voices WHERE guild_id = ? AND name = ?", (str(guild_id), name)
        )
        await tx.execute(
            "INSERT INTO voices (guild_id, name, voice_id, added_by, added_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (guild_id, name) DO UPDATE SET"
            " name = excluded.name, voice_id = excluded.voice_id,"
            " added_by = excluded.added_by, added_at = excluded.added_at",
            (str(guild_id), name, voice_id, str(actor_id), at),
        )
        await audit(tx, guild_id, actor_id, "voice_add", {"name": name, "voice_id": voice_id}, at)
    return None if before is None else str(before["voice_id"])


async def delete_voice(
    db: Database, guild_id: int, *, name: str, actor_id: int, at: float
) -> VoiceRow | None:
    """Removes a voice by name (any case) and audits it; the removed voice, or None if there was none."""
    async with db.write() as tx:
        row = await tx.fetchone(
            "SELECT name, voice_id FROM voices WHERE guild_id = ? AND name = ?", (str(guild_id), name)
        )
        if row is None:
            return None
        await tx.execute("DELETE FROM voices WHERE guild_id = ? AND name = ?", (str(guild_id), name))
        await audit(
            tx, guild_id, actor_id, "voice_remove", {"name": row["name"], "voice_id": row["voice_id"]}, at
        )
    return VoiceRow(row["name"], row["voice_id"])
