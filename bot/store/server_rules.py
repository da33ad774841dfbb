"""SQL for the per-server rule rows of credits: a server's quota settings (`quota_guild_settings`), its
role allowances and its blocks; what only a server's admins change, read as one member's context or as
a whole server's `ServerRules`. The ledger's sums and settlements are in bot/store/ledger.py.

Servers are keyed by `ledger.guild_key()`. Functions that take a `Writer` run inside a `Database.write()`
transaction; functions that take a `Reader` accept the database or an open transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.store.db import Row
from bot.store.ledger import Reader, Writer

# The columns of quota_guild_settings an admin command may set; names are never taken from elsewhere.
GUILD_SETTING_COLUMNS = frozenset(
    {
        "allowance",
        "period",
        "cap",
        "timezone",
        "switched_at",
        "pending_timezone",
        "pending_period",
        "pending_at",
        "cooldown_seconds",
        "allow_10s",
        "allow_audio",
        "allow_voices",
    }
)


def _roles_json(role_ids: Iterable[int]) -> str:
    # One JSON array parameter read with json_each keeps the statement fixed whatever the role count.
    return json.dumps([str(role_id) for role_id in role_ids])


def _bool_or_none(value: Any) -> bool | None:
    return None if value is None else bool(value)


@dataclass(frozen=True, slots=True)
class GuildOverrides:
    """A server's own quota settings; None means the operator's default applies."""

    allowance: int | None = None
    period: str | None = None
    cap: int | None = None
    timezone: str | None = None  # the zone in force (None: the operator's)
    # When the zone and period in force took over at a switch (None: always in force).
    switched_at: float | None = None
    # A change of zone or period that takes effect at pending_at (None: no change waits).
    pending_timezone: str | None = None
    pending_period: str | None = None
    pending_at: float | None = None
    cooldown_seconds: float | None = None
    allow_10s: bool | None = None
    allow_audio: bool | None = None
    allow_voices: bool | None = None


@dataclass(frozen=True, slots=True)
class MemberContext:
    overrides: GuildOverrides
    role_allowance: int | None  # the most generous allowance among the member's roles, if any is set
    blocked: bool
    block_reason: str | None


async def member_context(db: Reader, guild: str, user_id: int, role_ids: Sequence[int]) -> MemberContext:
    """The server's settings, the member's best role allowance and block, in one statement."""
    row = await db.fetchone(
        "SELECT s.allowance, s.period, s.cap, s.timezone, s.switched_at, s.pending_timezone,"
        " s.pending_period, s.pending_at, s.cooldown_seconds,"
        " s.allow_10s, s.allow_audio, s.allow_voices,"
        " (SELECT MAX(r.credits) FROM quota_role_allowances r WHERE r.guild_id = :guild"
        "   AND r.role_id IN (SELECT value FROM json_each(:roles))) AS role_allowance,"
        " b.user_id IS NOT NULL AS blocked, b.reason AS block_reason"
        " FROM (SELECT 1) AS one"
        " LEFT JOIN quota_guild_settings s ON s.guild_id = :guild"
        " LEFT JOIN quota_blocks b ON b.guild_id = :guild AND b.user_id = :user",
        {"guild": guild, "user": str(user_id), "roles": _roles_json(role_ids)},
    )
    assert row is not None  # SELECT FROM (SELECT 1) always yields one row
    return MemberContext(
        overrides=_overrides_from(row),
        role_allowance=row["role_allowance"],
        blocked=bool(row["blocked"]),
        block_reason=row["block_reason"],
    )


@dataclass(frozen=True, slots=True)
class ServerRules:
    """Everything about a server that only its admins change: settings, role allowances and blocks,
    read once and kept in memory (bot/quota/spending.py) so a quota check reads nothing but the ledger."""

    overrides: GuildOverrides
    role_allowances: Mapping[int, int]
    blocks: Mapping[int, str | None]  # user id -> reason

    def member_context(self, user_id: int, role_ids: Sequence[int]) -> MemberContext:
        """What `member_context` reads, from memory."""
        allowances = [self.role_allowances[r] for r in role_ids if r in self.role_allowances]
        return MemberContext(
            overrides=self.overrides,
            role_allowance=max(allowances) if allowances else None,
            blocked=user_id in self.blocks,
            block_reason=self.blocks.get(user_id),
        )


async def server_rules(db: Reader, guild: str) -> ServerRules:
    return (await servers_rules(db, [guild]))[guild]


async def servers_rules(db: Reader, guilds: Sequence[str]) -> dict[str, ServerRules]:
    """The rules of several servers in three statements, whatever their number (a server without rows
    gets the operator's defaults): one server's when a command first needs them (`server_rules`), and a
    process's servers' once it is ready."""
    keys = json.dumps(list(guilds))
    settings = await db.fetchall(
        "SELECT * FROM quota_guild_settings WHERE guild_id IN (SELECT value FROM json_each(?))", (keys,)
    )
    allowances = await db.fetchall(
        "SELECT guild_id, role_id, credits FROM quota_role_allowances"
        " WHERE guild_id IN (SELECT value FROM json_each(?)) ORDER BY credits DESC",
        (keys,),
    )
    blocks = await db.fetchall(
        "SELECT guild_id, user_id, reason FROM quota_blocks"
        " WHERE guild_id IN (SELECT value FROM json_each(?))",
        (keys,),
    )
    overrides = {str(row["guild_id"]): _overrides_from(row) for row in settings}
    roles: dict[str, dict[int, int]] = {}
    for row in allowances:
        roles.setdefault(str(row["guild_id"]), {})[int(row["role_id"])] = int(row["credits"])
    blocked: dict[str, dict[int, str | None]] = {}
    for row in blocks:
        blocked.setdefault(str(row["guild_id"]), {})[int(row["user_id"])] = row["reason"]
    return {
        guild: ServerRules(
            overrides=overrides.get(guild, GuildOverrides()),
            role_allowances=roles.get(guild, {}),
            blocks=blocked.get(guild, {}),
        )
        for guild in guilds
    }


async def guild_overrides(db: Reader, guild: str) -> GuildOverrides:
    row = await db.fetchone("SELECT * FROM quota_guild_settings WHERE guild_id = ?", (guild,))
    return GuildOverrides() if row is None else _overrides_from(row)


def _overrides_from(row: Row) -> GuildOverrides:
    return GuildOverrides(
        allowance=row["allowance"],
        period=row["period"],
        cap=row["cap"],
        timezone=row["timezone"],
        switched_at=row["switched_at"],
        pending_timezone=row["pending_timezone"],
        pending_period=row["pending_period"],
        pending_at=row["pending_at"],
        cooldown_seconds=row["cooldown_seconds"],
        allow_10s=_bool_or_none(row["allow_10s"]),
        allow_audio=_bool_or_none(row["allow_audio"]),
        allow_voices=_bool_or_none(row["allow_voices"]),
    )


# ----- admin changes --------------------------------------------------------------------------------------


async def update_guild_settings(tx: Writer, guild: str, values: Mapping[str, Any], *, at: float) -> None:
    """Sets some of a server's settings (None restores the operator's default for that one)."""
    unknown = set(values) - GUILD_SETTING_COLUMNS
    if unknown:
        raise ValueError(f"not a server setting: {sorted(unknown)}")
    names = sorted(values)
    columns = "".join(f", {name}" for name in names)
    placeholders = "".join(", ?" for _ in names)
    updates = "".join(f", {name} = excluded.{name}" for name in names)
    await tx.execute(
        f"INSERT INTO quota_guild_settings (guild_id, updated_at{columns}) VALUES (?, ?{placeholders})"
        f" ON CONFLICT (guild_id) DO UPDATE SET updated_at = excluded.updated_at{updates}",
        (guild, at, *(_sql_value(values[name]) for name in names)),
    )


def _sql_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


async def set_role_allowance(tx: Writer, guild: str, role_id: int, credits: int | None, *, at: float) -> None:
    if credits is None:
        await tx.execute(
            "DELETE FROM quota_role_allowances WHERE guild_id = ? AND role_id = ?", (guild, str(role_id))
        )
        return
    await tx.execute(
        "INSERT INTO quota_role_allowances (guild_id, role_id, credits, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (guild_id, role_id) DO UPDATE SET credits = excluded.credits,"
        " updated_at = excluded.updated_at",
        (guild, str(role_id), credits, at),
    )


async def set_block(
    tx: Writer, guild: str, user_id: int, *, reason: str | None, actor_id: int, at: float
) -> None:
    await tx.execute(
        "INSERT INTO quota_blocks (guild_id, user_id, reason, actor_id, at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason,"
        " actor_id = excluded.actor_id, at = excluded.at",
        (guild, str(user_id), reason, str(actor_id), at),
    )


async def remove_block(tx: Writer, guild: str, user_id: int) -> bool:
    deleted = await tx.execute(
        "DELETE FROM quota_blocks WHERE guild_id = ? AND user_id = ?", (guild, str(user_id))
    )
    return deleted == 1
