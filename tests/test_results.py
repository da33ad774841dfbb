"""The buttons under a finished video, their modals, and /animate's loop: the real bot and discord.py
against the fakes on loopback."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from bot.store.jobs import JobRow
from bot.video import plays_inline, probe_video
from cogs.jobs._cards import outcome_mark
from tests import images
from tests.fakes import payloads as p
from tests.fakes.discord_server import CallbackRecord, FakeDiscord, InteractionRecord
from tests.fakes.discord_server._components import buttons as all_buttons, components_text, media_urls
from tests.fakes.sunra_server import FakeSunra
from tests.videos import decoded_frames, make_video
from tests.world import SUNRA_KEY, World, balance_of, loosen_rate_limits, running_world, shown_text

EPHEMERAL = 64
MODAL = 9
BOB = 4343


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The message's buttons that come back to the bot (not link buttons), wherever the layout has them."""
    return [b for b in all_buttons(message.get("components") or []) if b.get("style") != 5]


async def delivered(world: World, prompt: str = "the cat waves", **options: Any) -> JobRow:
    job = await world.ended(await world.animate(prompt, **options))
    assert job.state == "delivered" and job.result_message_id is not None, job
    return job


async def press(
    world: World, action: str, job: JobRow, *, user_id: int = p.DEFAULT_USER_ID, **kw: Any
) -> InteractionRecord:
    world.discord.ensure_member(p.DEFAULT_GUILD_ID, user_id)
    return await world.discord.dispatch_interaction(
        p.button_click(
            world.discord, f"kling:{action}:{job.id}", message=job.result_message_id, user_id=user_id, **kw
        )
    )


async def modal_of(world: World, click: InteractionRecord) -> CallbackRecord:
    callback = await world.discord.wait_for_callback(click.id)
    assert callback.type == MODAL and callback.latency < 3.0, callback
    return callback


def text_inputs(modal: CallbackRecord) -> dict[str, dict[str, Any]]:
    return {c["label"]: c for row in modal.data["components"] for c in row["components"]}


async def submit(
    world: World,
    modal: CallbackRecord,
    values: dict[str, str],
    *,
    user_id: int = p.DEFAULT_USER_ID,
    message: dict[str, Any] | None = None,
) -> InteractionRecord:
    """Submits the modal as Discord does: every input, the prefilled value unless `values` changes it."""
    inputs = text_inputs(modal)
    fields = {i["custom_id"]: values.get(label, i.get("value", "")) for label, i in inputs.items()}
    return await world.discord.dispatch_interaction(
        p.modal_submit(world.discord, modal.data["custom_id"], fields, user_id=user_id, message=message)
    )


# ----------------------------------------------------------------------------------------------- loop


async def test_loop_sends_the_start_image_as_the_end_image_uploaded_once(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world, loop=True)
        [submitted] = world.sunra.jobs.values()
        assert submitted.input["end_image_url"] == submitted.input["start_image_url"] == job.start_image_url
        assert world.sunra.count("upload_initiate") == 1


