"""A picture refused only for its shape or size: fixed on the member's word, charged only when confirmed."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from tests import images
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord, InteractionRecord, MessageRecord
from tests.fakes.sunra_server import FakeSunra
from tests.world import SUNRA_KEY, World, loosen_rate_limits, running_world


def answer_message(world: World, interaction: InteractionRecord) -> MessageRecord:
    [message] = [
        m
        for m in world.discord.messages
        if m.kind == "interaction_response" and m.interaction_id == interaction.id
    ]
    return message


def labels(message: MessageRecord) -> list[str]:
    return [c.get("label", "") for row in message.message.get("components", []) for c in row["components"]]


def custom_id_of(message: MessageRecord, label: str) -> str:
    [custom_id] = [
        c["custom_id"]
        for row in message.message.get("components", [])
        for c in row["components"]
        if c.get("label") == label
    ]
    return str(custom_id)


async def press(world: World, message: MessageRecord, label: str) -> None:
    edits = len(message.edits)
    click = await world.discord.dispatch_interaction(
        p.button_click(world.discord, custom_id_of(message, label), message=message.message)
    )
    callback = await world.discord.wait_for_callback(click.id)
    assert callback.latency < 3.0
    await world.discord.wait_for(lambda: len(message.edits) > edits or None, timeout=10)


def shown_picture(message: MessageRecord) -> Image.Image:
    [file] = message.edits[-1].files
    return Image.open(BytesIO(file.data))


async def charged(world: World) -> int:
    row = await world.db.fetchone("SELECT COUNT(*) FROM quota_ledger WHERE kind = 'reserve'")
    assert row is not None
    return int(row[0])


async def refused_with_an_offer(world: World, size: tuple[int, int], expected: list[str]) -> MessageRecord:
    interaction = await world.animate(image=world.image(images.png(size)))
    answer = await world.private_answer(interaction)
    assert "fix it for you" in answer, answer
    message = answer_message(world, interaction)
    await world.discord.wait_for(lambda: labels(message) == expected or None, timeout=10)
    job = await world.ended(interaction)
    assert job.state == "refused"
    assert await charged(world) == 0 and world.sunra.count("upload_initiate") == 0
    return message


async def test_a_panorama_is_cropped_shown_and_animated_only_when_confirmed(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        message = await refused_with_an_offer(
            world, (1200, 300), ["Crop", "Pad (blurred edges)", "Pad (plain edges)"]
        )
        assert "ratio" in message.content
        await press(world, message, "Crop")
        assert shown_picture(message).size == (750, 300)
        assert labels(message)[-1] == "Animate this" and await charged(world) == 0
        assert world.sunra.count("submit") == 0

        await press(world, message, "Animate this")
        assert "on its way" in message.content
        await world.sunra.wait_until(lambda: world.sunra.count("submit") == 1, within=10)
        [submitted] = world.sunra.jobs.values()
        upload = world.sunra.uploads[submitted.input["start_image_url"]]
        assert Image.open(BytesIO(upload.data)).size == (750, 300)
        job = await world.bot.job_store.get(2)
        assert job is not None and job.user_id == p.DEFAULT_USER_ID
        assert await charged(world) == 1


@pytest.mark.parametrize("fix", ["Pad (blurred edges)", "Pad (plain edges)"])
async def test_a_panorama_can_be_padded_instead(tmp_path: Path, fix: str) -> None:
    async with running_world(tmp_path) as world:
        message = await refused_with_an_offer(
            world, (1200, 300), ["Crop", "Pad (blurred edges)", "Pad (plain edges)"]
        )
        await press(world, message, fix)
        padded = shown_picture(message).convert("RGB")
        assert padded.size == (1200, 480)
        assert padded.crop((0, 90, 1200, 390)).tobytes() == images.marked((1200, 300)).tobytes()
        assert await charged(world) == 0 and world.sunra.count("submit") == 0


async def test_a_tiny_icon_is_scaled_up_and_animated(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        message = await refused_with_an_offer(world, (100, 100), ["Upscale to 300 px"])
        await press(world, message, "Upscale to 300 px")
        assert shown_picture(message).size == (300, 300)
        await press(world, message, "Animate this")
        await world.sunra.wait_until(lambda: world.sunra.count("submit") == 1, within=10)
        [submitted] = world.sunra.jobs.values()
        assert Image.open(BytesIO(world.sunra.uploads[submitted.input["start_image_url"]].data)).size == (
            300,
            300,
        )


async def test_a_fix_offered_before_a_restart_works_after_it(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        loosen_rate_limits(discord)
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            message = await refused_with_an_offer(
                world, (1200, 300), ["Crop", "Pad (blurred edges)", "Pad (plain edges)"]
            )
            await press(world, message, "Crop")
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            await press(world, message, "Pad (plain edges)")  # the buttons hold no state
            assert shown_picture(message).size == (1200, 480)
        async with running_world(tmp_path, discord=discord, sunra=sunra) as world:
            await press(world, message, "Animate this")
            assert "on its way" in message.content
            await world.sunra.wait_until(lambda: world.sunra.count("submit") == 1, within=10)
            [submitted] = world.sunra.jobs.values()
            upload = world.sunra.uploads[submitted.input["start_image_url"]]
            assert Image.open(BytesIO(upload.data)).size == (1200, 480)
            assert await charged(world) == 1
