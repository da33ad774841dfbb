"""SQL for showcases (migration 0005): the server's showcase settings, showcased videos and votes.

Votes are one row per member and showcase; `showcases.vote_count` is kept equal to their number by
triggers inside the vote's own transaction, so sorting by votes reads an index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bot.store.db import Database, Row
from bot.store.ledger import Reader

Sort = Literal["newest", "votes"]
PAGE_SIZE = 10


@dataclass(frozen=True, slots=True)
class ShowcaseServer:
    guild_id: int
    channel_id: int | None
    forum_tag_id: int | None
    auto: bool
    weekly_post: bool
    weekly_day: int  # 0 = Monday, in UTC
    weekly_hour: int  # 0-23, UTC
    last_weekly: float | None


@dataclass(frozen=True, slots=True)
class Showcase:
    id: int
    guild_id: int
    job_id: int
    author_id: int
    shared_by: str
    prompt: str
    settings: str
    channel_id: int | None
    message_id: int | None
    video_url: str | None
    vote_count: int
    created_at: float
    removed_at: float | None

    @classmethod
    def from_row(cls, row: Row) -> Showcase:
        return cls(
            id=int(row["id"]),
            guild_id=int(row["guild_id"]),
            job_id=int(row["job_id"]),
            author_id=int(row["author_id"]),
            shared_by=str(row["shared_by"]),
            prompt=str(row["prompt"]),
            settings=str(row["settings"]),
            channel_id=_int(row["channel_id"]),
            message_id=_int(row["message_id"]),
            video_url=row["video_url"],
            vote_count=int(row["vote_count"]),
            created_at=float(row["created_at"]),
            removed_at=row["removed_at"],
        )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


# ----- the server's settings ------------------------------------------------------------------------------


async def server(db: Reader, guild_id: int) -> ShowcaseServer:
    row = await db.fetchone("SELECT * FROM showcase_servers WHERE guild_id = ?", (str(guild_id),))
    if row is None:
        return ShowcaseServer(guild_id, None, None, False, False, 0, 18, None)
    return ShowcaseServer(
        guild_id=guild_id,
        channel_id=_int(row["channel_id"]),
        forum_tag_id=_int(row["forum_tag_id"]),
        auto=bool(row["auto"]),
        weekly_post=bool(row["weekly_post"]),
        weekly_day=int(row["weekly_day"]),
        weekly_hour=int(row["weekly_hour"]),
        last_weekly=row["last_weekly"],
    )


# Columns an admin command may set; names are never taken from elsewhere.
SERVER_COLUMNS = frozenset(
    {"channel_id", "forum_tag_id", "auto", "weekly_post", "weekly_day", "weekly_hour", "last_weekly"}
)


async def update_server(db: Database, guild_id: int, values: dict[str, Any], *, at: float) -> None:
    assert values and set(values) <= SERVER_COLUMNS, values
    names = sorted(values)
    params = [_sql(values[name]) for name in names]
    async with db.write() as tx:
        await tx.execute(
            "INSERT INTO showcase_servers (guild_id, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (str(guild_id), at),
        )
        assignments = ", ".join(f"{name} = ?" for name in names)
        await tx.execute(
            f"UPDATE showcase_servers SET {assignments}, updated_at = ? WHERE guild_id = ?",
            (*params, at, str(guild_id)),
        )


def _sql(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return str(value)  # snowflakes are TEXT
    return value


async def servers_with_weekly_post(db: Reader) -> list[ShowcaseServer]:
    rows = await db.fetchall(
        "SELECT guild_id FROM showcase_servers WHERE weekly_post = 1 AND channel_id IS NOT NULL"
    )
    return [await server(db, int(row["guild_id"])) for row in rows]


async def set_opt_out(db: Database, guild_id: int, user_id: int, opted_out: bool, *, at: float) -> None:
    async with db.write() as tx:
        if opted_out:
            await tx.execute(
                "INSERT INTO showcase_optouts (guild_id, user_id, at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (str(guild_id), str(user_id), at),
            )
        else:
            await tx.execute(
                "DELETE FROM showcase_optouts WHERE guild_id = ? AND user_id = ?",
                (str(guild_id), str(user_id)),
            )


async def opted_out(db: Reader, guild_id: int, user_id: int) -> bool:
    row = await db.fetchone(
        "SELECT 1 FROM showcase_optouts WHERE guild_id = ? AND user_id = ?", (str(guild_id), str(user_id))
    )
    return row is not None


# ----- showcases ------------------------------------------------------------------------------------------


async def create(
    db: Database,
    *,
    guild_id: int,
    job_id: int,
    author_id: int,
    shared_by: str,
    prompt: str,
    settings: str,
    at: float,
) -> tuple[Showcase, bool]:
    """The job's standing showcase, and whether it was made now (False: it already stood)."""
    async with db.write() as tx:
        existing = await tx.fetchone(
            "SELECT * FROM showcases WHERE job_id = ? AND removed_at IS NULL", (job_id,)
        )
        if existing is not None:
            return Showcase.from_row(existing), False
        new_id = await tx.insert(
            "INSERT INTO showcases (guild_id, job_id, author_id, shared_by, prompt, settings, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (str(guild_id), job_id, str(author_id), shared_by, prompt, settings, at),
        )
        row = await tx.fetchone("SELECT * FROM showcases WHERE id = ?", (new_id,))
    assert row is not None
    return Showcase.from_row(row), True


