"""The fake Discord's control API (``/_control``: state, wait, dispatch, config, model, gateway, reset)
and :class:`ControlClient`, its client for a fake in another process."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes import payloads as p
from tests.fakes.discord_server._base import FakeBase
from tests.fakes.discord_server._records import (
    MessageRecord,
    _int,
    _json_response,
)


def _coerce_ids(key: str, value: Any) -> Any:
    """Control API: snowflakes may come as strings (the state JSON uses strings); model methods want ints."""
    if key.endswith("_id") and isinstance(value, str) and value.isdigit():
        return int(value)
    if key == "roles" and isinstance(value, list):
        return [int(v) for v in value]
    return value


class ControlClient:
    """Async client for the control API of a fake running in another process (or this one)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    async def _call(
        self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        client_timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.request(
                method,
                f"{self.url}/_control/{path}",
                json=body,
                params={k: str(v) for k, v in (params or {}).items()},
            ) as response,
        ):
            data = await response.json(content_type=None)
            if response.status == 408:
                raise TimeoutError(f"fake Discord: wait timed out, counts {data.get('counts')}")
            if response.status >= 400:
                raise RuntimeError(f"control API {method} {path}: {response.status} {data}")
            return data

    async def state(self, include_bytes: bool = False) -> dict[str, Any]:
        """The snapshot (:meth:`FakeDiscord.snapshot`)."""
        data: dict[str, Any] = await self._call("GET", "state", params={"bytes": int(include_bytes)})
        return data

    async def wait(self, timeout: float = 10.0, **counts: int) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait until counters reach the given minimums (callbacks, followups, messages, channel_messages,
        edits, deletions, identifies, resumes, ready_sessions, command_puts, requests, interactions);
        returns ``{"counts", "state"}``; raises TimeoutError."""
        data: dict[str, Any] = await self._call("GET", "wait", params={"timeout": timeout, **counts})
        return data

    async def dispatch_interaction(
        self, payload: Mapping[str, Any], *, wait_for_session: float = 0.0
    ) -> dict[str, Any]:
        """Dispatch a payload; returns ``{"id", "token", "dispatched_to", "payload"}``."""
        data: dict[str, Any] = await self._call(
            "POST", "interactions", {"payload": payload, "wait_for_session": wait_for_session}
        )
        return data

    async def build_and_dispatch(
        self, factory: str, *, wait_for_session: float = 0.0, **kwargs: Any
    ) -> dict[str, Any]:
        """Have the fake build the payload with ``payloads.<factory>(fake, **kwargs)`` and dispatch it."""
        data: dict[str, Any] = await self._call(
            "POST",
            "interactions",
            {"factory": factory, "kwargs": kwargs, "wait_for_session": wait_for_session},
        )
        return data

    async def add_attachment(
        self, filename: str, data: bytes, content_type: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        body = {
            "filename": filename,
            "data_b64": base64.b64encode(data).decode(),
            "content_type": content_type,
        }
        result: dict[str, Any] = await self._call("POST", "attachments", {**body, **kwargs})
        return result

    async def config(self, **settings: Any) -> None:
        """``refuse={cid: code}``, ``unrefuse=[cid]``, ``refuse_dm=[uid]``, ``unrefuse_dm=[uid]``,
        ``upload_limit={gid: n}``, ``expire_tokens=[token]``, ``expire_interactions=[id]``,
        ``rate_limits={name: {"limit", "per", "enforce"}}``, ``inject_errors=[{"path_contains", "method",
        "status", "code", "message", "times", "retry_after"}]``, ``token_lifetime``, ``callback_timeout``,
        ``allow_resume``, ``dispatch_message_events``, ``enforce_permissions``, ``heartbeat_interval``,
        ``shard_count``."""
        await self._call("POST", "config", settings)

    async def model(self, op: str, **args: Any) -> Any:
        """Call a model method (add_guild, add_channel, add_role, add_member, add_user, set_overwrite,
        set_role_permissions, add_message, open_dm, guild_id_on_shard) with keyword arguments."""
        return (await self._call("POST", "model", {"op": op, "args": args}))["result"]

    async def gateway(self, action: str, **kwargs: Any) -> None:
        """``drop`` (``code``, ``abrupt``), ``reconnect`` (op 7) or ``invalidate`` (``resumable``)."""
        await self._call("POST", "gateway", {"action": action, **kwargs})

    async def dispatch(self, event: str, data: Mapping[str, Any]) -> int:
        return int((await self._call("POST", "dispatch", {"t": event, "d": data}))["dispatched_to"])

    async def reset(self) -> None:
        await self._call("POST", "reset", {})


class ControlMixin(FakeBase):
    """The control API of :class:`FakeDiscord` (its JSON routes under ``/_control``)."""

    def snapshot(self, include_bytes: bool = False) -> dict[str, Any]:
        """Everything recorded, as JSON-able data (what ``GET /_control/state`` returns)."""
        return {
            "url": self.url,
            "api_url": self.api_url,
            "gateway_url": self.gateway_url,
            "token": self.token,
            "application_id": str(self.application_id),
            "bot_user": self.bot_user,
            "defaults": self.defaults(),
            "guilds": [
                {**g.data, "channel_ids": [str(c) for c in g.channel_ids], "upload_limit": g.upload_limit}
                for g in self.guilds.values()
            ],
            "sessions": [s.to_json(self.started_at) for s in self.sessions.values()],
            "connected_sessions": len(self.connected_sessions),
            "identify_count": self.identify_count,
            "shard_count": self.shard_count,
            "shards": {str(k): v for k, v in self.shard_report().items()},
            "interaction_problems": self.interaction_problems(),
            "resume_count": self.resume_count,
            "interactions": [i.to_json(self.started_at) for i in self.interactions.values()],
            "callbacks": [c.to_json(include_bytes) for c in self.callbacks],
            "followups": [f.to_json(include_bytes) for f in self.followups],
            "messages": [m.to_json(include_bytes) for m in self.messages],
            "edits": [e.to_json(include_bytes) for e in self.edits],
            "deletions": [
                {"message_id": str(m), "channel_id": str(c), "at": t} for m, c, t in self.deletions
            ],
            "command_puts": [c.to_json() for c in self.command_puts],
            "commands": self.registered_commands(),
            "invalid_requests": self.invalid_requests,
            "requests": [
                {
                    "method": r.method,
                    "path": r.path,
                    "status": r.status,
                    "at": r.at,
                    "error_code": r.error_code,
                }
                for r in self.requests
            ],
            "unhandled": [{"method": r.method, "path": r.path, "body": r.body} for r in self.unhandled],
        }

    def _counts(self) -> dict[str, int]:
        return {
            "callbacks": len(self.callbacks),
            "followups": len(self.followups),
            "messages": len(self.messages),
            "channel_messages": sum(1 for m in self.messages if m.kind == "channel"),
            "edits": len(self.edits),
            "deletions": len(self.deletions),
            "identifies": self.identify_count,
            "resumes": self.resume_count,
            "ready_sessions": len(self.connected_sessions),
            "command_puts": len(self.command_puts),
            "requests": len(self.requests),
            "interactions": len(self.interactions),
        }

    async def _control_state(self, request: web.Request) -> web.StreamResponse:
        include = request.query.get("bytes", "").lower() in ("1", "true")
        return _json_response(self.snapshot(include))

    async def _control_wait(self, request: web.Request) -> web.StreamResponse:
        timeout = float(request.query.get("timeout", "10"))
        wanted = {k: int(v) for k, v in request.query.items() if k not in ("timeout", "bytes")}
        unknown = set(wanted) - set(self._counts())
        if unknown:
            return _json_response(
                {"error": f"unknown counters {sorted(unknown)}", "known": sorted(self._counts())}, 400
            )

        def met() -> bool:
            counts = self._counts()
            return all(counts[k] >= v for k, v in wanted.items())

        try:
            await self.wait_for(met, timeout, f"counters {wanted}")
            status = 200
        except TimeoutError:
            status = 408
        return _json_response({"counts": self._counts(), "state": self.snapshot()}, status)

    async def _control_interactions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        wait = 0.0
        if "factory" in body:
            factory: dict[str, Callable[..., dict[str, Any]]] = {
                "slash_command": p.slash_command,
                "button_click": p.button_click,
                "modal_submit": p.modal_submit,
            }
            payload = factory[body["factory"]](self, **body.get("kwargs", {}))
            wait = float(body.get("wait_for_session", 0))
        elif "payload" in body:
            payload = body["payload"]
            wait = float(body.get("wait_for_session", 0))
        else:
            payload = body
        if wait > 0:
            gid = payload.get("guild_id")
            shard = self.shard_of(int(gid) if gid is not None else None) if self.shard_count > 1 else None
            with contextlib.suppress(TimeoutError):
                await self.wait_for_ready(wait, shard_id=shard)
        record = await self.dispatch_interaction(payload)
        return _json_response(
            {
                "id": str(record.id),
                "token": record.token,
                "dispatched_to": len(record.delivered_to),
                "shard_id": record.shard_id,
                "payload": payload,
            }
        )

    async def _control_dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        count = await self.dispatch(body["t"], body.get("d") or {})
        return _json_response({"dispatched_to": count})

    async def _control_attachments(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        attachment = self.add_attachment(
            body["filename"],
            base64.b64decode(body["data_b64"]),
            body.get("content_type"),
            width=body.get("width"),
            height=body.get("height"),
            channel_id=_int(body["channel_id"]) if body.get("channel_id") else None,
            ephemeral=bool(body.get("ephemeral", True)),
        )
        return _json_response(attachment)

    async def _control_config(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        for cid, code in (body.get("refuse") or {}).items():
            self.refuse(_int(cid), int(code))
        for cid in body.get("unrefuse") or []:
            self.unrefuse(_int(cid))
        for uid in body.get("refuse_dm") or []:
            self.refuse_dm(_int(uid))
        for uid in body.get("unrefuse_dm") or []:
            self.unrefuse_dm(_int(uid))
        for gid, limit in (body.get("upload_limit") or {}).items():
            self.set_upload_limit(_int(gid), int(limit))
        for token in body.get("expire_tokens") or []:
            self.expire_token(str(token))
        for iid in body.get("expire_interactions") or []:
            self.expire_interaction(_int(iid))
        for name, rule in (body.get("rate_limits") or {}).items():
            self.set_rate_limit(
                name, int(rule["limit"]), float(rule["per"]), enforce=bool(rule.get("enforce", True))
            )
        for inj in body.get("inject_errors") or []:
            self.inject_error(
                inj["path_contains"],
                method=inj.get("method"),
                status=int(inj.get("status", 500)),
                code=int(inj.get("code", 0)),
                message=inj.get("message", "500: Internal Server Error"),
                times=int(inj.get("times", 1)),
                retry_after=inj.get("retry_after"),
            )
        for key in ("token_lifetime", "callback_timeout"):
            if key in body:
                setattr(self, key, None if body[key] is None else float(body[key]))
        for key in ("allow_resume", "dispatch_message_events", "enforce_permissions"):
            if key in body:
                setattr(self, key, bool(body[key]))
        if "shard_count" in body:
            self.shard_count = int(body["shard_count"])
        if "heartbeat_interval" in body:
            self.heartbeat_interval = int(body["heartbeat_interval"])
        return _json_response({"ok": True})

    async def _control_model(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        ops: dict[str, Callable[..., Any]] = {
            "add_guild": self.add_guild,
            "add_channel": self.add_channel,
            "add_role": self.add_role,
            "add_member": self.add_member,
            "add_user": self.add_user,
            "set_overwrite": self.set_overwrite,
            "set_role_permissions": self.set_role_permissions,
            "add_message": self.add_message,
            "open_dm": self.open_dm,
            "guild_id_on_shard": self.guild_id_on_shard,
        }
        op = ops.get(body.get("op", ""))
        if op is None:
            return _json_response({"error": f"unknown op, use one of {sorted(ops)}"}, 400)
        args = {k: _coerce_ids(k, v) for k, v in (body.get("args") or {}).items()}
        result = op(**args)
        if isinstance(result, MessageRecord):
            result = result.to_json()
        return _json_response({"result": result})

    async def _control_gateway(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        action = body.get("action")
        if action == "drop":
            await self.drop_connections(int(body.get("code", 4000)), abrupt=bool(body.get("abrupt", False)))
        elif action == "reconnect":
            await self.request_reconnect()
        elif action == "invalidate":
            await self.invalidate_sessions(bool(body.get("resumable", False)))
        else:
            return _json_response({"error": "action must be drop, reconnect or invalidate"}, 400)
        return _json_response({"ok": True})

    async def _control_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset_records()
        return _json_response({"ok": True})
