"""Every button the bot answers, pressed with a forged custom_id: a job or showcase that does not exist,
one of another server, ids that do not parse, a message that does not carry the button. Each press gets a
polite private sentence, and nothing changes (no job, charge, vote, showcase, deletion or edit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.store.jobs import JobRow
from tests.fakes import payloads as p
from tests.fakes.discord_server import InteractionRecord
from tests.test_results import BOB, delivered
from tests.test_showcase import add_showcases
from tests.world import World, running_world

MISSING = 987_654
HUGE = "9" * 25
TABLES = ("jobs", "quota_ledger", "showcases", "showcase_votes", "job_events")
KINDS = ("retry", "remix", "extend", "show", "delete", "cancel", "vote")


async def state(world: World) -> tuple[list[Any], dict[int, Any]]:
    """Row counts, and each message the bot or a member posted: deleted, how often edited."""
    counts = [tuple((await world.db.fetchone(f"SELECT COUNT(*) FROM {t}")) or ()) for t in TABLES]
    messages = {
        m.id: (m.deleted, len(m.edits)) for m in world.discord.messages if m.kind != "interaction_response"
    }
    return counts, messages


async def answered_privately(world: World, click: InteractionRecord, case: str) -> str:
    callback = await world.discord.wait_for_callback(click.id, timeout=4)
    assert callback.flags & 64 or callback.type == 9, (case, callback)  # ephemeral (or a form)
    text = await world.private_answer(click)
    assert text and "{" not in text and "went wrong" not in text, (case, text)
    return text


async def forged(world: World, custom_id: str, *, message: Any = None, **kw: Any) -> InteractionRecord:
    world.discord.ensure_member(kw.get("guild_id", p.DEFAULT_GUILD_ID), kw.get("user_id", BOB))
    kw.setdefault("user_id", BOB)
    return await world.discord.dispatch_interaction(
        p.button_click(world.discord, custom_id, message=message, member_permissions=p.MANAGE_MESSAGES, **kw)
    )


def plain_post(world: World) -> dict[str, Any]:
    """A bot message without the button pressed."""
    return world.discord.add_message(
        p.DEFAULT_CHANNEL_ID, "hello", author_id=world.discord.bot_user_id
    ).message


async def test_forged_presses_on_every_button_answer_politely_and_change_nothing(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job: JobRow = await delivered(world)
        [showcase_id] = await add_showcases(world, 1)
        guild_b = int(world.discord.add_guild("Server B")["id"])
        channel_b = int(world.discord.add_channel(guild_b, "general")["id"])
        before = await state(world)
        cases: list[tuple[str, dict[str, Any]]] = []
        for kind in KINDS:
            number = showcase_id if kind == "vote" else job.id
            cases += [
                (f"kling:{kind}:{MISSING}", {}),
                (f"kling:{kind}:{HUGE}", {}),
                (f"kling:{kind}:x{number}", {}),
                (f"kling:{kind}:{number}:1", {}),
                (f"kling:{kind}:", {}),
                (f"kling:{kind}:{number}", {"guild_id": guild_b, "channel_id": channel_b}),
                (f"kling:{kind}:{number}", {"message": "plain"}),
            ]
        for go in ("", "go"):
            cases += [
                (f"kling:fix{go}:{MISSING}:crop:i", {}),
                (f"kling:fix{go}:{job.id}:crop:i", {}),  # not a refused job
                (f"kling:fix{go}:{job.id}:explode:i", {}),
                (f"kling:fix{go}:{job.id}:crop:z", {}),
                (f"kling:fix{go}:{HUGE}:crop:i", {}),
                (f"kling:fix{go}:{job.id}:crop:i", {"guild_id": guild_b, "channel_id": channel_b}),
            ]
        cases += [
            ("kling:gal:x:0:0:n", {}),
            ("kling:gal:n:0:0:n", {"guild_id": None, "channel_id": None}),
            ("kling:hist:abc:n", {}),
            ("kling:nothing:1", {}),
            ("kling:", {}),
        ]
        failures = []
        for custom_id, where in cases:
            case = f"{custom_id} {where}"
            message = plain_post(world) if where.pop("message", None) == "plain" else None
            try:
                click = await forged(world, custom_id, message=message, **where)
                await answered_privately(world, click, case)
            except (AssertionError, TimeoutError) as error:
                failures.append(f"{case}: {error!r}"[:300])
        assert failures == []
        counts, messages = await state(world)
        assert counts == before[0]
        # The presses' own made-up messages aside, nothing was deleted or edited.
        assert {k: v for k, v in messages.items() if k in before[1]} == before[1]
        assert all(v == (False, 0) for k, v in messages.items() if k not in before[1])
        # A page past the end, or of a member no database holds, is the last page (or an empty one).
        for custom_id in (f"kling:gal:n:{HUGE}:0:n", f"kling:gal:n:0:{HUGE}:n", f"kling:hist:{HUGE}:n"):
            click = await forged(world, custom_id)
            assert (await world.discord.wait_for_callback(click.id, timeout=10)).type == 6, custom_id
