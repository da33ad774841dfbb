"""Community showcases: the showcase channel (text and forum), votes, the gallery, history, the
leaderboard and the weekly post, through discord.py and the fake Discord."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from bot.showcase import ShowcaseService, VoteLabels, forum_title, weekly_due
from bot.store import Database, showcases as sql
from bot.store.showcases import ShowcaseServer
from cogs.showcase._cog import ShowcaseCog
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_server._components import v2_text
from tests.world import World, loosen_rate_limits, running_world

ADMIN = p.DEFAULT_EVERYONE_PERMISSIONS | p.MANAGE_GUILD
ALICE = 1_143_850_174_982_443_301
GUILD = p.DEFAULT_GUILD_ID


async def insert_delivered_job(db: Database, job_id: int, *, user_id: int, at: float) -> None:
    """A delivered job row, for showcases that need one without running a job."""
    await db.execute(
        "INSERT INTO jobs (id, interaction_id, guild_id, channel_id, user_id, state, params,"
        " upload_limit, created_at, updated_at, deadline)"
        " VALUES (?, ?, ?, '2', ?, 'delivered', '{\"prompt\": \"p\"}', 1, ?, ?, 9e9)",
        (job_id, f"x{job_id}", str(GUILD), str(user_id), at, at),
    )


# ----- rules without Discord ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "title"),
    [
        ("a cat\nwaves <@123> at @everyone", "a cat waves at"),
        ("**bold** `code` > quote", "bold code quote"),
        ("   ", "Showcase #7"),
        ("<@&42>", "Showcase #7"),
        ("\u200b\u200b", "Showcase #7"),  # nothing visible: an invisible title
        ("\u2060 \ufe0f", "Showcase #7"),
        ("🔥🔥", "🔥🔥"),
    ],
)
def test_forum_titles_are_one_clean_line(prompt: str, title: str) -> None:
    assert forum_title(prompt, fallback="Showcase #7") == title


def test_a_gallery_row_of_an_invisible_prompt_is_still_a_link_one_can_see() -> None:
    from bot.store.showcases import Showcase
    from cogs.showcase._pages import showcase_line

    line = showcase_line(Showcase(7, GUILD, 1, 3, "3", "\u200b\u200b", "5 s", 10, 11, None, 0, 0.0, None))
    assert line.startswith("[Showcase #7](https://discord.com/channels/")


def test_forum_titles_fit_in_100_characters() -> None:
    title = forum_title("word " * 60, fallback="x")
    assert len(title) <= 100 and title.endswith("…") and "  " not in title


def test_the_weekly_post_is_due_once_per_week_after_its_slot() -> None:
    monday_18 = dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.UTC).timestamp()
    server = ShowcaseServer(GUILD, 1, None, False, True, 0, 18, None)
    assert not weekly_due(server, monday_18 - 60) or server.last_weekly is None  # an earlier slot is owed
    assert weekly_due(server, monday_18 + 60)
    posted = ShowcaseServer(GUILD, 1, None, False, True, 0, 18, monday_18 + 60)
    assert not weekly_due(posted, monday_18 + 3600)
    assert not weekly_due(posted, monday_18 + 6 * 86_400)
    assert weekly_due(posted, monday_18 + 7 * 86_400 + 1)
    assert not weekly_due(ShowcaseServer(GUILD, 1, None, False, False, 0, 18, None), monday_18 + 60)


async def test_votes_from_200_members_at_once_are_counted_exactly(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "db.sqlite3") as db:
        await insert_delivered_job(db, 1, user_id=3, at=0.0)
        showcase, _ = await sql.create(
            db, guild_id=GUILD, job_id=1, author_id=3, shared_by="3", prompt="p", settings="5 s", at=1.0
        )
        service = ShowcaseService(db)
        results = await asyncio.gather(*(service.vote(showcase.id, 1000 + n) for n in range(200)))
        assert all(r is not None and r[0] for r in results)
        assert sorted(r[1] for r in results if r) == list(range(1, 201))
        again = await asyncio.gather(*(service.vote(showcase.id, 1000 + n) for n in range(0, 200, 2)))
        assert all(r is not None and not r[0] for r in again)
        assert await sql.vote_count(db, showcase.id) == 100
        rows = await db.fetchone("SELECT COUNT(*) FROM showcase_votes WHERE showcase_id = ?", (showcase.id,))
        assert rows is not None and rows[0] == 100


async def test_vote_labels_coalesce_presses_and_catch_up_after_a_refusal() -> None:
    from bot.showcase import EditRefused
    from bot.store.showcases import Showcase

    count = 0
    edits: list[int] = []
    refuse = [True]

    def load_now() -> Showcase:
        return Showcase(1, GUILD, 1, 3, "3", "p", "s", 10, 11, None, count, 0.0, None)

    async def load(_: int) -> Showcase:
        return load_now()

    async def edit(showcase: Showcase) -> None:
        if refuse[0]:
            refuse[0] = False
            raise EditRefused("30046")
        edits.append(showcase.vote_count)

    labels = VoteLabels(edit, load, interval=0.05, retry=0.05)
    for _ in range(50):
        count += 1
        labels.touch(1)
        await asyncio.sleep(0.001)
    for _ in range(100):
        if edits and edits[-1] == 50:
            break
        await asyncio.sleep(0.02)
    await labels.close()
    assert edits[-1] == 50 and len(edits) <= 3  # 50 presses, one refused edit, then at most a few edits


# ----- through Discord ------------------------------------------------------------------------------------


def admin(world: World, subcommand: str, options: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    kw.setdefault("member_permissions", ADMIN)
    payload = p.slash_command(
        world.discord, name="showcase-admin", subcommand=subcommand, options=options, **kw
    )
    return payload


def with_channel(world: World, payload: dict[str, Any], channel_id: int) -> dict[str, Any]:
    """Discord sends the channel named in an option in data.resolved.channels."""
    channel = world.discord.channels[channel_id]
    resolved = payload["data"].setdefault("resolved", {})
    resolved.setdefault("channels", {})[str(channel_id)] = {
        "id": str(channel_id),
        "type": channel["type"],
        "name": channel["name"],
        "permissions": str(p.ALL_PERMISSIONS),
        "guild_id": str(GUILD),
        **({"flags": channel["flags"]} if "flags" in channel else {}),
    }
    return payload


async def answer(world: World, payload: dict[str, Any]) -> str:
    record = await world.discord.dispatch_interaction(payload)
    callback = await world.discord.wait_for_callback(record.id)
    if callback.type == 4:
        return str(callback.data.get("content"))
    return await world.private_answer(record)


async def set_channel(world: World, channel_id: int, tag: str | None = None) -> str:
    options = [p.option("channel", channel_id, type=p.OPTION_CHANNEL)]
    if tag is not None:
        options.append(p.option("tag", tag))
    return await answer(world, with_channel(world, admin(world, "channel", options), channel_id))


async def delivered_job(world: World, prompt: str = "a fox dances", user_id: int = ALICE) -> tuple[int, int]:
    """(job id, result message id) of a finished video."""
    interaction = await world.animate(prompt, user_id=user_id)
    job = await world.ended(interaction)
    assert job.state == "delivered" and job.result_message_id is not None
    return job.id, job.result_message_id


async def press(world: World, custom_id: str, message_id: int | None, user_id: int = ALICE, **kw: Any) -> str:
    record = await world.discord.dispatch_interaction(
        p.button_click(world.discord, custom_id, message=message_id, user_id=user_id, **kw)
    )
    return await world.private_answer(record)


def showcase_cog(world: World) -> ShowcaseCog:
    # load_extension imports cogs.showcase afresh, so the class differs from the one imported here.
    cog: Any = world.bot.get_cog("ShowcaseCog")
    assert type(cog).__name__ == "ShowcaseCog"
    return cog  # type: ignore[no-any-return]


def walk(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every component of a message, nested ones (V2 containers, rows) included, in order."""
    out: list[dict[str, Any]] = []
    for component in components:
        out.append(component)
        out.extend(walk(component.get("components") or []))
    return out