async def set_posted(
    db: Database, showcase_id: int, *, channel_id: int, message_id: int, video_url: str | None
) -> None:
    await db.execute(
        "UPDATE showcases SET channel_id = ?, message_id = ?, video_url = ? WHERE id = ?",
        (str(channel_id), str(message_id), video_url, showcase_id),
    )


async def get(db: Reader, showcase_id: int) -> Showcase | None:
    row = await db.fetchone("SELECT * FROM showcases WHERE id = ?", (showcase_id,))
    return None if row is None else Showcase.from_row(row)


async def by_job(db: Reader, job_id: int) -> Showcase | None:
    """The job's standing showcase, if any."""
    row = await db.fetchone("SELECT * FROM showcases WHERE job_id = ? AND removed_at IS NULL", (job_id,))
    return None if row is None else Showcase.from_row(row)


async def by_message(db: Reader, guild_id: int, message_id: int) -> Showcase | None:
    row = await db.fetchone(
        "SELECT * FROM showcases WHERE guild_id = ? AND message_id = ? AND removed_at IS NULL",
        (str(guild_id), str(message_id)),
    )
    return None if row is None else Showcase.from_row(row)


async def remove(db: Database, showcase_id: int, *, at: float) -> bool:
    changed = await db.execute(
        "UPDATE showcases SET removed_at = ? WHERE id = ? AND removed_at IS NULL", (at, showcase_id)
    )
    return changed == 1


async def unposted(db: Reader, *, before: float) -> list[Showcase]:
    """Standing showcases recorded before `before` whose post was never recorded (a process died
    between the two), oldest first."""
    rows = await db.fetchall(
        "SELECT * FROM showcases WHERE message_id IS NULL AND removed_at IS NULL AND created_at < ?"
        " ORDER BY id",
        (before,),
    )
    return [Showcase.from_row(row) for row in rows]


async def auto_due(db: Reader, *, since: float) -> list[int]:
    """Ids of jobs delivered since `since` in servers that auto-showcase, after the server's settings
    last changed (so switching auto on never showcases older videos), never showcased (a showcase
    taken down counts) and whose member did not opt out: auto-showcases a process died before making."""
    rows = await db.fetchall(
        "SELECT j.id FROM jobs j JOIN showcase_servers s ON s.guild_id = j.guild_id"
        " WHERE j.state = 'delivered' AND j.updated_at >= ? AND j.updated_at >= s.updated_at"
        " AND s.auto = 1 AND s.channel_id IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM showcases c WHERE c.job_id = j.id)"
        " AND NOT EXISTS (SELECT 1 FROM showcase_optouts o"
        "  WHERE o.guild_id = j.guild_id AND o.user_id = j.user_id)"
        " ORDER BY j.id",
        (since,),
    )
    return [int(row["id"]) for row in rows]


