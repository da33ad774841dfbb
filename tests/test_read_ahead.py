"""A server's rules read ahead: the quota rules and block lists of a process's servers are read when it is
ready, in four statements for them all, so the first crowd after a start does not queue behind them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bot.store import Database, blocklist, server_rules
from bot.store.ledger import guild_key
from tests.fakes import payloads as p
from tests.test_operator_bounds import until
from tests.world import running_world

EPHEMERAL = 64
BLOCKED_MEMBER = 1_143_850_174_982_440_777
RULE_TABLES = ("quota_guild_settings", "quota_role_allowances", "quota_blocks", "prompt_blocklist")


async def test_many_servers_rules_are_read_at_once(database_url: str) -> None:
    full, blocks_only, bare = 111, 222, 333
    async with await Database.open(database_url) as db:
        async with db.write() as tx:
            await server_rules.update_guild_settings(
                tx, guild_key(full), {"allowance": 9, "cap": 500, "allow_audio": False}, at=1.0
            )
            await server_rules.set_role_allowance(tx, guild_key(full), 7, 30, at=1.0)
            await server_rules.set_role_allowance(tx, guild_key(full), 8, 60, at=1.0)
            await server_rules.set_block(tx, guild_key(full), 5, reason="spam", actor_id=1, at=1.0)
            await server_rules.set_block(tx, guild_key(blocks_only), 6, reason=None, actor_id=1, at=1.0)
        for pattern in ("Zebra", "apple*", "mango"):
            await blocklist.add_pattern(db, full, pattern=pattern, actor_id=1, at=1.0)
        await blocklist.add_pattern(db, blocks_only, pattern="kiwi", actor_id=1, at=1.0)

        keys = [guild_key(g) for g in (full, blocks_only, bare)]
        together = await server_rules.servers_rules(db, keys)
        assert together == {
            guild_key(full): server_rules.ServerRules(
                overrides=server_rules.GuildOverrides(allowance=9, cap=500, allow_audio=False),
                role_allowances={8: 60, 7: 30},
                blocks={5: "spam"},
            ),
            guild_key(blocks_only): server_rules.ServerRules(
                overrides=server_rules.GuildOverrides(), role_allowances={}, blocks={6: None}
            ),
            guild_key(bare): server_rules.ServerRules(
                overrides=server_rules.GuildOverrides(), role_allowances={}, blocks={}
            ),
        }
        assert list(together[guild_key(full)].role_allowances) == [8, 7]  # the largest first
        assert await server_rules.server_rules(db, guild_key(full)) == together[guild_key(full)]
        patterns = await blocklist.list_patterns_of(db, [full, blocks_only, bare])
        assert patterns == {full: ["apple*", "mango", "Zebra"], blocks_only: ["kiwi"], bare: []}
        assert await blocklist.list_patterns(db, full) == patterns[full]


async def test_the_first_command_after_a_start_reads_none_of_its_servers_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's block list and a member's block were written before the start; once the bot is ready
    its first commands are refused by them without a statement reading any rule table."""
    caplog.set_level(logging.INFO, logger="bot.app")
    statements: list[str] = []
    async with running_world(tmp_path) as world:
        await blocklist.add_pattern(world.db, p.DEFAULT_GUILD_ID, pattern="volcano", actor_id=1, at=1.0)
        async with world.db.write() as tx:
            await server_rules.set_block(
                tx, guild_key(p.DEFAULT_GUILD_ID), BLOCKED_MEMBER, reason="spam", actor_id=1, at=1.0
            )
    caplog.clear()
    # Started again on the same database: the rows are there before it is ready.
    async with running_world(tmp_path) as world:
        await until(lambda: "read the rules of 1 servers and the block lists of 1 ahead" in caplog.text)
        for read in ("fetchall", "fetchone"):
            original = getattr(world.db, read)

            async def recorded(sql: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                statements.append(sql)
                return await _original(sql, *args, **kwargs)

            setattr(world.db, read, recorded)
        lava = await world.animate("a volcano erupts at dusk")
        answer = await world.discord.wait_for_callback(lava.id)
        assert answer.flags & EPHEMERAL and "volcano" in answer.data["content"]
        blocked = await world.animate("the cat waves", user_id=BLOCKED_MEMBER)
        answer = await world.discord.wait_for_callback(blocked.id)
        assert answer.flags & EPHEMERAL and "spam" in answer.data["content"]
        assert statements  # the quotes still read the ledger
        assert [sql for sql in statements if any(table in sql for table in RULE_TABLES)] == []