def button_labels(message: dict[str, Any]) -> list[str]:
    return [c.get("label", "") for c in walk(message.get("components", [])) if c["type"] == 2]


def text_of(message: dict[str, Any]) -> str:
    return v2_text(message.get("components", []))


def media_urls(message: dict[str, Any]) -> list[str]:
    return [
        item["media"]["url"]
        for c in walk(message.get("components", []))
        if c["type"] == 12
        for item in c["items"]
    ]


def is_card(message: dict[str, Any]) -> bool:
    return (
        bool(int(message.get("flags") or 0) & (1 << 15))
        and not message.get("content")
        and not message.get("embeds")
    )


async def test_a_video_showcased_in_a_text_channel_with_votes_that_survive_a_restart(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        loosen_rate_limits(fake)
        showcase_channel = int(fake.add_channel(GUILD, "showcase")["id"])
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            refused = await press(world, "kling:show:999", None)
            assert refused == "I no longer know this video, so it cannot be showcased."
            job_id, result_id = await delivered_job(world)
            assert "Showcase" in button_labels(fake.message(result_id).message)
            no_channel = await press(world, f"kling:show:{job_id}", result_id)
            assert no_channel.startswith("This server has no showcase channel yet.")

            assert (
                await set_channel(world, showcase_channel) == f"Showcased videos go to <#{showcase_channel}>."
            )
            other = await press(world, f"kling:show:{job_id}", result_id, user_id=ALICE + 1)
            assert other == "Only the member who made this video, or a moderator, can showcase it."
            shared = await press(world, f"kling:show:{job_id}", result_id)
            assert shared == f"Showcased in <#{showcase_channel}> as #1. Members can vote on it there."
            again = await press(world, f"kling:show:{job_id}", result_id)
            assert again == shared  # once: the second press points at the same post
            posts = fake.channel_messages(showcase_channel)
            assert len(posts) == 1
            post = posts[0]
            assert is_card(post)
            assert post["attachments"][0]["filename"] == f"kling-{job_id}.mp4"
            assert media_urls(post) == [f"attachment://kling-{job_id}.mp4"]  # plays inline
            assert "a fox dances" in text_of(post).split("\n") and f"<@{ALICE}>" in text_of(post)
            assert button_labels(post) == ["Vote (0)"]
            assert post["mentions"] == []  # the author is named, not pinged
            post_id = int(post["id"])

            voters = [2_000_000_000_000_000 + n for n in range(200)]
            for voter in voters:
                fake.ensure_member(GUILD, voter)
            answers = await asyncio.gather(
                *(press(world, "kling:vote:1", post_id, user_id=v) for v in voters)
            )
            assert all(a.startswith("Your vote is counted (") for a in answers)
            assert await press(world, "kling:vote:1", post_id, user_id=voters[0]) == (
                "Your vote was taken back (199 in all). Press again to change your mind."
            )
            stored = await world.db.fetchone(
                "SELECT vote_count, (SELECT COUNT(*) FROM showcase_votes WHERE showcase_id = 1)"
                " FROM showcases WHERE id = 1"
            )
            assert stored is not None and tuple(stored) == (199, 199)
            # At most one edit per VOTE_EDIT_SECONDS (5 s): the label catches up within two of them.
            await fake.wait_for(
                lambda: button_labels(fake.message(post_id).message) == ["Vote (199)"], timeout=20
            )
            edits = [
                r for r in fake.requests if r.method == "PATCH" and r.path.endswith(f"/messages/{post_id}")
            ]
            assert 1 <= len(edits) <= 4  # 201 presses, a handful of edits

        # A restart: the same buttons still work.
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            assert (await press(world, "kling:vote:1", post_id, user_id=voters[0])).startswith(
                "Your vote is counted (200 in all)"
            )
            removed = await answer(world, admin(world, "remove", [p.option("post", "#1")]))
            assert removed == "Showcase #1 was taken down; its votes are kept."
            assert fake.channel_messages(showcase_channel) == []
            assert await press(world, "kling:vote:1", post_id, user_id=voters[1]) == (
                "This showcase was taken down, so it takes no votes."
            )


async def test_a_forum_showcase_gets_a_titled_post_with_a_tag(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        loosen_rate_limits(fake)
        forum = fake.add_forum(
            GUILD, "gallery", tags=["video", "art"], moderated_tags=["staff"], require_tag=True
        )
        forum_id = int(forum["id"])
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            unknown = await set_channel(world, forum_id, tag="nope")
            assert unknown == f"<#{forum_id}> has no tag named “nope”. Its tags: video, art, staff."
            assert await set_channel(world, forum_id) == (
                f"Each showcased video becomes a post in <#{forum_id}> with the tag “video”."
            )
            assert await set_channel(world, forum_id, tag="Art") == (
                f"Each showcased video becomes a post in <#{forum_id}> with the tag “art”."
            )
            job_id, result_id = await delivered_job(world, "A <@&1> neon city\nat night, **rain**")
            await press(world, f"kling:show:{job_id}", result_id)
            threads = [c for c in fake.channels.values() if c.get("parent_id") == str(forum_id)]
            assert len(threads) == 1
            thread = threads[0]
            art = next(t["id"] for t in forum["available_tags"] if t["name"] == "art")
            assert thread["name"] == "A neon city at night, rain" and thread["applied_tags"] == [art]
            first = fake.channel_messages(int(thread["id"]))[0]
            assert button_labels(first) == ["Vote (0)"] and first["attachments"]

            removed = await answer(world, admin(world, "remove", [p.option("post", thread["id"])]))
            assert removed.startswith("Showcase #1 was taken down")
            assert int(thread["id"]) not in fake.channels


async def test_setting_the_channel_says_what_permission_is_missing(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        loosen_rate_limits(fake)
        channel = int(fake.add_channel(GUILD, "closed")["id"])
        fake.set_overwrite(channel, fake.bot_user_id, deny=p.ATTACH_FILES | p.EMBED_LINKS, member=True)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            text = await set_channel(world, channel)
            assert text == (
                f"I can't post in <#{channel}>: I'm missing Embed Links, Attach Files there. "
                "Please grant them and try again."
            )
            assert (await sql.server(world.db, GUILD)).channel_id is None


async def add_showcases(world: World, count: int, *, author: int = ALICE, start_votes: int = 0) -> list[int]:
    """Showcases straight into the store (their posts are not what these tests look at)."""
    ids = []
    for n in range(count):
        job = await world.db.fetchone("SELECT COALESCE(MAX(id), 0) + 1 FROM jobs")
        assert job is not None
        job_id = int(job[0])
        await insert_delivered_job(world.db, job_id, user_id=author, at=1000.0 + n)
        showcase, _ = await sql.create(
            world.db,
            guild_id=GUILD,
            job_id=job_id,
            author_id=author,
            shared_by=str(author),
            prompt=f"video {n}",
            settings="5 s · audio",
            at=1000.0 + n,
        )
        await sql.set_posted(world.db, showcase.id, channel_id=5, message_id=6 + n, video_url=None)
        for voter in range(start_votes + n % 3):
            await sql.toggle_vote(world.db, showcase.id, 9000 + voter, at=1.0)
        ids.append(showcase.id)
    return ids


async def embed_answer(world: World, payload: dict[str, Any]) -> dict[str, Any]:
    """The private message, with its embed, that a command answers with after deferring."""
    record = await world.discord.dispatch_interaction(payload)
    callback = await world.discord.wait_for_callback(record.id)
    assert callback.ephemeral

    def shown() -> dict[str, Any] | None:
        for m in world.discord.messages:
            if m.kind == "interaction_response" and m.interaction_id == record.id and is_card(m.message):
                return m.message
        return None

    return await world.discord.wait_for(shown, timeout=10)


async def gallery_message(world: World, **options: Any) -> tuple[int, dict[str, Any]]:
    payload = p.slash_command(world.discord, name="gallery", options=options, user_id=ALICE)
    message = await embed_answer(world, payload)
    return int(message["id"]), message


def page_label(message: dict[str, Any]) -> str:
    return button_labels(message)[1]


def button(message: dict[str, Any], label: str) -> dict[str, Any]:
    return next(c for c in walk(message["components"]) if c["type"] == 2 and c.get("label") == label)


async def turn_page(world: World, message: dict[str, Any], label: str) -> dict[str, Any]:
    button_ = button(message, label)
    before = message.get("edited_timestamp")
    record = await world.discord.dispatch_interaction(
        p.button_click(world.discord, button_["custom_id"], message=message, user_id=ALICE)
    )
    await world.discord.wait_for_callback(record.id)
    stored = world.discord.message(int(message["id"]))
    await world.discord.wait_for(lambda: stored.message.get("edited_timestamp") != before, timeout=10)
    return stored.message


async def test_the_gallery_pages_to_its_ends_and_after_a_restart(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        loosen_rate_limits(fake)
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            _, empty = await gallery_message(world)
            assert text_of(empty) == "## Showcase gallery\nNo showcased videos yet."
            assert page_label(empty) == "1 / 1"
            ids = await add_showcases(world, 23)
            _, first = await gallery_message(world)
            assert page_label(first) == "1 / 3"
            assert text_of(first).count("👍") == 10
            assert "[video 22](https://discord.com/channels/" in text_of(first)
            # Their posts are not in the fake Discord: each row says its video is gone, no broken tile.
            assert text_of(first).count("video no longer available") == 10 and media_urls(first) == []
            prev = button(first, "Previous")
            assert prev["disabled"] is True
            second = await turn_page(world, first, "Next")
            assert page_label(second) == "2 / 3" and "video 12" in text_of(second)
            last = await turn_page(world, second, "Next")
            assert page_label(last) == "3 / 3" and "video 0" in text_of(last)
            nxt = button(last, "Next")
            assert nxt["disabled"] is True

        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            # Showcases removed while paging: page 3 no longer exists, so the last one is shown.
            for showcase_id in ids[:5]:
                await sql.remove(world.db, showcase_id, at=2.0)
            back = await turn_page(world, last, "Previous")
            assert page_label(back) == "2 / 2"

            _, by_votes = await gallery_message(world, sort="votes")
            rows = [r for r in text_of(by_votes).split("\n") if "👍" in r]
            votes = [int(row.split("👍 ")[1].split(" ")[0]) for row in rows]
            assert votes == sorted(votes, reverse=True) and votes[0] == 2

            someone = ALICE + 7
            fake.ensure_member(GUILD, someone)
            await add_showcases(world, 2, author=someone)
            payload = p.slash_command(
                fake, name="gallery", options=[p.option("member", someone, type=p.OPTION_USER)], user_id=ALICE
            )
            member = fake.guilds[GUILD].members[someone]
            payload["data"]["resolved"] = {
                "users": {str(someone): dict(member["user"])},
                "members": {str(someone): {k: v for k, v in member.items() if k != "user"}},
            }
            shown = await embed_answer(world, payload)
            assert text_of(shown).count(f"<@{someone}>") == 3  # heading + 2 rows


async def test_history_lists_my_jobs_privately_including_undeliverable_ones(tmp_path: Path) -> None:
    async with running_world(tmp_path, command_guild_ids=[GUILD], quota={"daily_credits": 1000}) as world:
        for n in range(12):
            await world.ended(await world.animate(f"scene {n}", user_id=ALICE))
        lost = await world.ended(await world.animate("lost one", user_id=ALICE))
        await world.ended(await world.animate("lost one again", user_id=ALICE + 1))
        await world.db.execute("UPDATE jobs SET result_message_id = NULL WHERE id = ?", (lost.id,))

        message = await embed_answer(world, p.slash_command(world.discord, name="history", user_id=ALICE))
        text = text_of(message)
        assert page_label(message) == "1 / 2" and text.count("**job ") == 10
        assert (
            f"**job {lost.id}** · delivered" in text and "(could not be posted; this link may expire)" in text
        )
        assert "lost one again" not in text  # another member's job
        assert "10 credits" in text
        second = await turn_page(world, message, "Next")
        assert page_label(second) == "2 / 2" and text_of(second).count("**job ") == 3


def stable_payload(value: Any, fake_url: str) -> Any:
    """A message's JSON body as sent, in its order, with what differs from run to run (snowflakes, times,
    the fake's port, signed media links, the nonce) replaced by placeholders."""
    if isinstance(value, dict):
        return {k: stable_payload(v, fake_url) for k, v in value.items() if k != "nonce"}
    if isinstance(value, list):
        return [stable_payload(v, fake_url) for v in value]
    if not isinstance(value, str):
        return value
    text = re.sub(r"\?ex=.*", "?SIGNED", value.replace(fake_url, "http://FAKE"))
    return re.sub(r"\d{17,20}", "ID", re.sub(r"<t:\d+:R>", "<t:TIME:R>", text))


# Recorded from the weekly post before cogs/showcase/_cog.py was split (commit 53946d5).
WEEKLY_POST_PAYLOAD: dict[str, Any] = {
    "content": None,
    "components": [
        {
            "type": 17,
            "accent_color": 15844367,
            "spoiler": False,
            "components": [
                {"type": 10, "content": "## Top videos this week"},
                {
                    "type": 12,
                    "items": [
                        {
                            "media": {"url": "http://FAKE/attachments/ID/ID/kling-1.mp4?SIGNED"},
                            "spoiler": False,
                            "description": "1. auto one · 👍 1",
                        }
                    ],
                },
                {
                    "type": 10,
                    "content": "**1.** [auto "
                    "one](https://discord.com/channels/ID/ID/ID) — <@ID> · "
                    "👍 1 · <t:TIME:R>\n"
                    "\n"
                    "**Most active creators**\n"
                    "**1.** <@ID> — 1 video · 👍 1\n"
                    "**2.** <@ID> — 1 video · 👍 0",
                },
            ],
        }
    ],
    "enforce_nonce": True,
    "tts": False,
    "flags": 32768,
    "allowed_mentions": {"parse": []},
}


async def test_top_auto_showcase_opt_out_and_the_weekly_post(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        loosen_rate_limits(fake)
        channel = int(fake.add_channel(GUILD, "showcase")["id"])
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            auto = await answer(world, admin(world, "auto", [p.option("enabled", True)]))
            assert auto.startswith("Every finished video is now showcased")
            quiet = ALICE + 3
            opted = await answer(
                world, p.slash_command(fake, name="showcase", subcommand="opt-out", user_id=quiet)
            )
            assert opted.startswith("Your videos will not be showcased automatically here.")

            await delivered_job(world, "auto one", user_id=ALICE)
            await delivered_job(world, "kept private", user_id=quiet)
            await fake.wait_for(lambda: len(fake.channel_messages(channel)) >= 1, timeout=10)
            await asyncio.sleep(0.3)
            posts = fake.channel_messages(channel)
            assert len(posts) == 1 and "auto one" in text_of(posts[0]).split("\n")

            await press(world, "kling:vote:1", int(posts[0]["id"]), user_id=quiet)
            top = await embed_answer(
                world, p.slash_command(fake, name="top", options={"period": "all"}, user_id=ALICE)
            )
            shown = text_of(top)
            assert shown.startswith("## Top videos of all time\n**1.** [auto one](") and "👍 1" in shown
            assert len(media_urls(top)) == 1 and media_urls(top)[0].startswith(fake.url)  # the hosted copy
            creators = shown.split("**Most active creators**")[1]
            assert f"<@{ALICE}> — 1 video · 👍 1" in creators and f"<@{quiet}> — 1 video · 👍 0" in creators

            weekly = await answer(
                world, admin(world, "weekly", [p.option("enabled", True), p.option("hour", 0)])
            )
            assert weekly == "The week's top videos will be posted every Monday at 00:00 UTC."
            cog = showcase_cog(world)
            assert await cog.weekly_post.post_due() == 1
            assert await cog.weekly_post.post_due() == 0  # once a week
            weekly_posts = [m for m in fake.channel_messages(channel) if text_of(m).startswith("## Top")]
            assert len(weekly_posts) == 1 and is_card(weekly_posts[0])
            assert text_of(weekly_posts[0]).startswith("## Top videos this week")
            # What the weekly post sends Discord, to the byte but for ids, times, the port and the nonce.
            path = f"/channels/{channel}/messages"
            sent = [r.body for r in fake.requests if r.method == "POST" and r.path == path]
            assert json.dumps(stable_payload(sent[-1], fake.url)) == json.dumps(WEEKLY_POST_PAYLOAD)


async def test_a_gallery_message_deleted_meanwhile_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_world(tmp_path, command_guild_ids=[GUILD]) as world:
        await add_showcases(world, 12)
        _, first = await gallery_message(world)
        world.discord.message(int(first["id"])).deleted = True  # dismissed, or removed by a moderator
        next_page = button(first, "Next")
        with caplog.at_level(logging.ERROR):
            record = await world.discord.dispatch_interaction(
                p.button_click(world.discord, next_page["custom_id"], message=first, user_id=ALICE)
            )
            assert (await world.discord.wait_for_callback(record.id)).type == 6  # acknowledged at once
            await world.discord.wait_for(
                lambda: any(r.method == "PATCH" and record.token in r.path for r in world.discord.requests),
                timeout=10,
            )
            await asyncio.sleep(0.3)
        # The edit of the vanished page got Discord's 404 (10008) and was dropped quietly.
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("text", ["9" * 30, "#" + "9" * 20, "https://discord.com/channels/1/2/" + "9" * 30])
def test_a_post_reference_too_large_for_the_store_finds_nothing(text: str) -> None:
    # 30 nines reached SQLite as an integer it cannot hold: the command died after "thinking…".
    from cogs.showcase._cog import parse_post_reference

    assert parse_post_reference(text) == {"message_id": None, "showcase_id": None}


async def test_history_with_very_long_video_links_still_fits_in_one_embed(tmp_path: Path) -> None:
    # A signed storage link can run to hundreds of characters: ten of them overflowed Discord's 4096.
    async with running_world(tmp_path, command_guild_ids=[GUILD], quota={"daily_credits": 1000}) as world:
        for n in range(10):
            await world.ended(await world.animate(f"scene {n}", user_id=ALICE))
        long_url = "https://storage.example.com/v/" + "a" * 500 + ".mp4?X-Amz-Signature=" + "b" * 300
        await world.db.execute("UPDATE jobs SET video_url = ?", (long_url,))
        await world.db.execute("UPDATE jobs SET result_message_id = NULL WHERE id = 3")  # could not be posted
        message = await embed_answer(world, p.slash_command(world.discord, name="history", user_id=ALICE))
        text = text_of(message)
        assert len(text) <= 4000 and text.count("**job ") == 10
        assert f"[video]({long_url}) (could not be posted" in text  # the only copy keeps its link


async def test_deleting_a_video_takes_its_showcase_down(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        loosen_rate_limits(fake)
        channel = int(fake.add_channel(GUILD, "showcase")["id"])
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            job_id, result_id = await delivered_job(world)
            await press(world, f"kling:show:{job_id}", result_id)
            assert len(fake.channel_messages(channel)) == 1
            deleted = await press(world, f"kling:delete:{job_id}", result_id)
            assert (
                deleted == "Deleted the video and its progress message. Its showcase post was taken down too."
            )
            assert fake.channel_messages(channel) == []
            assert (await sql.by_job(world.db, job_id)) is None