async def set_last_weekly(db: Database, guild_id: int, at: float) -> None:
    """Records the weekly post; not an admin's change, so `updated_at` stays (auto_due reads it)."""
    await db.execute("UPDATE showcase_servers SET last_weekly = ? WHERE guild_id = ?", (at, str(guild_id)))


async def toggle_vote(db: Database, showcase_id: int, user_id: int, *, at: float) -> tuple[bool, int] | None:
    """Adds the member's vote, or takes it back if they had voted: (voted now, the new count). None when
    the showcase was removed."""
    async with db.write() as tx:
        row = await tx.fetchone("SELECT removed_at FROM showcases WHERE id = ?", (showcase_id,))
        if row is None or row["removed_at"] is not None:
            return None
        deleted = await tx.execute(
            "DELETE FROM showcase_votes WHERE showcase_id = ? AND user_id = ?", (showcase_id, str(user_id))
        )
        if not deleted:
            await tx.execute(
                "INSERT INTO showcase_votes (showcase_id, user_id, at) VALUES (?, ?, ?)",
                (showcase_id, str(user_id), at),
            )
        count = await tx.fetchone("SELECT vote_count FROM showcases WHERE id = ?", (showcase_id,))
    assert count is not None
    return not deleted, int(count[0])


async def vote_count(db: Reader, showcase_id: int) -> int:
    row = await db.fetchone("SELECT vote_count FROM showcases WHERE id = ?", (showcase_id,))
    return 0 if row is None else int(row[0])


async def page(
    db: Reader, guild_id: int, *, sort: Sort, page: int, author_id: int | None = None, size: int = PAGE_SIZE
) -> tuple[list[Showcase], int]:
    """One page (0-based) of the server's standing showcases, and how many there are in all."""
    where = "guild_id = ? AND removed_at IS NULL"
    params: list[Any] = [str(guild_id)]
    if author_id is not None:
        where += " AND author_id = ?"
        params.append(str(author_id))
    order = "vote_count DESC, id DESC" if sort == "votes" else "id DESC"
    total_row = await db.fetchone(f"SELECT COUNT(*) FROM showcases WHERE {where}", params)
    rows = await db.fetchall(
        f"SELECT * FROM showcases WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
        (*params, size, page * size),
    )
    return [Showcase.from_row(row) for row in rows], int(total_row[0]) if total_row else 0


async def top_since(db: Reader, guild_id: int, since: float | None, *, limit: int) -> list[Showcase]:
    """The most voted standing showcases posted since `since` (all time when None)."""
    if since is None:
        rows = await db.fetchall(
            "SELECT * FROM showcases WHERE guild_id = ? AND removed_at IS NULL"
            " ORDER BY vote_count DESC, id DESC LIMIT ?",
            (str(guild_id), limit),
        )
    else:
        rows = await db.fetchall(
            "SELECT * FROM showcases WHERE guild_id = ? AND removed_at IS NULL AND created_at >= ?"
            " ORDER BY vote_count DESC, id DESC LIMIT ?",
            (str(guild_id), since, limit),
        )
    return [Showcase.from_row(row) for row in rows]


async def top_creators(
    db: Reader, guild_id: int, since: float | None, *, limit: int
) -> list[tuple[int, int, int]]:
    """(member id, videos made, votes their showcases got) for the members who made the most videos in
    the server since `since` (all time when None)."""
    rows = await db.fetchall(
        "SELECT j.user_id AS user_id, COUNT(*) AS videos,"
        " COALESCE((SELECT SUM(s.vote_count) FROM showcases s WHERE s.guild_id = j.guild_id"
        "  AND s.author_id = j.user_id AND s.removed_at IS NULL), 0) AS votes"
        " FROM jobs j WHERE j.guild_id = ? AND j.state = 'delivered' AND j.created_at >= ?"
        " GROUP BY j.guild_id, j.user_id ORDER BY videos DESC, votes DESC LIMIT ?",
        (str(guild_id), since or 0.0, limit),
    )
    return [(int(row["user_id"]), int(row["videos"]), int(row["votes"])) for row in rows]
