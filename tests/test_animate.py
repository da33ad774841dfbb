"""/animate end to end: the real bot, discord.py and its HTTP client, against fakes on loopback."""

from __future__ import annotations

from pathlib import Path

from tests.world import running_world

EPHEMERAL = 64


async def test_a_good_picture_becomes_one_video_reply(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        interaction = await world.animate("the cat waves @everyone <@&123>")
        callback = await world.discord.wait_for_callback(interaction.id)
        assert callback.latency < 3.0 and callback.type == 5 and callback.flags & EPHEMERAL
        job = await world.ended(interaction)
        assert job.state == "delivered", job
        [outcome] = world.outcome_messages(job.id)
        assert outcome.kind == "channel"
        assert outcome.files[0].data == world.sunra.video_bytes(job.request_id or "")
        mentions = outcome.payload["allowed_mentions"]
        assert mentions["parse"] == [] and [int(u) for u in mentions["users"]] == [job.user_id]
        assert outcome.message["message_reference"]["message_id"] == str(job.progress_message_id)
        progress = world.discord.message(job.progress_message_id or 0)
        assert progress.message["embeds"][0]["description"] == "the cat waves @everyone <@&123>"
        assert progress.payload["allowed_mentions"]["parse"] == []
        answer = await world.private_answer(interaction)
        assert "on its way" in answer
        assert world.sunra.count("submit") == 1