async def test_loop_with_an_end_image_is_refused_politely_and_changes_nothing(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        interaction = await world.animate(loop=True, end_image=world.image(filename="end.png"))
        callback = await world.discord.wait_for_callback(interaction.id)
        assert callback.type == 4 and callback.flags & EPHEMERAL
        assert "cannot be combined with `end_image`" in callback.data["content"]
        assert world.sunra.count("submit") == 0 and world.sunra.count("upload_initiate") == 0


# ----------------------------------------------------------------------------------------------- buttons


async def test_a_finished_video_carries_retry_remix_extend_and_delete(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)
        post = world.discord.message(job.result_message_id or 0)
        found = [(b["label"], b["custom_id"]) for b in buttons(post.message)]
        assert found == [
            ("Retry", f"kling:retry:{job.id}"),
            ("Remix", f"kling:remix:{job.id}"),
            ("Extend", f"kling:extend:{job.id}"),
            ("Showcase", f"kling:show:{job.id}"),
            ("Delete", f"kling:delete:{job.id}"),
        ]
        assert all(b.get("emoji") for b in buttons(post.message))


async def test_every_button_works_after_a_restart(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        loosen_rate_limits(discord)
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            job = await delivered(world, "first take")
            remix_opened_before = await modal_of(world, await press(world, "remix", job))
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            click = await press(world, "retry", job)
            callback = await world.discord.wait_for_callback(click.id)
            assert callback.type == 5 and callback.flags & EPHEMERAL and callback.latency < 3.0
            assert "on its way" in await world.private_answer(click)
            again = await world.ended(click)
            assert again.state == "delivered" and again.id != job.id
            [first, second] = sorted(sunra.jobs.values(), key=lambda j: j.created_at)
            assert second.input == first.input  # the same inputs, the same uploaded pictures
            assert sunra.count("upload_initiate") == 1

            remix = await modal_of(world, await press(world, "remix", job))
            assert text_inputs(remix)["Prompt"]["value"] == "first take"
            sent = await submit(world, remix_opened_before, {"Prompt": "second take"})  # opened before
            assert (await world.ended(sent)).state == "delivered"
            assert [j.input["prompt"] for j in sunra.jobs.values()][-1] == "second take"
            extend = await modal_of(world, await press(world, "extend", job))
            assert text_inputs(extend)["Prompt"]["value"] == "first take"

            click = await press(world, "delete", job)
            assert "deleted" in (await world.private_answer(click)).lower()
            assert world.discord.message(job.result_message_id or 0).deleted
            assert world.discord.message(job.progress_message_id or 0).deleted
            assert (await world.bot.job_store.get(job.id)) == job  # the record stays


async def test_retry_by_another_member_spends_their_credits_not_the_owners(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)
        alice, bob = await balance_of(world), await balance_of(world, BOB)
        click = await press(world, "retry", job, user_id=BOB)
        again = await world.ended(click)
        assert again.state == "delivered" and again.user_id == BOB
        assert await balance_of(world) == alice and await balance_of(world, BOB) == bob - again.cost_credits
        await world.assert_ledger_matches_jobs()


async def test_presses_by_members_who_may_not_are_refused_privately(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota={"daily_credits": 10}) as world:
        job = await delivered(world)

        click = await press(world, "delete", job, user_id=BOB)
        assert "only the member" in (await world.private_answer(click)).lower()
        assert not world.discord.message(job.result_message_id or 0).deleted

        click = await press(world, "retry", job)  # the owner has spent the day's 10 credits
        answer = await world.private_answer(click)
        assert "credits" in answer, answer
        await world.bot.quota.block(
            guild_id=p.DEFAULT_GUILD_ID, actor_id=p.DEFAULT_OWNER_ID, user_id=BOB, reason=None
        )
        click = await press(world, "retry", job, user_id=BOB)
        answer = await world.private_answer(click)
        assert "block" in answer.lower(), answer
        assert world.sunra.count("submit") == 1

        moderator = await press(world, "delete", job, user_id=BOB, member_permissions=1 << 13)
        assert "deleted" in (await world.private_answer(moderator)).lower()


async def test_a_member_kept_from_animate_here_cannot_use_its_buttons(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)
        [animate] = [c for c in world.discord.registered_commands() if c["name"] == "animate"]
        world.discord.command_permissions[p.DEFAULT_GUILD_ID] = [
            {
                "id": animate["id"],
                "application_id": str(world.discord.application_id),
                "guild_id": str(p.DEFAULT_GUILD_ID),
                "permissions": [{"id": str(BOB), "type": 2, "permission": False}],
            }
        ]
        click = await press(world, "retry", job, user_id=BOB)
        assert "can't use /animate in this channel" in await world.private_answer(click)
        assert (await world.ended(await press(world, "retry", job))).state == "delivered"  # others may
        assert world.sunra.count("submit") == 2


async def test_a_button_of_a_job_this_database_does_not_know_gets_a_polite_answer(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        for action in ("retry", "remix", "extend", "delete"):
            click = await world.discord.dispatch_interaction(
                p.button_click(world.discord, f"kling:{action}:999")
            )
            answer = await world.private_answer(click)
            assert "don't know this video" in answer, (action, answer)
        assert world.sunra.count("submit") == 0


async def test_remix_submits_the_edited_prompt_with_the_same_pictures(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world, "a calm\nsea", negative_prompt="rain")
        modal = await modal_of(world, await press(world, "remix", job))
        inputs = text_inputs(modal)
        assert inputs["Prompt"]["style"] == 2 and inputs["Prompt"]["value"] == "a calm\nsea"
        assert inputs["Prompt"]["max_length"] == 2500 and inputs["Negative prompt"]["value"] == "rain"
        sent = await submit(
            world,
            modal,
            {"Prompt": "a stormy\nsea", "Negative prompt": "", "Duration (5 or 10 seconds)": "10"},
        )
        remixed = await world.ended(sent)
        assert remixed.state == "delivered" and remixed.cost_credits == 20
        [first, second] = sorted(world.sunra.jobs.values(), key=lambda j: j.created_at)
        assert second.input["prompt"] == "a stormy\nsea" and second.input["duration"] == "10"
        assert second.input["negative_prompt"] == "blur, distort, and low quality"
        assert second.input["start_image_url"] == first.input["start_image_url"]

        modal = await modal_of(world, await press(world, "remix", job))
        sent = await submit(world, modal, {"Prompt": "x", "Duration (5 or 10 seconds)": "7"})
        assert "5 or 10" in await world.private_answer(sent)
        await world.bot.prompt_filter.add(p.DEFAULT_GUILD_ID, "storm*", actor_id=p.DEFAULT_OWNER_ID)
        modal = await modal_of(world, await press(world, "remix", job))
        sent = await submit(world, modal, {"Prompt": "a stormy night"})
        assert "stormy" in await world.private_answer(sent)  # the server's block list applies too
        assert world.sunra.count("submit") == 2


async def test_extend_starts_the_new_video_on_the_last_frame_scaled_up(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        last = images.marked((480, 270))  # under Kling's 300 px: scaled up without asking
        world.sunra.video_content = make_video(tmp_path / "clip.mp4", size=(480, 270), last=last).read_bytes()
        job = await delivered(world, "a boat sails")
        modal = await modal_of(world, await press(world, "extend", job))
        # The API's link has expired: the frame comes from the post's own attachment on Discord.
        world.sunra.fail_next("video", 404, times=10)
        post = world.discord.message(job.result_message_id or 0).message
        sent = await submit(world, modal, {"Prompt": "the boat reaches the shore"}, message=post)
        extended = await world.ended(sent)
        assert extended.state == "delivered"
        [_, second] = sorted(world.sunra.jobs.values(), key=lambda j: j.created_at)
        assert second.input["prompt"] == "the boat reaches the shore"
        assert "end_image_url" not in second.input or second.input["end_image_url"] is None
        upload = world.sunra.uploads[second.input["start_image_url"]]
        frame = Image.open(BytesIO(upload.data)).convert("RGB")
        assert frame.size == (533, 300)
        expected = last.resize(frame.size, Image.Resampling.LANCZOS)
        for box in ((10, 10, 110, 60), (300, 150, 520, 290)):  # inside the red block, inside the blue
            difference = ImageChops.difference(frame.crop(box), expected.crop(box))
            assert max(high for _, high in difference.getextrema()) <= 16, box
        post = world.discord.message(extended.result_message_id or 0)
        link = f"/channels/{p.DEFAULT_GUILD_ID}/{p.DEFAULT_CHANNEL_ID}/{job.result_message_id}"
        assert link in shown_text(post.message)
        progress = world.discord.message(extended.progress_message_id or 0)
        assert link in shown_text(progress.message)


# ------------------------------------------------------------------------------------------- videos that fit


async def test_a_video_larger_than_the_upload_limit_is_reencoded_to_fit_and_plays(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        limit = 2 * 1024 * 1024
        world.discord.set_upload_limit(p.DEFAULT_GUILD_ID, limit)
        source = make_video(tmp_path / "big.mp4", frames=8, size=(960, 540), audio=True, lossless=True)
        world.sunra.video_content = source.read_bytes()
        assert len(world.sunra.video_content) > 3 * limit
        job = await delivered(world)
        [post] = world.outcome_messages(job.id)
        [upload] = post.files
        assert upload.size < limit
        assert "Re-encoded" in shown_text(post.message) and str(job.video_url) in shown_text(post.message)
        played = tmp_path / "played.mp4"
        played.write_bytes(upload.data)
        assert decoded_frames(played) == 8
        assert [b["label"] for b in buttons(post.message)] == [
            "Retry",
            "Remix",
            "Extend",
            "Showcase",
            "Delete",
        ]


# ------------------------------------------------------------------------------------ Animate from a message

MENU_LABELS = ["Prompt", "Negative prompt", "Duration (5 or 10 seconds)", "Sound (yes or no)"]


async def use_menu(world: World, message: dict[str, Any], *, user_id: int = BOB) -> InteractionRecord:
    world.discord.ensure_member(p.DEFAULT_GUILD_ID, user_id)
    return await world.discord.dispatch_interaction(
        p.message_command(world.discord, message, user_id=user_id)
    )


async def test_the_animate_menu_on_a_message_with_an_embedded_picture(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        picture = world.image(images.png((800, 600)), filename="sunset.png")
        post = world.discord.add_message(p.DEFAULT_CHANNEL_ID, "look https://example.com/sunset.png")
        post.message["embeds"] = [
            {
                "type": "image",
                "url": "https://example.com/sunset.png",
                "thumbnail": {
                    "url": "https://example.com/sunset.png",
                    "proxy_url": picture["proxy_url"],
                    "width": 800,
                    "height": 600,
                },
            }
        ]
        menu = await modal_of(world, await use_menu(world, post.message))
        assert list(text_inputs(menu)) == [*MENU_LABELS, "Loop (yes or no)"]
        assert text_inputs(menu)["Prompt"]["style"] == 2
        sent = await submit(world, menu, {"Prompt": "the sun sets", "Loop (yes or no)": "yes"}, user_id=BOB)
        job = await world.ended(sent)
        assert job.state == "delivered" and job.user_id == BOB
        [submitted] = world.sunra.jobs.values()
        assert submitted.input["prompt"] == "the sun sets"
        assert submitted.input["end_image_url"] == submitted.input["start_image_url"]  # loop
        upload = world.sunra.uploads[submitted.input["start_image_url"]]
        assert Image.open(BytesIO(upload.data)).size == (800, 600)
        assert not any("example.com" in r.path for r in world.discord.requests)


async def test_the_animate_menu_offers_the_second_picture_as_the_last_frame(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        first = world.image(images.png((640, 480)), filename="a.png", ephemeral=False)
        green = images.encode(Image.new("RGB", (640, 480), images.GREEN), "PNG")
        second = world.image(green, filename="b.png", ephemeral=False)
        post = world.discord.add_message(p.DEFAULT_CHANNEL_ID, "two", attachments=[first, second])
        menu = await modal_of(world, await use_menu(world, post.message))
        label = "Second picture as the last frame (yes or no)"
        assert text_inputs(menu)[label]["value"] == "yes"
        job = await world.ended(
            await submit(world, menu, {"Prompt": "from a to b", "Sound (yes or no)": "no"})
        )
        assert job.state == "delivered" and job.cost_credits == 5
        [submitted] = world.sunra.jobs.values()
        start = world.sunra.uploads[submitted.input["start_image_url"]].data
        end = world.sunra.uploads[submitted.input["end_image_url"]].data
        assert (
            Image.open(BytesIO(end)).convert("RGB").getpixel((5, 5))
            == images.GREEN
            != Image.open(BytesIO(start)).convert("RGB").getpixel((5, 5))
        )


async def test_the_animate_menu_on_a_message_without_a_picture_explains_privately(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        note = world.discord.add_attachment("notes.txt", b"hello", "text/plain", ephemeral=False)
        post = world.discord.add_message(p.DEFAULT_CHANNEL_ID, "just words", attachments=[note])
        click = await use_menu(world, post.message)
        callback = await world.discord.wait_for_callback(click.id)
        assert callback.type == 4 and callback.flags & EPHEMERAL
        assert "no picture I can use" in callback.data["content"]
        assert world.sunra.count("upload_initiate") == 0


async def test_a_video_too_large_that_cannot_be_reencoded_is_delivered_by_its_url(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        world.discord.set_upload_limit(p.DEFAULT_GUILD_ID, 100_000)
        world.sunra.next_job(video_size=300_000)  # filler bytes, not a video
        job = await delivered(world)
        [outcome] = world.outcome_messages(job.id)
        assert outcome.files == [] and str(job.video_url) in shown_text(outcome.message)
        assert "Re-encoded" not in shown_text(outcome.message)
        assert not list((tmp_path / "work").glob("*.mp4"))  # nothing left behind


async def test_presses_on_a_job_whose_inputs_are_gone_get_a_polite_answer(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)
        world.sunra.fail_next("video", 404, times=10)  # the API's link expired
        modal = await modal_of(world, await press(world, "extend", job))
        sent = await submit(world, modal, {})  # no message: the post's attachment is not at hand either
        assert "no longer available" in await world.private_answer(sent)
        await world.db.execute("UPDATE jobs SET start_image_url = NULL WHERE id = ?", (job.id,))
        for action in ("retry", "remix"):
            answer = await world.private_answer(await press(world, action, job))
            assert "no longer available" in answer and "Nothing was charged" in answer, (action, answer)
        assert world.sunra.count("submit") == 1 and await balance_of(world) == 50 - job.cost_credits


async def test_extend_of_a_video_that_cannot_be_decoded_says_nothing_was_charged(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)  # the fake's video is filler bytes, not a video
        modal = await modal_of(world, await press(world, "extend", job))
        post = world.discord.message(job.result_message_id or 0).message
        answer = await world.private_answer(await submit(world, modal, {}, message=post))
        assert answer.startswith("The video could not be read") and "Nothing was charged" in answer, answer
        assert world.sunra.count("submit") == 1 and await balance_of(world) == 50 - job.cost_credits


async def test_a_remix_refused_for_credits_quotes_the_price_of_what_was_asked(tmp_path: Path) -> None:
    async with running_world(tmp_path, quota={"daily_credits": 15}) as world:
        job = await delivered(world)  # 10 credits: 5 left
        modal = await modal_of(world, await press(world, "remix", job))
        answer = await world.private_answer(await submit(world, modal, {"Duration (5 or 10 seconds)": "10"}))
        assert answer.startswith("This video costs 20 credits, but you have 5 left."), answer


async def test_the_animate_menu_on_a_message_with_only_a_video_explains_instead_of_asking(
    tmp_path: Path,
) -> None:
    async with running_world(tmp_path) as world:
        clip = make_video(tmp_path / "clip.mp4", size=(640, 360)).read_bytes()
        video = world.image(clip, filename="clip.mp4", content_type="video/mp4", width=640, height=360)
        post = world.discord.add_message(p.DEFAULT_CHANNEL_ID, "my clip", attachments=[video])
        callback = await world.discord.wait_for_callback((await use_menu(world, post.message)).id)
        assert callback.type == 4 and callback.flags & EPHEMERAL  # not a form to fill in for nothing
        assert "no picture I can use" in callback.data["content"]


async def test_an_animate_form_opened_before_a_restart_makes_its_video_after_it(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        loosen_rate_limits(discord)
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            picture = world.image(images.png((640, 480)), filename="a.png", ephemeral=False)
            post = world.discord.add_message(p.DEFAULT_CHANNEL_ID, "pic", attachments=[picture])
            menu = await modal_of(world, await use_menu(world, post.message))
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            sent = await submit(world, menu, {"Prompt": "after the restart"}, user_id=BOB)
            job = await world.ended(sent)
            assert job.state == "delivered" and job.user_id == BOB
            [submitted] = world.sunra.jobs.values()
            assert submitted.input["prompt"] == "after the restart"


@pytest.mark.parametrize(
    ("codec", "pixel_format", "size"),
    [
        ("libx265", "yuv420p", (320, 180)),  # HEVC
        ("libx264", "yuv420p10le", (320, 180)),  # 10-bit
        ("libx264", "yuv444p", (320, 180)),  # 4:4:4
        ("libx264", "yuv444p", (321, 179)),  # odd sides
    ],
    ids=["hevc", "10-bit", "yuv444", "odd-size"],
)
async def test_a_video_discord_would_not_play_inline_is_reencoded_though_it_fits(
    tmp_path: Path, codec: str, pixel_format: str, size: tuple[int, int]
) -> None:
    source = make_video(tmp_path / "odd.mp4", frames=6, size=size, codec=codec, pixel_format=pixel_format)
    facts = probe_video(source)
    assert not plays_inline(facts), facts
    async with running_world(tmp_path) as world:
        world.sunra.video_content = source.read_bytes()
        job = await delivered(world)
        [post] = world.outcome_messages(job.id)
        [upload] = post.files
        played = tmp_path / "played.mp4"
        played.write_bytes(upload.data)
        shown = probe_video(played)
        assert plays_inline(shown) and (shown.codec, shown.pixel_format) == ("h264", "yuv420p"), shown
        assert decoded_frames(played) == 6
        assert media_urls(post.message["components"]) == [f"attachment://{upload.filename}"]


async def test_an_h264_yuv420p_video_that_fits_is_posted_as_it_came(tmp_path: Path) -> None:
    source = make_video(tmp_path / "fine.mp4", frames=6, size=(320, 180))
    async with running_world(tmp_path) as world:
        world.sunra.video_content = source.read_bytes()
        job = await delivered(world)
        [post] = world.outcome_messages(job.id)
        assert post.files[0].data == source.read_bytes()
        sent = tmp_path / "as-sent.mp4"
        sent.write_bytes(post.files[0].data)
        assert plays_inline(probe_video(sent))


@pytest.mark.parametrize("length", [400, 900, 2500])
async def test_a_video_too_large_to_upload_gets_a_card_discord_takes_whatever_its_link(
    tmp_path: Path, length: int
) -> None:
    async with running_world(tmp_path, jobs={"max_video_mb": 0.2}) as world:
        world.discord.set_upload_limit(p.DEFAULT_GUILD_ID, 100_000)
        base = f"{world.sunra.url}/files/video.mp4?sig="
        link = base + "a" * (length - len(base))
        world.sunra.next_job(
            result={"video": {"url": link, "content_type": "video/mp4", "file_size": 300_000}}
        )
        job = await delivered(world)
        [post] = world.outcome_messages(job.id)
        assert post.files == [] and post.message["flags"] & (1 << 15)
        links = [b["url"] for b in all_buttons(post.message["components"]) if b.get("style") == 5]
        # A link button takes 512 characters; a longer link is in the card's text.
        assert links == ([link] if length <= 512 else [])
        assert (link in components_text(post.message["components"])) == (length > 512)
        assert next(b["custom_id"] for b in buttons(post.message)) == f"kling:retry:{job.id}"


async def test_buttons_on_a_result_posted_before_cards_still_work(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await delivered(world)
        # The result as it was posted before cards: content, an embed footer, a row of buttons.
        old = world.discord.message(job.result_message_id or 0).message
        row = [
            {
                "type": 2,
                "style": 4 if kind == "delete" else 2,
                "label": kind,
                "custom_id": f"kling:{kind}:{job.id}",
            }
            for kind in ("retry", "remix", "extend", "show", "delete")
        ]
        old.update(
            flags=0,
            content=f"<@{job.user_id}> your video is ready!",
            embeds=[{"type": "rich", "footer": {"text": outcome_mark(job.id)}}],
            components=[{"type": 1, "components": row}],
        )
        click = await press(world, "retry", job)
        assert "on its way" in await world.private_answer(click)
        assert (await world.ended(click)).state == "delivered"
        assert (await modal_of(world, await press(world, "remix", job))).type == MODAL
        click = await press(world, "delete", job)
        assert "deleted" in (await world.private_answer(click)).lower()
        assert world.discord.message(job.result_message_id or 0).deleted
