"""A fake Discord (REST API + gateway) on 127.0.0.1 for an unmodified discord.py 2.7 bot.

Real HTTP and a real websocket: discord.py logs in, connects, receives INTERACTION_CREATE events and
calls the REST API exactly as it would on discord.com; every call is recorded.

In-process use (pytest)::

    from tests.fakes.discord_server import FakeDiscord, running_client
    from tests.fakes import payloads as p

    async with FakeDiscord() as fake:                      # default world, see below
        async with running_client(MyBot(), fake) as bot:   # points discord.py at the fake, waits for ready
            inter = await fake.dispatch_interaction(p.slash_command(fake, name="ping"))
            cb = await fake.wait_for_callback(inter.id)    # CallbackRecord: .type, .flags, .latency, ...
            msg = await fake.wait_for_message(lambda m: m.kind == "channel")
            assert msg.files[0].data == b"..." and msg.message["content"] == "..."

The default world (ids are the constants in :mod:`tests.fakes.payloads`): application/bot user
``DEFAULT_APPLICATION_ID`` ("Kling Bot"), guild ``DEFAULT_GUILD_ID`` with @everyone (the permissions a
new server gives it), a managed bot role (``DEFAULT_BOT_PERMISSIONS`` = 117760), one text channel
``DEFAULT_CHANNEL_ID`` "#general", the owner, and member "alice" (``DEFAULT_USER_ID``, the default
invoker of interactions). Token: ``fake.token`` (``payloads.DEFAULT_TOKEN`` unless given).

Pointing discord.py at the fake (``running_client`` does this; the bot under test does it from config)::

    discord.http.Route.BASE = f"{fake.url}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

What is recorded (lists, oldest first; ``at``/``latency`` are seconds):

* ``fake.callbacks``: :class:`CallbackRecord` per accepted interaction callback (``type`` 4/5/6/7/8/9,
  ``flags``, ``data``, ``files``, ``latency`` since :meth:`FakeDiscord.dispatch_interaction`).
* ``fake.followups``: :class:`FollowupRecord` per accepted ``POST /webhooks/{app}/{token}``.
* ``fake.messages``: :class:`MessageRecord` per message that exists(ed): ``kind`` "channel" (bot's
  ``POST /channels/{id}/messages``), "interaction_response" (type 4/5 callback), "followup", "user"
  (:meth:`FakeDiscord.add_message`), "external" (a message only seen in a component interaction, first
  stored when a type-7 callback edits it). ``.message`` is the live Discord message object (updated by
  edits), ``.files`` the uploaded :class:`RecordedFile` (bytes), ``.edits`` its :class:`EditRecord` history.
* ``fake.edits``, ``fake.deletions``, ``fake.command_puts``, ``fake.requests`` (every REST call with
  status), ``fake.unhandled`` (calls to routes the fake does not know: 404), ``fake.invalid_requests``
  (number of 401/403/429 answers — Discord bans an IP at 10,000 per 10 minutes).
* Awaitables: ``wait_for_ready()``, ``wait_for_callback()``, ``wait_for_followup()``,
  ``wait_for_message()``, ``wait_for(predicate)``.

Behaviour switches (all also reachable through the control API):

* ``fake.refuse(channel_id, 50013)`` (403 Missing Permissions), ``10003`` (404 Unknown Channel), any
  code; applies to every ``/channels/{id}...`` call. ``fake.refuse_dm(user_id)``: 403 50007 on DM posts.
* ``fake.set_upload_limit(guild_id, n)``: bigger files get 413 code 40005 (default 10 MiB).
* Permissions are enforced on channel posts from the fake's roles and overwrites
  (``fake.set_overwrite``): no View Channel → 50001, no Send Messages / Attach Files → 50013, reply without
  Read Message History → 160002; embeds are dropped without Embed Links.
* Interaction tokens: callbacks after ``fake.callback_timeout`` (3 s, like Discord) or to an expired
  interaction → 404 10062; a second callback → 400 40060; webhook calls with a token older than
  ``fake.token_lifetime`` (15 min) or ``fake.expire_token(token)`` → 401 50027; followups before the
  callback → 404 10015; a sixth followup of an interaction authorised only by the member's own install
  → 400 40094.
* Rate limits: truthful ``X-RateLimit-*`` headers per bucket; exceeding a bucket → 429 with
  ``retry_after``, ``X-RateLimit-Scope: user`` and ``Via`` (discord.py treats a 429 without ``Via`` as a
  Cloudflare ban). Defaults: message create 5/5 s per channel, message edit 5/5 s per channel, delete
  5/1 s, webhook 5/2 s per token, interaction callback 5/1 s per interaction, other routes 50/1 s.
  Change with ``fake.set_rate_limit(name, ...)``.
* ``fake.inject_error(path_contains, status=500, ...)``: fail the next matching request(s).
* Gateway: ``drop_connections()``, ``request_reconnect()`` (op 7), ``invalidate_sessions()`` (op 9);
  RESUME replays missed events then sends RESUMED; ``fake.allow_resume = False`` answers op 9 instead.

Shards (several bot processes on one token, as Discord requires from 2,500 servers)::

    async with FakeDiscord(shard_count=2) as fake:         # GET /gateway/bot answers "shards": 2
        gid = fake.guild_id_on_shard(1)                    # a snowflake with (gid >> 22) % 2 == 1
        fake.add_guild("Second", guild_id=gid)
        # each process: AutoShardedBot(shard_count=2, shard_ids=[i]) pointed at the fake
        record = await fake.dispatch_interaction(p.slash_command(fake, guild_id=gid, ...))
        record.shard_id, record.delivered_to, record.delivered_shards   # 1, [session id], [1]
        assert fake.interaction_problems() == []           # each delivered to its shard, answered once
        fake.shard_report()   # {0: {"sessions", "connected", "interactions", "answered", ...}, 1: {...}}

An IDENTIFY with ``shard: [id, count]`` makes a session of that shard (``session.shard``, ``GatewaySession
.shard_id``; ``fake.sessions_of_shard(i)``; an id outside ``0..count-1`` is closed with 4010 Invalid
shard). Discord's rule decides what a session gets: READY lists and GUILD_CREATE sends only the guilds
with ``(guild_id >> 22) % count == id``; every guild event (interactions, messages, channels, roles,
members, :meth:`FakeDiscord.dispatch`) goes only to the sessions of its guild's shard; DMs go to shard 0.
A session without ``shard`` gets everything, as before. Records: each :class:`InteractionRecord` has
``shard_id`` (its guild's shard under ``fake.shard_count``), ``delivered_shards`` and
``callback_attempts`` (accepted or refused); ``fake.interaction_problems()`` lists every interaction
delivered to no session or a wrong shard, or not answered exactly once; ``fake.shard_report()`` counts
interactions, answers, followups and channel posts per shard. REST calls carry no shard: an interaction's
token reaches only its shard's sessions, so its callback came from the process that owns that shard.
Across processes: ``FakeDiscordProcess(shard_count=2)`` (``--shard-count 2``), ``GET /_control/state``
has ``shard_count``, ``shards`` and ``interaction_problems``, ``POST /_control/model``
``{"op": "guild_id_on_shard", "args": {"shard_id": 1}}``, and ``POST /_control/interactions`` with
``wait_for_session`` waits for a session of the payload's shard.

Subprocess mode (for ``python -m bot`` crash tests)::

    python -m tests.fakes.discord_server --port 8765     # prints one JSON line {"url": ..., ...}, serves

or ``async with FakeDiscordProcess() as proc: await proc.control.dispatch_interaction(payload)``.
Control API (JSON, no auth, under ``{url}/_control``): ``GET /state`` (``?bytes=1`` adds file bytes as
base64), ``GET /wait?timeout=5&callbacks=1&messages=2&identifies=1...``, ``POST /interactions``
(a payload, or ``{"payload": ..., "wait_for_session": s}``, or ``{"factory": "slash_command",
"kwargs": {...}}``), ``POST /attachments``, ``POST /config``, ``POST /model``, ``POST /gateway``,
``POST /dispatch``, ``POST /reset``. See :class:`ControlClient` for the exact bodies. The default
world has fixed ids, so ``payloads.slash_command(state)`` (``state`` = ``GET /state``) or even
``payloads.slash_command(command_guild_id=...)`` builds payloads for a fake in another process.

discord.py 2.7.1 facts the fake is built around (and that tests must respect):

* ``Client.connect`` never calls ``GET /gateway/bot``; ``AutoShardedClient`` calls it only when given no
  ``shard_count`` (and then connects to the ``url`` answered there). Otherwise it connects to
  ``DEFAULT_GATEWAY.with_query(v=10, encoding="json", compress="zlib-stream")`` — ``with_query``
  replaces any query, so the gateway URL must not rely on one.
  After READY it reconnects to ``resume_gateway_url``; after INVALID_SESSION to ``DEFAULT_GATEWAY`` again.
* Compression: ``zlib-stream`` (``zstd-stream`` if ``zstandard`` is installed). The fake sends zlib frames
  as binary messages ending in the Z_SYNC_FLUSH suffix ``00 00 ff ff``; for zstd it sends plain text
  frames, which discord.py also accepts (only binary frames are decompressed).
* REST JSON is parsed only if ``Content-Type`` is exactly ``application/json`` (no charset), and a 429
  without a ``Via`` header raises instead of waiting.
* Interaction callbacks are sent with ``?with_response=1``; the fake answers 200 with
  ``{"interaction": ..., "resource": ...}`` (204 without it). ``Interaction`` needs
  ``attachment_size_limit`` in the payload. A guild-registered command is only found if the payload has
  ``data.guild_id``; ``DynamicItem`` matching needs ``message.components`` holding the clicked custom id.
* After READY, discord.py waits ``guild_ready_timeout`` (2 s) for more GUILD_CREATEs before
  ``on_ready``; ``running_client`` lowers it to 0.05 s. Before every non-initial IDENTIFY (after
  op 9 INVALID_SESSION) it sleeps 5 s in ``Client.before_identify_hook`` (override it in a test bot).
* ``channel.send`` always sends a random ``nonce`` with ``enforce_nonce: true``; the fake returns the
  first message for a repeated nonce in the same channel within 2 minutes, like Discord.
* discord.py honours ``X-RateLimit-Remaining: 0`` by sleeping ``Reset-After``, so with the default
  buckets a test posting a 6th message in a channel within 5 s waits; loosen with ``set_rate_limit``.

Layout (one module per concern; all of them private, import from this package)::

    _records.py       constants, DiscordError, record dataclasses (CallbackRecord, MessageRecord, ...)
    _base.py          FakeBase: the attributes, start/stop, wait_for*()
    _state.py         the world (users, guilds, channels, roles, members, permissions) and behaviour switches
    _gateway.py       websocket sessions: IDENTIFY, RESUME, READY, GUILD_CREATE, dispatching events
    _interactions.py  INTERACTION_CREATE, callbacks, webhook followups and edits
    _rest.py          REST glue (auth, rate limits, injected faults) and user/app/command/guild routes
    _messages.py      channel routes and how a message is built, edited, recorded and announced
    _cdn.py           attachments: stored bytes and their URLs
    _control.py       the control API under /_control and ControlClient
    _process.py       running_client, FakeDiscordProcess and the command line (__main__.py)
    _fake.py          FakeDiscord, the parts put together
"""

from __future__ import annotations

from tests.fakes.discord_server._control import ControlClient
from tests.fakes.discord_server._fake import FakeDiscord
from tests.fakes.discord_server._gateway import GatewaySession
from tests.fakes.discord_server._process import FakeDiscordProcess, running_client
from tests.fakes.discord_server._records import (
    PRIVILEGED_INTENTS,
    CallbackRecord,
    CommandPut,
    DiscordError,
    EditRecord,
    FollowupRecord,
    InteractionRecord,
    MessageRecord,
    RecordedFile,
    RecordedRequest,
)

__all__ = [
    "PRIVILEGED_INTENTS",
    "CallbackRecord",
    "CommandPut",
    "ControlClient",
    "DiscordError",
    "EditRecord",
    "FakeDiscord",
    "FakeDiscordProcess",
    "FollowupRecord",
    "GatewaySession",
    "InteractionRecord",
    "MessageRecord",
    "RecordedFile",
    "RecordedRequest",
    "running_client",
]
