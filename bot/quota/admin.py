"""The admin side of credits, behind /quota-admin: grants and removals, allowances, caps, switches, time
zone, cooldown, blocks and the usage export. Each change is audited in its own transaction, and a server's
cached rules are forgotten once written. QuotaService (bot/quota/spending.py) mixes these in, so a server's
admin and its members reach one service; the rules they are held to are in bot/quota/rules.py.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from bot.errors import InputRefused
from bot.guild_cache import GuildCache
from bot.i18n import _
from bot.quota.rules import (
    PERIOD_NAME,
    Period,
    QuotaSettings,
    ServerPolicy,
    credit_count,
    format_usd,
    known_time_zones,
    load_zone,
    midnight,
    per_period,
    period_allowed,
    period_bounds,
    relative_time,
    schedule_at,
    server_policy,
    within_operator_limit,
)
from bot.store import ledger, server_rules
from bot.store.db import Database

if TYPE_CHECKING:
    from bot.quota.checks import MemberState
    from bot.quota.spending import MemberReport


class GrantRefused(InputRefused):
    """A grant past the operator's bound on what one server's admins may grant per period."""

    def __init__(self, credits: int, left: int, limit: int, period: Period, resets_at: float) -> None:
        if limit == 0:
            text = _("The bot's operator does not let server admins grant bonus credits.")
        else:
            text = _(
                "Nothing was granted: this server's admins may grant {limit} in all, and {left} of that "
                "remain (asked: {credits}). It resets {when}.",
                limit=per_period(limit, period),
                left=credit_count(left),
                credits=credits,
                when=relative_time(resets_at),
            )
        super().__init__(text)
        self.left = left


class QuotaAdmin:
    """Mixed into QuotaService, which provides what is declared here."""

    db: Database
    settings: QuotaSettings
    _clock: Callable[[], float]
    _rules: GuildCache[str, server_rules.ServerRules]

    if TYPE_CHECKING:

        async def policy(self, guild_id: int | None) -> ServerPolicy: ...

        async def report(
            self, *, guild_id: int | None, user_id: int, role_ids: Sequence[int]
        ) -> MemberReport: ...

        async def _member_state(
            self,
            reader: ledger.Reader,
            guild_id: int | None,
            user_id: int,
            role_ids: Sequence[int],
            now: float,
        ) -> MemberState: ...

    # ----- admin actions (each one audited in the same transaction) ----------------------------------

    async def view_member(
        self, *, guild_id: int, actor_id: int, user_id: int, role_ids: Sequence[int]
    ) -> MemberReport:
        report = await self.report(guild_id=guild_id, user_id=user_id, role_ids=role_ids)
        await self._audit_only(guild_id, actor_id, "view", user_id, {})
        return report

    async def grant(self, *, guild_id: int, actor_id: int, user_id: int, credits: int, reason: str) -> int:
        """Adds bonus credits (they never reset); returns the member's bonus pool afterwards.

        Raises GrantRefused, granting nothing, when the server's admins would pass the operator's
        QUOTA__GUILD_GRANT_CREDITS for this period, however the credits were split over members and
        commands; the check and the grant are one transaction."""
        if credits <= 0:
            raise InputRefused(_("Grant at least 1 credit."))
        now = self._clock()
        key = ledger.guild_key(guild_id)
        limit = self.settings.guild_grant_credits
        # The operator's period and zone, not the server's: a server admin cannot move its bounds.
        period_start, period_end = period_bounds(now, self.settings.period, load_zone(self.settings.timezone))
        try:
            async with self.db.write() as tx:
                if not await ledger.add_granted(tx, key, period_start, credits, limit=limit):
                    left = max(0, limit - await ledger.granted(tx, key, period_start))
                    raise GrantRefused(credits, left, limit, self.settings.period, period_end)
                await ledger.record_adjustment(
                    tx,
                    kind="grant",
                    guild=key,
                    user_id=user_id,
                    allowance_delta=0,
                    bonus_delta=credits,
                    credits=credits,
                    actor_id=actor_id,
                    reason=reason,
                    at=now,
                )
                await self._audit(
                    tx, guild_id, actor_id, "grant", user_id, {"credits": credits, "reason": reason}
                )
                figures = await ledger.member_figures(tx, key, user_id, (now, now))
        except GrantRefused as refused:
            # Refused whole, nothing granted; the attempt is audited all the same.
            details = {"credits": credits, "reason": reason, "room_left": refused.left}
            await self._audit_only(guild_id, actor_id, "grant_refused", user_id, details)
            raise
        return figures.bonus

    async def remove(
        self,
        *,
        guild_id: int,
        actor_id: int,
        user_id: int,
        role_ids: Sequence[int],
        credits: int,
        reason: str,
    ) -> int:
        """Takes credits away, bonus first, then this period's allowance, never below zero; returns how
        many were taken."""
        if credits <= 0:
            raise InputRefused(_("Remove at least 1 credit."))
        now = self._clock()
        async with self.db.write() as tx:
            state = await self._member_state(tx, guild_id, user_id, role_ids, now)
            from_bonus = min(credits, state.balance.bonus)
            from_allowance = min(credits - from_bonus, state.balance.allowance_left)
            removed = from_bonus + from_allowance
            if removed:
                await ledger.record_adjustment(
                    tx,
                    kind="adjust",
                    guild=ledger.guild_key(guild_id),
                    user_id=user_id,
                    allowance_delta=-from_allowance,
                    bonus_delta=-from_bonus,
                    credits=removed,
                    actor_id=actor_id,
                    reason=reason,
                    at=now,
                )
            details = {"asked": credits, "removed": removed, "reason": reason}
            await self._audit(tx, guild_id, actor_id, "remove", user_id, details)
        return removed

    async def set_allowance(
        self, *, guild_id: int, actor_id: int, credits: int, period: Period | None = None
    ) -> ServerPolicy:
        """Sets the server's allowance at once, and the period it counts over (None: unchanged) when the
        period now running ends, as a time zone waits (`set_timezone`); raises InputRefused for a
        negative allowance or a period shorter than the operator's."""
        if credits < 0:
            raise InputRefused(_("The allowance cannot be negative."))
        values: dict[str, object] = {"allowance": credits}
        if period is None:
            return await self._set_and_audit(guild_id, actor_id, "allowance", values)
        if not period_allowed(period, self.settings.period):
            raise InputRefused(
                _(
                    "The operator's period is {period}; a server can only choose it or a longer one.",
                    period=PERIOD_NAME[self.settings.period],
                )
            )
        return await self._reschedule(guild_id, actor_id, "allowance", values, period=period)

    async def set_role_allowance(
        self, *, guild_id: int, actor_id: int, role_id: int, credits: int | None
    ) -> int | None:
        """Sets (or with None clears) a role's allowance; returns what members with it get."""
        if credits is not None and credits < 0:
            raise InputRefused(_("The allowance cannot be negative."))
        now = self._clock()
        async with self._changing_rules(guild_id) as tx:
            await server_rules.set_role_allowance(tx, ledger.guild_key(guild_id), role_id, credits, at=now)
            await self._audit(tx, guild_id, actor_id, "role-allowance", role_id, {"credits": credits})
        return None if credits is None else within_operator_limit(credits, self.settings.daily_credits)

    async def set_cap(self, *, guild_id: int, actor_id: int, credits: int) -> ServerPolicy:
        if credits < 0:
            raise InputRefused(_("The cap cannot be negative."))
        return await self._set_and_audit(guild_id, actor_id, "cap", {"cap": credits})

    async def set_switches(
        self,
        *,
        guild_id: int,
        actor_id: int,
        allow_10s: bool | None = None,
        allow_audio: bool | None = None,
        allow_voices: bool | None = None,
    ) -> ServerPolicy:
        """Changes the switches given (None leaves one as it is); the operator's own switches still win."""
        asked = {"allow_10s": allow_10s, "allow_audio": allow_audio, "allow_voices": allow_voices}
        values = {name: value for name, value in asked.items() if value is not None}
        # With no option given this only shows the switches; it is audited all the same.
        return await self._set_and_audit(guild_id, actor_id, "switches", values)

    async def set_timezone(self, *, guild_id: int, actor_id: int, timezone: str) -> ServerPolicy:
        """Schedules the server's new time zone; returns the policy, whose `pending_at` says when it takes
        effect (None when `timezone` is the zone in force already).

        A change takes effect only when the period now running ends, and the first period in the new zone
        lasts until the end of its first whole period (bot/quota/rules.py, `first_period_end`): no period
        is ever shorter than a whole one, so moving the zone, however often, never gives a member a second
        allowance or the server a second cap within one (issue 18). Changes before the switch only
        replace the waiting zone. Raises InputRefused for an unknown zone."""
        try:
            if timezone not in known_time_zones():
                raise ValueError(timezone)  # a file of the tz database that is no place's zone (right/UTC…)
            load_zone(timezone)
        except ValueError as error:
            raise InputRefused(
                _("Unknown time zone “{name}”: use an IANA name such as Europe/Paris.", name=timezone)
            ) from error
        return await self._reschedule(guild_id, actor_id, "timezone", {}, timezone=timezone)

    async def set_cooldown(self, *, guild_id: int, actor_id: int, seconds: float) -> ServerPolicy:
        if not math.isfinite(seconds) or seconds < 0:
            raise InputRefused(_("The cooldown must be 0 or more seconds."))
        return await self._set_and_audit(guild_id, actor_id, "cooldown", {"cooldown_seconds": seconds})

    async def block(self, *, guild_id: int, actor_id: int, user_id: int, reason: str | None) -> None:
        now = self._clock()
        async with self._changing_rules(guild_id) as tx:
            await server_rules.set_block(
                tx, ledger.guild_key(guild_id), user_id, reason=reason, actor_id=actor_id, at=now
            )
            await self._audit(tx, guild_id, actor_id, "block", user_id, {"reason": reason})

    async def unblock(self, *, guild_id: int, actor_id: int, user_id: int) -> bool:
        """False when the member was not blocked."""
        async with self._changing_rules(guild_id) as tx:
            removed = await server_rules.remove_block(tx, ledger.guild_key(guild_id), user_id)
            await self._audit(tx, guild_id, actor_id, "unblock", user_id, {"was_blocked": removed})
        return removed

    async def export_usage(self, *, guild_id: int, actor_id: int, days: int) -> str:
        """CSV of the last `days` days in the server's time zone: date,user_id,jobs,credits,usd."""
        if days <= 0:
            raise InputRefused(_("Export at least 1 day."))
        now = self._clock()
        policy = await self.policy(guild_id)
        zone = policy.zone
        today_start, _end = period_bounds(now, "daily", zone)
        first_day = dt.datetime.fromtimestamp(today_start, zone).date() - dt.timedelta(days=days - 1)
        since = midnight(first_day, zone)
        jobs = await ledger.job_spending(self.db, ledger.guild_key(guild_id), since)
        await self._audit_only(guild_id, actor_id, "export", None, {"days": days, "jobs": len(jobs)})
        return usage_csv(jobs, zone)

    async def audit_log(self, guild_id: int, limit: int = 50) -> list[ledger.AuditEntry]:
        return await ledger.audit_entries(self.db, ledger.guild_key(guild_id), limit)

    async def _set_and_audit(
        self, guild_id: int, actor_id: int, action: str, values: Mapping[str, object]
    ) -> ServerPolicy:
        now = self._clock()
        key = ledger.guild_key(guild_id)
        async with self._changing_rules(guild_id) as tx:
            await server_rules.update_guild_settings(tx, key, values, at=now)
            await self._audit(tx, guild_id, actor_id, action, None, values)
            overrides = await server_rules.guild_overrides(tx, key)
        return server_policy(self.settings, overrides, now)

    async def _reschedule(
        self,
        guild_id: int,
        actor_id: int,
        action: str,
        values: Mapping[str, object],
        *,
        timezone: str | None = None,
        period: Period | None = None,
    ) -> ServerPolicy:
        """Sets `values` at once and schedules the new zone or period for the end of the period now
        running; audited with when the change takes effect."""
        now = self._clock()
        key = ledger.guild_key(guild_id)
        async with self._changing_rules(guild_id) as tx:
            overrides = await server_rules.guild_overrides(tx, key)
            before = server_policy(self.settings, overrides, now)
            schedule = _rescheduled(overrides, before, now, timezone=timezone, period=period)
            await server_rules.update_guild_settings(tx, key, {**values, **schedule}, at=now)
            if timezone is not None:
                asked: dict[str, object] = {"timezone": timezone}
                waits = schedule["pending_timezone"] is not None
            else:
                asked, waits = {"period": period}, schedule["pending_period"] is not None
            details = {**values, **asked, "takes_effect_at": schedule["pending_at"] if waits else now}
            await self._audit(tx, guild_id, actor_id, action, None, details)
            overrides = await server_rules.guild_overrides(tx, key)
        return server_policy(self.settings, overrides, now)

    @contextlib.asynccontextmanager
    async def _changing_rules(self, guild_id: int) -> AsyncIterator[ledger.Writer]:
        """A write transaction that changes a server's rules; the cached copy is forgotten once it ends
        (committed or not)."""
        try:
            async with self.db.write() as tx:
                yield tx
        finally:
            self._rules.invalidate(ledger.guild_key(guild_id))

    async def _audit_only(
        self, guild_id: int, actor_id: int, action: str, target_id: int | None, details: Mapping[str, object]
    ) -> None:
        async with self.db.write() as tx:
            await self._audit(tx, guild_id, actor_id, action, target_id, details)

    async def _audit(
        self,
        tx: ledger.Writer,
        guild_id: int,
        actor_id: int,
        action: str,
        target_id: int | None,
        details: Mapping[str, object],
    ) -> None:
        await ledger.record_audit(
            tx,
            guild=ledger.guild_key(guild_id),
            actor_id=actor_id,
            action=action,
            target_id=target_id,
            details=details,
            at=self._clock(),
        )


