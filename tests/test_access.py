"""One access rule for every way in, and jobs acted on only where they were made (issue 18 item 2), plus
the failure kinds of issue 19 item 9 that reach the Animate menu, the buttons and the error handler:
the real bot and discord.py against the fakes on loopback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bot.store.jobs import JobRow
from tests import images
from tests.fakes import payloads as p
from tests.test_results import BOB, delivered, modal_of, press, submit, text_inputs, use_menu
from tests.world import World, balance_of, running_world

DENIED = "can't use /animate in this channel"
ELSEWHERE = "belongs to a video made somewhere else"


async def reserves(world: World) -> int:
    row = await world.db.fetchone("SELECT COUNT(*) FROM quota_ledger WHERE kind = 'reserve'")
    assert row is not None
    return int(row[0])


def deny_animate(world: World, entries: list[dict[str, Any]], *, menu: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    """Server Settings → Integrations → /animate (and the Animate menu) entries, as Discord stores them."""
    commands = {c["name"]: c for c in world.discord.registered_commands()}
    settings = [
        {
            "id": commands["animate"]["id"],
            "application_id": str(world.discord.application_id),
            "guild_id": str(p.DEFAULT_GUILD_ID),
            "permissions": entries,
        }
    ]
    if menu:
        settings.append({**settings[0], "id": commands["Animate"]["id"], "permissions": list(menu)})
    world.discord.command_permissions[p.DEFAULT_GUILD_ID] = settings


def picture_post(world: World) -> dict[str, Any]:
    picture = world.image(images.png((640, 480)), filename="a.png", ephemeral=False)
    return world.discord.add_message(p.DEFAULT_CHANNEL_ID, "pic", attachments=[picture]).message


async def test_each_way_in_is_refused_to_a_member_denied_animate(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)
        post = world.discord.message(job.result_message_id or 0).message
        remix = await modal_of(world, await press(world, "remix", job, user_id=BOB))
        extend = await modal_of(world, await press(world, "extend", job, user_id=BOB))
        menu = await modal_of(world, await use_menu(world, picture_post(world), user_id=BOB))
        # The Animate menu's own entry allows Bob: it does not widen /animate's.
        deny_animate(
            world,
            [{"id": str(BOB), "type": 2, "permission": False}],
            menu=[{"id": str(BOB), "type": 2, "permission": True}],
        )
        ways = {
            "retry": await press(world, "retry", job, user_id=BOB),
            "remix form": await submit(world, remix, {"Prompt": "again"}, user_id=BOB),
            "extend form": await submit(world, extend, {}, user_id=BOB, message=post),
            "menu form": await submit(world, menu, {"Prompt": "menu"}, user_id=BOB),
        }
        for way, interaction in ways.items():
            assert DENIED in await world.private_answer(interaction), way
        # Now that the bot knows, the forms do not even open.
        for click in (
            await press(world, "remix", job, user_id=BOB),
            await press(world, "extend", job, user_id=BOB),
            await use_menu(world, picture_post(world), user_id=BOB),
        ):
            callback = await world.discord.wait_for_callback(click.id)
            assert callback.type == 4 and DENIED in callback.data["content"]
        assert world.sunra.count("submit") == 1 and await reserves(world) == 1


@pytest.mark.parametrize("entry", ["role", "channel"])
async def test_role_and_channel_entries_hold_for_the_buttons_too(tmp_path: Path, entry: str) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)
        role = world.discord.add_role(p.DEFAULT_GUILD_ID, "muted")
        role_id = int(role["id"])
        if entry == "role":
            deny_animate(world, [{"id": str(role_id), "type": 1, "permission": False}])
            click = await press(world, "retry", job, user_id=BOB, member_roles=[role_id])
        else:
            deny_animate(world, [{"id": str(p.DEFAULT_CHANNEL_ID), "type": 3, "permission": False}])
            click = await press(world, "retry", job, user_id=BOB)
        assert DENIED in await world.private_answer(click)
        assert world.sunra.count("submit") == 1


async def test_unreadable_command_settings_refuse_rather_than_let_through(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)
        world.discord.inject_error("commands/permissions", status=403, code=50001, message="Missing Access")
        answer = await world.private_answer(await press(world, "retry", job, user_id=BOB))
        assert "couldn't read this server's command settings" in answer and "Nothing was charged" in answer
        assert world.sunra.count("submit") == 1 and await reserves(world) == 1


async def test_a_fix_is_confirmed_only_by_a_member_who_may_use_animate(tmp_path: Path) -> None:
    from tests.test_fixing import answer_message, custom_id_of, labels

    async with running_world(tmp_path) as world:
        interaction = await world.animate(image=world.image(images.png((1200, 300))), user_id=BOB)
        assert "fix it for you" in await world.private_answer(interaction)
        message = answer_message(world, interaction)
        await world.discord.wait_for(lambda: "Crop" in labels(message) or None, timeout=10)
        edits = len(message.edits)
        crop = p.button_click(
            world.discord, custom_id_of(message, "Crop"), message=message.message, user_id=BOB
        )
        await world.discord.dispatch_interaction(crop)
        await world.discord.wait_for(lambda: len(message.edits) > edits or None, timeout=10)
        deny_animate(world, [{"id": str(BOB), "type": 2, "permission": False}])
        confirm = custom_id_of(message, "Animate this")
        click = await world.discord.dispatch_interaction(
            p.button_click(world.discord, confirm, message=message.message, user_id=BOB)
        )
        await world.discord.wait_for_callback(click.id)
        await world.discord.wait_for(lambda: DENIED in message.content or None, timeout=10)
        assert world.sunra.count("submit") == 0 and await reserves(world) == 0


async def other_server(world: World) -> tuple[int, int]:
    guild = world.discord.add_guild("Server B")
    guild_id = int(guild["id"])
    channel = world.discord.add_channel(guild_id, "general")
    world.discord.ensure_member(guild_id, BOB)
    return guild_id, int(channel["id"])


async def test_buttons_and_forms_naming_another_servers_job_change_nothing(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)
        remix = await modal_of(world, await press(world, "remix", job))
        extend = await modal_of(world, await press(world, "extend", job))
        guild_b, channel_b = await other_server(world)
        moderator = p.MANAGE_MESSAGES | p.ADMINISTRATOR
        where: dict[str, Any] = {"guild_id": guild_b, "channel_id": channel_b}
        for action in ("retry", "remix", "extend", "delete", "cancel"):
            click = await world.discord.dispatch_interaction(
                p.button_click(
                    world.discord,
                    f"kling:{action}:{job.id}",
                    # The Cancel button left the progress message when the job ended: a made-up one.
                    message=None if action == "cancel" else job.result_message_id,
                    user_id=BOB,
                    member_permissions=moderator,
                    **where,
                )
            )
            assert ELSEWHERE in await world.private_answer(click), action
        for modal in (remix, extend):
            fields = {i["custom_id"]: i.get("value", "") for i in text_inputs(modal).values()}
            sent = await world.discord.dispatch_interaction(
                p.modal_submit(world.discord, modal.data["custom_id"], fields, user_id=BOB, **where)
            )
            assert ELSEWHERE in await world.private_answer(sent)
        # Another channel of the same server is elsewhere too: a moderator there is none here.
        channel_a2 = int(world.discord.add_channel(p.DEFAULT_GUILD_ID, "staff")["id"])
        click = await world.discord.dispatch_interaction(
            p.button_click(
                world.discord,
                f"kling:delete:{job.id}",
                message=job.result_message_id,
                user_id=BOB,
                member_permissions=moderator,
                channel_id=channel_a2,
            )
        )
        assert ELSEWHERE in await world.private_answer(click)
        assert not world.discord.message(job.result_message_id or 0).deleted
        assert world.sunra.count("submit") == 1 and await reserves(world) == 1


# ------------------------------------------------------------------------------------ issue 19 item 9


async def test_an_unexpected_error_in_a_command_a_button_or_a_form_is_answered_privately(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)
        remix = await modal_of(world, await press(world, "remix", job))

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(world.bot.quota, "quote", broken)
        monkeypatch.setattr(world.bot.quota, "report", broken)
        caplog.set_level(logging.ERROR)
        quota = await world.discord.dispatch_interaction(p.slash_command(world.discord, name="quota"))
        retry = await press(world, "retry", job)
        form = await submit(world, remix, {"Prompt": "x"})
        for interaction in (quota, retry, form):
            answer = await world.private_answer(interaction)
            assert "Something went wrong inside the bot" in answer, answer
        tracebacks = [r for r in caplog.records if r.exc_info and "a bug" in str(r.exc_info[1])]
        assert len(tracebacks) >= 3
        assert world.sunra.count("submit") == 1


async def test_the_animate_menu_on_a_forwarded_message_animates_its_picture(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        picture = world.image(images.png((800, 600)), filename="original.png", ephemeral=False)
        forward = world.discord.add_message(p.DEFAULT_CHANNEL_ID, "")
        forward.message["message_reference"] = {"type": 1, "channel_id": "1", "message_id": "2"}
        forward.message["message_snapshots"] = [
            {
                "message": {
                    "type": 0,
                    "content": "",
                    "attachments": [picture],
                    "embeds": [],
                    "flags": 0,
                    "timestamp": p.iso_now(),
                    "edited_timestamp": None,
                    "mentions": [],
                    "mention_roles": [],
                    "components": [],
                }
            }
        ]
        menu = await modal_of(world, await use_menu(world, forward.message))
        job = await world.ended(await submit(world, menu, {"Prompt": "forwarded"}, user_id=BOB))
        assert job.state == "delivered"
        [submitted] = world.sunra.jobs.values()
        assert submitted.input["prompt"] == "forwarded"


async def test_the_animate_menu_takes_an_attachment_without_content_type_or_size(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        picture = world.image(images.png((640, 480)), filename="bare.png", ephemeral=False)
        for key in ("content_type", "size", "width", "height"):
            picture.pop(key, None)
        post = world.discord.add_message(p.DEFAULT_CHANNEL_ID, "bare", attachments=[picture])
        menu = await modal_of(world, await use_menu(world, post.message))
        job = await world.ended(await submit(world, menu, {"Prompt": "bare"}, user_id=BOB))
        assert job.state == "delivered"


async def test_animate_and_the_buttons_after_the_bot_was_removed_refuse_before_charging(
    tmp_path: Path,
) -> None:
    async with running_world(tmp_path) as world:
        job: JobRow = await delivered(world)
        retry = p.button_click(world.discord, f"kling:retry:{job.id}", message=job.result_message_id)
        animate = p.slash_command(world.discord, options={"image": world.image(), "prompt": "x"})
        guild = world.bot.get_guild(p.DEFAULT_GUILD_ID)
        assert guild is not None
        await guild.leave()
        await world.discord.wait_for(lambda: world.bot.get_guild(p.DEFAULT_GUILD_ID) is None, timeout=10)
        before = await reserves(world)
        for payload in (animate, retry):
            answer = await world.private_answer(await world.discord.dispatch_interaction(payload))
            assert "no longer a member of this server" in answer, answer
        assert world.sunra.count("submit") == 1 and await reserves(world) == before


async def test_extend_makes_its_frame_only_for_a_reserved_credit(tmp_path: Path) -> None:
    from tests.videos import make_video

    async with running_world(tmp_path, quota={"daily_credits": 20}) as world:
        world.sunra.video_content = make_video(tmp_path / "clip.mp4", size=(640, 360)).read_bytes()
        job = await delivered(world)  # 10 credits: room for one more
        forms = [await modal_of(world, await press(world, "extend", job)) for _ in range(2)]
        downloads = world.sunra.count("video")
        sent = [await submit(world, form, {}) for form in forms]  # at once: both pass the early quote
        answers = [await world.private_answer(s) for s in sent]
        assert sum("on its way" in a for a in answers) == 1, answers
        assert world.sunra.count("video") - downloads == 1  # the refused one downloaded nothing
        assert await balance_of(world) == 0
