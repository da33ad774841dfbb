"""The fake Discord works with an unmodified discord.py bot: login, gateway, interactions, REST records."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests.fakes import payloads as p
from tests.fakes.discord_server import PRIVILEGED_INTENTS, FakeDiscord, FakeDiscordProcess, running_client

GUILD = discord.Object(p.DEFAULT_GUILD_ID)


class PingView(discord.ui.View):
    """A persistent view (timeout=None, fixed custom_id): survives restarts via bot.add_view."""

    def __init__(self, bot: FakeTestBot) -> None:
        super().__init__(timeout=None)
        self.bot = bot

    @discord.ui.button(label="Ack", custom_id="ping:ack", style=discord.ButtonStyle.primary)
    async def ack(self, interaction: discord.Interaction, button: discord.ui.Button[PingView]) -> None:
        self.bot.clicks.append(("ping:ack", interaction.user.id))
        await interaction.response.edit_message(content="acknowledged", view=None)


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"job:(?P<id>\d+):cancel"
):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Cancel", custom_id=f"job:{job_id}:cancel"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: Any, /
    ) -> JobButton:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        assert isinstance(bot, FakeTestBot)
        bot.clicks.append((f"job:{self.job_id}", interaction.user.id))
        await interaction.response.send_message(f"cancelled job {self.job_id}", ephemeral=True)


class FakeTestBot(commands.Bot):
    def __init__(self, intents: discord.Intents | None = None) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=intents or discord.Intents.default())
        self.clicks: list[tuple[str, int]] = []
        self.errors: list[BaseException] = []
        self.results: list[Any] = []
        self.proceed = asyncio.Event()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py sleeps 5 s before every non-initial IDENTIFY (after INVALID_SESSION); not in tests.
        return None

    async def setup_hook(self) -> None:
        bot = self

        @app_commands.command(name="ping", description="Ping the bot")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True)
            await interaction.followup.send("pong", ephemeral=True)
            assert isinstance(interaction.channel, discord.TextChannel)
            sent = await interaction.channel.send(
                f"Hello {interaction.user.mention}, here is a file",
                file=discord.File(io.BytesIO(b"file-bytes-123"), "hello.txt"),
                view=PingView(bot),
                allowed_mentions=discord.AllowedMentions(
                    users=[interaction.user], roles=False, everyone=False
                ),
            )
            bot.results.append(sent)

        @app_commands.command(name="inspect", description="Describe a picture")
        @app_commands.describe(image="A picture", note="A note")
        async def inspect(
            interaction: discord.Interaction, image: discord.Attachment, note: str = ""
        ) -> None:
            data = await image.read()
            with Image.open(io.BytesIO(data)) as im:
                size = im.size
            limit = interaction.filesize_limit
            await interaction.response.send_message(
                f"{image.filename} {len(data)} bytes {size[0]}x{size[1]} limit={limit} {note}"
            )

        @app_commands.command(name="slow", description="Defer, wait, then follow up")
        async def slow(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await bot.proceed.wait()
            await interaction.followup.send("finally")

        @self.tree.error
        async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
            bot.errors.append(getattr(error, "original", error))

        for command in (ping, inspect, slow):
            self.tree.add_command(command, guild=GUILD)
        await self.tree.sync(guild=GUILD)
        self.add_view(PingView(self))
        self.add_dynamic_items(JobButton)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


def _channel(bot: commands.Bot) -> discord.TextChannel:
    channel = bot.get_channel(p.DEFAULT_CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)
    return channel


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


async def test_login_gateway_and_cache(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        assert bot.user is not None and bot.user.id == p.DEFAULT_APPLICATION_ID and bot.user.bot
        assert bot.application_id == fake.application_id
        guild = bot.get_guild(p.DEFAULT_GUILD_ID)
        assert (
            guild is not None and guild.name == "Kling Test Server" and guild.owner_id == p.DEFAULT_OWNER_ID
        )
        channel = _channel(bot)
        perms = channel.permissions_for(guild.me)
        assert perms.send_messages and perms.attach_files and perms.embed_links and not perms.administrator
        # discord.py asked for v10 JSON with the stream compression it can decode; the fake compressed.
        query = fake.gateway_connections[0]
        assert query["v"] == "10" and query["encoding"] == "json"
        assert query["compress"] == discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE
        # one command sync, guild scoped, ids echoed
        assert len(fake.command_puts) == 1 and fake.command_puts[0].guild_id == p.DEFAULT_GUILD_ID
        assert {c["name"] for c in fake.registered_commands()} == {"ping", "inspect", "slow"}
        paths = [r.path for r in fake.requests]
        assert paths[:2] == ["/users/@me", "/oauth2/applications/@me"]
        assert all(r.status == 200 for r in fake.requests)
    assert fake.invalid_requests == 0


async def test_slash_command_defer_followup_and_channel_message(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        inter = await fake.dispatch_interaction(p.slash_command(fake, name="ping"))
        assert len(inter.delivered_to) == 1

        callback = await fake.wait_for_callback(inter.id)
        assert callback.type == 5 and callback.flags == 64 and callback.ephemeral
        assert callback.latency < 1.0

        followup = await fake.wait_for_followup(inter.id)
        assert followup.payload["content"] == "pong"
        # The first followup after a deferred response fills the ephemeral "thinking" message.
        assert followup.replaced_original and followup.message_id == callback.message_id
        original = fake.message(followup.message_id)
        assert original.kind == "interaction_response" and original.ephemeral and original.content == "pong"

        posted = await fake.wait_for_message(kind="channel")
        assert posted.files[0].filename == "hello.txt" and posted.files[0].data == b"file-bytes-123"
        mentions = posted.payload["allowed_mentions"]
        assert mentions == {"parse": [], "users": [p.DEFAULT_USER_ID], "replied_user": True}
        assert [u["id"] for u in posted.message["mentions"]] == [str(p.DEFAULT_USER_ID)]
        button = posted.message["components"][0]["components"][0]
        assert button["custom_id"] == "ping:ack"
        attachment = posted.message["attachments"][0]
        assert attachment["size"] == 14 and attachment["content_type"].startswith("text/plain")

        await fake.wait_for(lambda: bot.results, what="the command to finish")
        sent: discord.Message = bot.results[0]
        assert sent.id == posted.id and sent.attachments[0].filename == "hello.txt"
        assert await sent.attachments[0].read() == b"file-bytes-123"  # served by the fake's "CDN"
        assert fake.channel_messages(p.DEFAULT_CHANNEL_ID)[-1]["id"] == str(sent.id)
    assert not bot.errors and fake.invalid_requests == 0 and not fake.unhandled


async def test_button_click_reaches_persistent_view(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        await fake.dispatch_interaction(p.slash_command(fake, name="ping"))
        posted = await fake.wait_for_message(kind="channel")

        click = await fake.dispatch_interaction(p.button_click(fake, "ping:ack", message=posted.message))
        callback = await fake.wait_for_callback(click.id)
        assert callback.type == 7 and callback.data["content"] == "acknowledged"
        assert bot.clicks == [("ping:ack", p.DEFAULT_USER_ID)]
        assert posted.message["content"] == "acknowledged" and posted.message["components"] == []
        assert posted.edits[0].via == "callback"


async def test_button_click_reaches_dynamic_item(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        view = discord.ui.View(timeout=None)
        view.add_item(JobButton(42))
        sent = await _channel(bot).send("job 42 running", view=view)

        click = await fake.dispatch_interaction(p.button_click(fake, "job:42:cancel", message=sent.id))
        callback = await fake.wait_for_callback(click.id)
        assert callback.type == 4 and callback.ephemeral and callback.data["content"] == "cancelled job 42"
        assert bot.clicks == [("job:42", p.DEFAULT_USER_ID)]


async def test_attachment_option_is_resolved_and_downloadable(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        image = fake.add_attachment("cat.png", _png(320, 240))
        assert image["width"] == 320 and image["height"] == 240 and image["content_type"] == "image/png"
        payload = p.slash_command(fake, name="inspect", options={"image": image, "note": "hi"})
        assert payload["data"]["resolved"]["attachments"][image["id"]]["filename"] == "cat.png"
        inter = await fake.dispatch_interaction(payload)
        callback = await fake.wait_for_callback(inter.id)
        size = len(_png(320, 240))
        assert callback.type == 4
        assert callback.data["content"] == f"cat.png {size} bytes 320x240 limit=10485760 hi"
        assert not bot.errors


async def test_refusals_raise_the_right_discord_errors(fake: FakeDiscord) -> None:
    # Refused posts count against the bucket too; 9 posts would make discord.py wait out 5/5 s.
    fake.set_rate_limit("message_create", 50, 1.0)
    async with running_client(FakeTestBot(), fake) as bot:
        channel = _channel(bot)

        fake.refuse(channel.id, 50013)
        with pytest.raises(discord.Forbidden) as forbidden:
            await channel.send("nope")
        assert forbidden.value.code == 50013 and forbidden.value.status == 403

        fake.refuse(channel.id, 10003)
        with pytest.raises(discord.NotFound) as not_found:
            await channel.send("nope")
        assert not_found.value.code == 10003

        fake.unrefuse(channel.id)
        fake.set_upload_limit(p.DEFAULT_GUILD_ID, 1000)
        with pytest.raises(discord.HTTPException) as too_big:
            await channel.send(file=discord.File(io.BytesIO(b"x" * 1001), "big.bin"))
        assert too_big.value.status == 413 and too_big.value.code == 40005
        await channel.send(file=discord.File(io.BytesIO(b"x" * 1000), "ok.bin"))

        # Permissions come from roles and overwrites; discord.py's cache follows via CHANNEL_UPDATE.
        fake.set_overwrite(channel.id, p.DEFAULT_BOT_ROLE_ID, deny=p.ATTACH_FILES)
        with pytest.raises(discord.Forbidden) as no_attach:
            await channel.send(file=discord.File(io.BytesIO(b"x"), "a.bin"))
        assert no_attach.value.code == 50013
        await channel.send("text still works")
        guild = channel.guild
        await fake.wait_for(lambda: not channel.permissions_for(guild.me).attach_files, what="CHANNEL_UPDATE")

        user = await bot.fetch_user(p.DEFAULT_USER_ID)
        await user.send("hello in DM")
        fake.refuse_dm(p.DEFAULT_USER_ID)
        with pytest.raises(discord.Forbidden) as dm_refused:
            await user.send("again")
        assert dm_refused.value.code == 50007
    assert fake.invalid_requests == 3  # the three 403s; 404 and 413 do not count
    assert sum(1 for m in fake.messages if m.kind == "channel") == 3


async def test_expired_token_and_late_callback(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        inter = await fake.dispatch_interaction(p.slash_command(fake, name="slow"))
        await fake.wait_for_callback(inter.id)
        fake.expire_token(inter.token)
        bot.proceed.set()
        await fake.wait_for(lambda: bot.errors, what="the followup to fail")
        error = bot.errors[0]
        assert isinstance(error, discord.HTTPException) and error.status == 401 and error.code == 50027

        bot.errors.clear()
        late = await fake.dispatch_interaction(p.slash_command(fake, name="ping"))
        fake.expire_interaction(late.id)
        await fake.wait_for(lambda: bot.errors, what="the defer to fail")
        assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062


async def test_nonce_enforced_send_is_deduplicated(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        channel = _channel(bot)
        first = await channel.send("once", nonce=987654321)
        second = await channel.send("once", nonce=987654321)
        third = await channel.send("other")
        assert first.id == second.id != third.id
        assert fake.requests[-2].body["enforce_nonce"] is True
        assert [m["content"] for m in fake.channel_messages(channel.id)] == ["once", "other"]


async def test_reply_mentions_only_the_member(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        asked = fake.add_message(p.DEFAULT_CHANNEL_ID, "make <@&123> a video", author_id=p.DEFAULT_USER_ID)
        channel = _channel(bot)
        original = await channel.fetch_message(asked.id)
        reply = await original.reply(
            f"<@{p.DEFAULT_OWNER_ID}> <@{p.DEFAULT_USER_ID}> done",
            allowed_mentions=discord.AllowedMentions(
                everyone=False, roles=False, users=False, replied_user=True
            ),
        )
        assert reply.type is discord.MessageType.reply and reply.reference is not None
        assert reply.reference.message_id == asked.id
        assert [u.id for u in reply.mentions] == [p.DEFAULT_USER_ID]  # the replied-to author only
        with pytest.raises(discord.HTTPException) as unknown:
            await channel.send("x", reference=discord.MessageReference(message_id=1, channel_id=channel.id))
        assert unknown.value.code == 50035 and "message_reference" in unknown.value.text


async def test_history_fetch_edit_delete_and_rate_limit_headers(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        channel = _channel(bot)
        sent = [await channel.send(f"m{i}") for i in range(3)]
        history = [m async for m in channel.history(limit=2)]
        assert [m.content for m in history] == ["m2", "m1"]
        assert (await channel.fetch_message(sent[0].id)).content == "m0"

        fake.set_rate_limit("message_edit", 2, 0.4)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(4):
            await sent[0].edit(content=f"edit {i}")
        assert loop.time() - started >= 0.35  # discord.py waited for the bucket instead of hitting 429s
        assert fake.message(sent[0].id).content == "edit 3" and len(fake.edits) == 4
        assert all(r.status != 429 for r in fake.requests)

        await sent[1].delete()
        with pytest.raises(discord.NotFound):
            await channel.fetch_message(sent[1].id)

        # A client that ignores the headers gets a 429 that discord.py would honour (Via + retry_after).
        fake.set_rate_limit("message_edit", 1, 5.0)
        url = f"{fake.api_url}/channels/{channel.id}/messages/{sent[2].id}"
        headers = {"Authorization": f"Bot {fake.token}"}
        async with aiohttp.ClientSession() as session:
            async with session.patch(url, json={"content": "raw 1"}, headers=headers) as response:
                assert response.status == 200 and response.headers["X-RateLimit-Remaining"] == "0"
                assert response.headers["Content-Type"] == "application/json"
            async with session.patch(url, json={"content": "raw 2"}, headers=headers) as response:
                body = await response.json()
                assert response.status == 429 and response.headers["Via"] and body["retry_after"] > 4
                assert response.headers["X-RateLimit-Scope"] == "user"
    assert fake.invalid_requests == 1


async def test_raw_interaction_callback_errors(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        inter = await fake.dispatch_interaction(p.slash_command(fake, name="ping"))
        url = f"{fake.api_url}/interactions/{inter.id}/{inter.token}/callback"
        async with session.post(url, json={"type": 4, "data": {"content": "hi"}}) as response:
            assert response.status == 204
        async with session.post(url, json={"type": 4, "data": {"content": "again"}}) as response:
            assert response.status == 400 and (await response.json())["code"] == 40060
        bad = f"{fake.api_url}/interactions/{inter.id}/not-the-token/callback"
        async with session.post(bad, json={"type": 5}) as response:
            assert response.status == 404 and (await response.json())["code"] == 10062
        hook = f"{fake.api_url}/webhooks/{fake.application_id}/{inter.token}/messages/@original"
        async with session.get(hook) as response:
            assert response.status == 200 and (await response.json())["content"] == "hi"
        async with session.get(f"{fake.api_url}/users/@me") as response:
            assert response.status == 401 and (await response.json()) == {
                "message": "401: Unauthorized",
                "code": 0,
            }
    assert fake.invalid_requests == 1


async def test_a_user_install_interaction_takes_five_followups(fake: FakeDiscord) -> None:
    """Discord's cap for an app only the member installed, where no server added it; the followup that
    fills a deferred response is not one of them, and a server install has no such cap here."""
    fake.set_rate_limit("webhook", 1000, 1.0)
    async with aiohttp.ClientSession() as session:
        for user_install, allowed in ((True, 5), (False, 6)):
            payload = p.slash_command(fake, name="ping", guild_id=None, user_install=user_install, context=1)
            inter = await fake.dispatch_interaction(payload)
            url = f"{fake.api_url}/interactions/{inter.id}/{inter.token}/callback"
            async with session.post(url, json={"type": 5}) as response:
                assert response.status == 204
            hook = f"{fake.api_url}/webhooks/{fake.application_id}/{inter.token}"
            codes = []
            for number in range(7):
                async with session.post(hook, json={"content": f"n{number}"}) as response:
                    codes.append(
                        response.status if response.status != 400 else (await response.json())["code"]
                    )
            # The first fills the deferred message; then `allowed` new ones.
            assert codes == [204] * (1 + allowed) + [40094] * (6 - allowed), (user_install, codes)


async def test_wrong_token_and_privileged_intents_fail_like_discord(fake: FakeDiscord) -> None:
    with pytest.raises(discord.LoginFailure):
        async with running_client(FakeTestBot(), fake, token="wrong"):
            pass
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with running_client(FakeTestBot(intents=discord.Intents.all()), fake):
            pass
    assert fake.invalid_requests == 1


async def test_members_intent_chunks_the_guild() -> None:
    async with FakeDiscord(allowed_intents=PRIVILEGED_INTENTS) as fake:
        intents = discord.Intents.default()
        intents.members = True
        async with running_client(FakeTestBot(intents=intents), fake) as bot:
            guild = bot.get_guild(p.DEFAULT_GUILD_ID)
            assert guild is not None and guild.chunked
            alice = guild.get_member(p.DEFAULT_USER_ID)
            assert alice is not None and alice.name == "alice"
            # A small guild's GUILD_CREATE carries every member, so nothing was requested at startup.
            assert not any(name == "REQUEST_GUILD_MEMBERS" for name, _ in fake.gateway_events)
            found = await guild.query_members(query="ali", limit=5)  # op 8 -> GUILD_MEMBERS_CHUNK
            assert [m.id for m in found] == [p.DEFAULT_USER_ID]


async def test_payloads_without_a_fake_match_the_default_world(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        # Without a fake the factory cannot know /ping is a guild command: say so (data.guild_id).
        payload = p.slash_command(name="ping", command_guild_id=p.DEFAULT_GUILD_ID)
        assert payload["member"]["user"]["id"] == str(p.DEFAULT_USER_ID)
        assert payload["channel_id"] == str(p.DEFAULT_CHANNEL_ID) and payload["context"] == 0
        assert int(payload["app_permissions"]) & p.ATTACH_FILES
        inter = await fake.dispatch_interaction(payload)
        assert (await fake.wait_for_callback(inter.id)).type == 5
        await fake.wait_for(lambda: bot.results, what="the command to finish")

        # A DM interaction: user instead of member, context 1, the DM channel.
        dm = p.slash_command(fake, name="slow", guild_id=None, command_guild_id=p.DEFAULT_GUILD_ID)
        assert "member" not in dm and dm["user"]["id"] == str(p.DEFAULT_USER_ID) and dm["context"] == 1
        assert dm["channel"]["type"] == p.DM


async def test_gateway_resume_and_reidentify(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        await fake.drop_connections(code=4000)
        await fake.wait_for(lambda: fake.resume_count == 1 and fake.connected_sessions, what="a RESUME")
        await fake.invalidate_sessions()
        await fake.wait_for(
            lambda: fake.identify_count == 2 and fake.connected_sessions, what="a re-IDENTIFY"
        )
        await fake.wait_for_ready()
        inter = await fake.dispatch_interaction(p.slash_command(fake, name="ping"))
        assert (await fake.wait_for_callback(inter.id)).type == 5
        await fake.wait_for(lambda: bot.results, what="the command to finish")


async def test_control_api_with_subprocess_fake() -> None:
    async with asyncio.timeout(25), FakeDiscordProcess() as proc:
        control = proc.control
        async with running_client(FakeTestBot(), proc) as bot:
            state = await control.state()
            assert state["connected_sessions"] == 1 and len(state["command_puts"]) == 1
            image = await control.add_attachment("dog.png", _png(300, 300))
            payload = p.slash_command(state, name="inspect", options={"image": image})
            assert payload["data"]["guild_id"] == str(p.DEFAULT_GUILD_ID)  # taken from the fake's commands
            result = await control.dispatch_interaction(payload)
            assert result["dispatched_to"] == 1
            done = await control.wait(timeout=10, callbacks=1)
            callback = done["state"]["callbacks"][0]
            assert callback["type"] == 4 and callback["data"]["content"].startswith("dog.png ")

            built = await control.build_and_dispatch("slash_command", name="ping")
            done = await control.wait(timeout=10, channel_messages=1, followups=1)
            message = next(m for m in done["state"]["messages"] if m["kind"] == "channel")
            assert message["files"][0]["size"] == 14 and message["interaction_id"] is None
            assert built["id"] in {c["interaction_id"] for c in done["state"]["callbacks"]}

            await control.config(refuse={str(p.DEFAULT_CHANNEL_ID): 50013})
            with pytest.raises(discord.Forbidden):
                await _channel(bot).send("refused")
            full = await control.state(include_bytes=True)
            assert full["invalid_requests"] == 1
            files = [f for m in full["messages"] for f in m["files"]]
            assert any(f.get("data_b64") == "ZmlsZS1ieXRlcy0xMjM=" for f in files)


async def test_embeds_over_discords_lengths_are_refused(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        channel = _channel(bot)
        await channel.send(embed=discord.Embed(description="x" * 4096))
        for embed in (
            discord.Embed(description="x" * 4097),
            discord.Embed(title="x" * 257),
            discord.Embed(description="x" * 4000).add_field(name="f", value="y" * 1025),
            discord.Embed(description="x" * 4000)
            .add_field(name="f", value="y" * 1000)
            .add_field(name="g", value="z" * 1000),
        ):
            with pytest.raises(discord.HTTPException) as refused:
                await channel.send(embed=embed)
            assert refused.value.status == 400 and refused.value.code == 50035


class _Card(discord.ui.LayoutView):
    def __init__(self, *items: discord.ui.Item[Any]) -> None:
        super().__init__(timeout=None)
        for item in items:
            self.add_item(item)


async def test_components_v2_payloads_are_checked_as_discord_checks_them(fake: FakeDiscord) -> None:
    async with running_client(FakeTestBot(), fake) as bot:
        channel = _channel(bot)
        video = discord.File(io.BytesIO(b"\0" * 64), filename="kling-1.mp4")
        gallery = discord.ui.MediaGallery(discord.MediaGalleryItem("attachment://kling-1.mp4"))
        sent = await channel.send(
            view=_Card(discord.ui.Container(discord.ui.TextDisplay("hi"), gallery)), file=video
        )
        stored = fake.message(sent.id).message
        assert stored["flags"] & (1 << 15) and stored["components"][0]["type"] == 17

        async def refused(**kwargs: Any) -> str:
            with pytest.raises(discord.HTTPException) as caught:
                await channel.send(**kwargs)
            assert caught.value.status == 400 and caught.value.code == 50035
            return str(caught.value)

        # attachment:// must name a file of the message
        assert "Unknown attachment" in await refused(view=_Card(discord.ui.Container(gallery)))
        # at most 40 components, 4,000 characters of text displays
        long = [discord.ui.TextDisplay("x" * 2001), discord.ui.TextDisplay("y" * 2000)]
        assert "4000 or fewer" in await refused(view=_Card(*long))
        # a V2 message carries no content or embeds (sent raw: discord.py refuses to build one)
        route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=channel.id)
        payload = {"content": "hi", "flags": 1 << 15, "components": [{"type": 10, "content": "x"}]}
        with pytest.raises(discord.HTTPException) as caught:
            await bot.http.request(route, json=payload)
        assert caught.value.code == 50035 and "Content not allowed" in str(caught.value)
        # (discord.py itself refuses a layout of more than 40: sent raw)
        many = [{"type": 10, "content": f"line {n}"} for n in range(40)]
        payload = {"flags": 1 << 15, "components": [{"type": 17, "components": many}]}
        with pytest.raises(discord.HTTPException) as caught:
            await bot.http.request(route, json=payload)
        assert caught.value.code == 50035 and "40 or fewer" in str(caught.value)
        # a link button's URL at most 512 characters
        link = discord.ui.Button[Any](label="open", url="https://example.com/" + "a" * 500)
        assert "512" in await refused(view=_Card(discord.ui.ActionRow(link)))
