"""The fake Discord's REST glue (routing, auth, rate limits, injected faults, bodies) and the routes for
users, the application, the gateway URL, application commands and guilds."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes import payloads as p
from tests.fakes.discord_server._base import FakeBase
from tests.fakes.discord_server._records import (
    API_PREFIX,
    GATEWAY_PATH,
    CommandPut,
    DiscordError,
    InjectedDisconnect,
    RecordedFile,
    RecordedRequest,
    _Guild,
    _int,
    _json_response,
    _RateLimited,
    _Window,
    form_error,
    now,
)

_Handler = Callable[[web.Request, "RecordedRequest"], Awaitable[web.StreamResponse]]


class RestMixin(FakeBase):
    """REST routing and the non-channel routes of :class:`FakeDiscord`."""

    def _setup_routes(self, app: web.Application) -> None:
        def r(method: str, path: str, handler: _Handler, **kwargs: Any) -> None:
            self._api_route(app, method, path, handler, **kwargs)

        r("GET", "/users/@me", self._get_me)
        r("GET", "/users/{user_id}", self._get_user)
        r("POST", "/users/@me/channels", self._create_dm)
        r("GET", "/oauth2/applications/@me", self._get_application)
        r("GET", "/applications/@me", self._get_application)
        r("GET", "/gateway", self._get_gateway, auth=False)
        r("GET", "/gateway/bot", self._get_gateway)
        r("GET", "/applications/{app_id}/commands", self._get_commands)
        r("PUT", "/applications/{app_id}/commands", self._put_commands)
        r("POST", "/applications/{app_id}/commands", self._post_command)
        r("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self._get_commands)
        r("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands)
        r("POST", "/applications/{app_id}/guilds/{guild_id}/commands", self._post_command)
        r("GET", "/applications/{app_id}/guilds/{guild_id}/commands/permissions", self._get_command_perms)
        r(
            "POST",
            "/interactions/{interaction_id}/{token}/callback",
            self._interaction_callback,
            auth=False,
            bucket="callback",
            major=("interaction_id",),
        )
        wh = {"auth": False, "bucket": "webhook", "major": ("app_id", "token")}
        r("POST", "/webhooks/{app_id}/{token}", self._webhook_execute, **wh)
        r("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_get_message, **wh)
        r("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_edit_message, **wh)
        r("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_delete_message, **wh)
        ch = {"major": ("channel_id",)}
        r("GET", "/channels/{channel_id}", self._get_channel, **ch)
        r("POST", "/channels/{channel_id}/messages", self._create_message, bucket="message_create", **ch)
        r("GET", "/channels/{channel_id}/messages", self._list_messages, **ch)
        r("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, **ch)
        r(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            self._edit_message,
            bucket="message_edit",
            **ch,
        )
        r(
            "DELETE",
            "/channels/{channel_id}/messages/{message_id}",
            self._delete_message,
            bucket="message_delete",
            **ch,
        )
        r("POST", "/channels/{channel_id}/typing", self._typing, **ch)
        r("POST", "/channels/{channel_id}/threads", self._start_forum_thread, bucket="thread_create", **ch)
        r("DELETE", "/channels/{channel_id}", self._delete_channel, **ch)
        gd = {"major": ("guild_id",)}
        r("GET", "/guilds/{guild_id}", self._get_guild, **gd)
        r("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, **gd)
        r("GET", "/guilds/{guild_id}/roles", self._get_guild_roles, **gd)
        r("GET", "/guilds/{guild_id}/members", self._list_members, **gd)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, **gd)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._unknown_route)

        app.router.add_get(GATEWAY_PATH, self._gateway_handler)
        app.router.add_get(GATEWAY_PATH + "/", self._gateway_handler)
        for folder in ("attachments", "ephemeral-attachments"):
            app.router.add_get(
                f"/{folder}/{{channel_id}}/{{attachment_id}}/{{filename}}", self._serve_attachment
            )
            app.router.add_get(
                f"/media/{folder}/{{channel_id}}/{{attachment_id}}/{{filename}}", self._serve_attachment
            )

        control: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
            ("GET", "state", self._control_state),
            ("GET", "wait", self._control_wait),
            ("POST", "interactions", self._control_interactions),
            ("POST", "dispatch", self._control_dispatch),
            ("POST", "attachments", self._control_attachments),
            ("POST", "config", self._control_config),
            ("POST", "model", self._control_model),
            ("POST", "gateway", self._control_gateway),
            ("POST", "reset", self._control_reset),
        ]
        for method, name, handler in control:
            app.router.add_route(method, f"/_control/{name}", self._control_errors(handler))

    @staticmethod
    def _control_errors(
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Control API mistakes come back as JSON ``{"error": ...}`` with status 400."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except Exception as exc:
                return _json_response({"error": f"{type(exc).__name__}: {exc}"}, 400)

        return wrapped

    def _api_route(
        self,
        app: web.Application,
        method: str,
        path: str,
        handler: _Handler,
        *,
        auth: bool = True,
        bucket: str = "default",
        major: tuple[str, ...] = (),
    ) -> None:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            return await self._serve_api(request, handler, auth=auth, bucket=bucket, major=major)

        app.router.add_route(method, API_PREFIX + path, wrapped)

    async def _serve_api(
        self,
        request: web.Request,
        handler: _Handler,
        *,
        auth: bool,
        bucket: str,
        major: tuple[str, ...],
    ) -> web.StreamResponse:
        path = request.path[len(API_PREFIX) :]
        rec = RecordedRequest(request.method, path, dict(request.query), self._elapsed())
        rec.headers = {
            k: v for k, v in request.headers.items() if k.lower() in ("x-audit-log-reason", "content-type")
        }
        self.requests.append(rec)
        headers: dict[str, str] = {"Via": "1.1 google", "X-Fake-Discord": "1"}
        try:
            if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise DiscordError(0)
            major_value = ":".join(request.match_info.get(k, "") for k in major)
            headers.update(self._rate_limit(bucket, major_value))
            injected = self._take_injected(request.method, path)
            if injected is not None:
                raise injected
            disconnect = self._take_disconnect(request.method, path)
            if disconnect is not None:
                if disconnect.after_processing:
                    await handler(request, rec)
                self._notify()
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError("fake Discord dropped the connection")
            response = await handler(request, rec)
        except DiscordError as err:
            headers.update(err.headers)
            rec.error_code = err.code
            response = _json_response(err.body(), err.status)
        for key, value in headers.items():
            response.headers.setdefault(key, value)
        rec.status = response.status
        if response.status in (401, 403, 429):
            self.invalid_requests += 1
        self._notify()
        return response

    def _take_disconnect(self, method: str, path: str) -> InjectedDisconnect | None:
        for drop in self._disconnects:
            if drop.path_contains in path and (drop.method is None or drop.method.upper() == method):
                drop.times -= 1
                if drop.times <= 0:
                    self._disconnects.remove(drop)
                return drop
        return None

    def _take_injected(self, method: str, path: str) -> DiscordError | None:
        for inj in self._injected:
            if inj.path_contains in path and (inj.method is None or inj.method.upper() == method):
                inj.times -= 1
                if inj.times <= 0:
                    self._injected.remove(inj)
                if inj.retry_after is not None:
                    headers = {"Retry-After": str(math.ceil(inj.retry_after)), "X-RateLimit-Scope": "shared"}
                    return _RateLimited(inj.retry_after, headers)
                return DiscordError(inj.code, inj.message, status=inj.status)
        return None

    def _rate_limit(self, bucket: str, major: str) -> dict[str, str]:
        rule = self.rate_limits.get(bucket) or self.rate_limits["default"]
        t = now()
        key = (bucket, major)
        window = self._windows.get(key)
        if window is None or t >= window.started + rule.per:
            window = self._windows[key] = _Window(started=t)
        reset_after = max(window.started + rule.per - t, 0.0)
        reset_after = math.ceil(reset_after * 1000) / 1000
        bucket_hash = hashlib.md5(f"{bucket}".encode()).hexdigest()
        headers = {
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_hash,
        }
        if window.count >= rule.limit and rule.enforce:
            headers.update(
                {
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Scope": "user",
                    "Retry-After": str(math.ceil(reset_after)),
                }
            )
            raise _RateLimited(reset_after, headers)
        window.count += 1
        headers["X-RateLimit-Remaining"] = str(max(rule.limit - window.count, 0))
        return headers

    async def _unknown_route(self, request: web.Request) -> web.StreamResponse:
        rec = RecordedRequest(
            request.method, request.path[len(API_PREFIX) :], dict(request.query), self._elapsed()
        )
        rec.status = 404
        with contextlib.suppress(Exception):
            rec.body = await request.text()
        self.requests.append(rec)
        self.unhandled.append(rec)
        self._notify()
        return _json_response({"message": "404: Not Found", "code": 0}, 404, {"Via": "1.1 google"})

    async def _read_body(
        self, request: web.Request, rec: RecordedRequest
    ) -> tuple[dict[str, Any], list[RecordedFile]]:
        """JSON body, or multipart ``payload_json`` + ``files[n]`` parts (recorded on ``rec``)."""
        files: list[RecordedFile] = []
        payload: Any = {}
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader):
                    continue
                name = part.name or ""
                if name == "payload_json":
                    try:
                        payload = json.loads(await part.text())
                    except ValueError:
                        raise DiscordError(50109) from None
                elif part.filename is not None or name.startswith("file"):
                    data = bytes(await part.read(decode=False))
                    sent_type = part.headers.get(aiohttp.hdrs.CONTENT_TYPE, "application/octet-stream")
                    files.append(RecordedFile(name, part.filename or name, sent_type, data))
        else:
            raw = await request.read()
            if raw:
                try:
                    payload = json.loads(raw)
                except ValueError:
                    raise DiscordError(50109) from None
        rec.body = payload
        rec.files = files
        if not isinstance(payload, dict | list):
            raise DiscordError(50109)
        return payload if isinstance(payload, dict) else {"_list": payload}, files

    async def _get_me(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return _json_response(
            {**self.bot_user, "verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"}
        )

    async def _get_user(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        user = self.users.get(_int(request.match_info["user_id"]))
        if user is None:
            raise DiscordError(10013)
        return _json_response(user)

    async def _create_dm(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        payload, _ = await self._read_body(request, rec)
        recipient = payload.get("recipient_id")
        if recipient is None:
            raise form_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
        return _json_response(self.open_dm(_int(recipient)))

    async def _get_application(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        owner_id = next((int(g.data["owner_id"]) for g in self.guilds.values()), p.DEFAULT_OWNER_ID)
        return _json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "is_monetized": False,
                "is_verified": False,
                "is_discoverable": False,
                "hook": True,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": hashlib.sha256(str(self.application_id).encode()).hexdigest(),
                "owner": self._user(owner_id),
                "flags": self._application_flags(),
                "team": None,
                "tags": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "117760"},
                "integration_types_config": {"0": {}},
                "approximate_guild_count": len(self.guilds),
                "approximate_user_install_count": 0,
                "bot": self.bot_user,
            }
        )

    async def _get_gateway(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        data: dict[str, Any] = {"url": self.gateway_url}
        if request.path.endswith("/bot"):
            data.update(
                shards=self.shard_count,
                session_start_limit={
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            )
        return _json_response(data)

    def _check_app(self, request: web.Request) -> None:
        if _int(request.match_info["app_id"]) != self.application_id:
            raise DiscordError(50001)

    def _command_scope(self, request: web.Request) -> int | None:
        self._check_app(request)
        gid = request.match_info.get("guild_id")
        if gid is None:
            return None
        if _int(gid) not in self.guilds:
            raise DiscordError(50001)
        return _int(gid)

    async def _get_commands(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return _json_response(self._commands.get(self._command_scope(request), []))

    async def _get_command_perms(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        scope = self._command_scope(request)
        return _json_response(self.command_permissions.get(scope or 0, []))

    def _normalise_command(self, scope: int | None, data: Mapping[str, Any], index: int) -> dict[str, Any]:
        name = data.get("name")
        ctype = int(data.get("type", 1))
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            raise form_error(f"{index}.name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
        if ctype == 1 and (name != name.lower() or not re.fullmatch(r"[-_\w]+", name)):
            raise form_error(f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        description = data.get("description") or ""
        if ctype == 1 and not 1 <= len(description) <= 100:
            raise form_error(
                f"{index}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        options = list(data.get("options") or [])
        if len(options) > 25:
            raise form_error(f"{index}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        seen_optional = False
        for i, opt in enumerate(options):
            if opt.get("type") in (1, 2):
                continue
            if opt.get("required"):
                if seen_optional:
                    raise form_error(
                        f"{index}.options.{i}.required",
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
        existing = next(
            (c for c in self._commands.get(scope, []) if c["name"] == name and c["type"] == ctype), None
        )
        out: dict[str, Any] = {
            "id": existing["id"] if existing else str(p.snowflake()),
            "application_id": str(self.application_id),
            "version": str(p.snowflake()),
            "default_member_permissions": data.get("default_member_permissions"),
            "type": ctype,
            "name": name,
            "name_localizations": data.get("name_localizations"),
            "description": description,
            "description_localizations": data.get("description_localizations"),
            "dm_permission": data.get("dm_permission", True),
            "contexts": data.get("contexts"),
            "integration_types": data.get("integration_types", [0]),
            "nsfw": bool(data.get("nsfw", False)),
            "options": options,
        }
        if scope is not None:
            out["guild_id"] = str(scope)
        return out

    async def _put_commands(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        scope = self._command_scope(request)
        payload, _ = await self._read_body(request, rec)
        items = payload.get("_list")
        if not isinstance(items, list):
            raise form_error("_", "LIST_TYPE_CONVERT", "Must be a list.")
        if len(items) > 100:
            raise form_error("_", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        commands = [self._normalise_command(scope, c, i) for i, c in enumerate(items)]
        names = [(c["name"], c["type"]) for c in commands]
        if len(set(names)) != len(names):
            raise form_error(
                "_", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique"
            )
        self._commands[scope] = commands
        self.command_puts.append(CommandPut(scope, commands, self._elapsed()))
        return _json_response(commands)

    async def _post_command(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        scope = self._command_scope(request)
        payload, _ = await self._read_body(request, rec)
        command = self._normalise_command(scope, payload, 0)
        existing = self._commands.setdefault(scope, [])
        created = all(c["id"] != command["id"] for c in existing)
        self._commands[scope] = [c for c in existing if c["id"] != command["id"]] + [command]
        return _json_response(command, 201 if created else 200)

    def _guild(self, request: web.Request) -> _Guild:
        guild = self.guilds.get(_int(request.match_info["guild_id"]))
        if guild is None:
            raise DiscordError(10004)
        return guild

    async def _get_guild(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        guild = self._guild(request)
        data = dict(guild.data)
        if request.query.get("with_counts", "").lower() in ("1", "true"):
            data.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return _json_response(data)

    async def _get_guild_channels(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return _json_response([self.channels[c] for c in self._guild(request).channel_ids])

    async def _get_guild_roles(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return _json_response(self._guild(request).data["roles"])

    async def _list_members(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        guild = self._guild(request)
        limit = _int(request.query.get("limit", "1"))
        after = _int(request.query.get("after", "0"))
        members = sorted(
            (m for uid, m in guild.members.items() if uid > after), key=lambda m: int(m["user"]["id"])
        )
        return _json_response(members[:limit])

    async def _get_member(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        member = self._guild(request).members.get(_int(request.match_info["user_id"]))
        if member is None:
            raise DiscordError(10007)
        return _json_response(member)