def _rescheduled(
    overrides: server_rules.GuildOverrides,
    policy: ServerPolicy,
    now: float,
    *,
    timezone: str | None,
    period: Period | None,
) -> dict[str, object]:
    """The server settings that schedule a new `timezone` or `period` (None: unchanged) given what is
    stored and the policy in force at `now`: the zone and period in force are written down as they stand
    (a waiting change whose switch has come is in force since its switch); a new one waits for the end of
    the period now running, or for the switch already set when a change was waiting, and replaces what
    waited; asking for the one in force cancels what waited."""
    schedule = schedule_at(overrides, now)
    values: dict[str, object] = {
        "timezone": schedule.timezone,
        "period": schedule.period,
        "switched_at": schedule.switched_at,
    }
    pending_timezone, pending_period = schedule.pending_timezone, schedule.pending_period
    if timezone is not None:
        pending_timezone = None if timezone == policy.timezone else timezone
        if pending_timezone is None:
            values["timezone"] = timezone
    if period is not None:
        pending_period = None if period == policy.period else period
        if pending_period is None:
            values["period"] = period
    at = None
    if pending_timezone is not None or pending_period is not None:
        at = schedule.pending_at if schedule.pending_at is not None else policy.bounds(now)[1]
    return {
        **values,
        "pending_timezone": pending_timezone,
        "pending_period": pending_period,
        "pending_at": at,
    }


CSV_COLUMNS = ("date", "user_id", "jobs", "credits", "usd")


def usage_csv(jobs: Sequence[ledger.JobSpend], zone: dt.tzinfo) -> str:
    """Per member and per local day: jobs charged (refunded ones excluded), credits and USD."""
    totals: dict[tuple[str, int], list[int]] = {}
    for job in jobs:
        if job.refunded:
            continue
        day = dt.datetime.fromtimestamp(job.charged_at, zone).date().isoformat()
        row = totals.setdefault((day, job.user_id), [0, 0, 0])
        row[0] += 1
        row[1] += job.credits
        row[2] += job.usd_micros
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for (day, user_id), (count, credits, micros) in sorted(totals.items()):
        writer.writerow((day, user_id, count, credits, format_usd(micros)))
    return out.getvalue()
