"""/quota and /quota-admin: Discord in, `bot.quota` (a QuotaService) out; the rules live in bot/quota/."""

from __future__ import annotations

import io
import logging
from typing import Any, cast

import discord
from discord import app_commands
from discord.app_commands import locale_str
from discord.ext import commands

from bot.i18n import _, join
from bot.quota.rules import (
    Period,
    ServerPolicy,
    known_time_zones,
    per_period,
    period_change_text,
    relative_time,
    zone_change_text,
)
from bot.quota.spending import RECENT_DAYS, MemberReport, QuotaService
from bot.store.jobs import JobRow, JobStore
from cogs._ui import ManagerGroup, acting, reply

log = logging.getLogger(__name__)

THIS_PERIOD: dict[Period, str] = {"daily": _("today"), "weekly": _("this week"), "monthly": _("this month")}
MAX_CREDITS = 1_000_000
# What grants and removals take (Discord enforces the bounds before the bot sees them).
Credits = app_commands.Range[int, 1, MAX_CREDITS]
Reason = app_commands.Range[str, 1, 200]
# /quota links this many of the member's latest videos.
RECENT_VIDEOS = 5
Interaction = discord.Interaction[Any]


def quota_service(bot: commands.Bot) -> QuotaService:
    service = getattr(bot, "quota", None)
    if not isinstance(service, QuotaService):
        raise RuntimeError("cogs.quota needs bot.quota to be a QuotaService")
    return service


def role_ids_of(user: discord.abc.User) -> list[int]:
    return [role.id for role in user.roles] if isinstance(user, discord.Member) else []


# ----- texts ----------------------------------------------------------------------------------------------


def report_text(report: MemberReport, prices: dict[str, int], *, whose: str) -> str:
    """The member's report; in the reader's language for the member's own (`whose` "Your")."""
    balance = report.balance
    first = (
        _(
            "**Your credits:** {available} — {left} of {allowance} + {bonus} bonus.",
            available=balance.available,
            left=balance.allowance_left,
            allowance=per_period(balance.allowance, balance.period),
            bonus=balance.bonus,
        )
        if whose == "Your"
        else _(
            "**Credits of {member}:** {available} — {left} of {allowance} + {bonus} bonus.",
            member=whose,
            available=balance.available,
            left=balance.allowance_left,
            allowance=per_period(balance.allowance, balance.period),
            bonus=balance.bonus,
        )
    )
    lines = [
        first,
        _(
            "**Resets** {when} ({date}); bonus credits never reset.",
            when=relative_time(balance.resets_at),
            date=f"<t:{int(balance.resets_at)}:f>",
        ),
        _(
            "**Jobs:** {waiting} waiting in line, {running} in progress.",
            waiting=report.waiting,
            running=report.in_flight,
        ),
        _(
            "**Spent:** {spent} credits {period}; {jobs} videos and {credits} credits in the last {days} "
            "days.",
            spent=balance.spent_this_period,
            period=THIS_PERIOD[balance.period],
            jobs=report.recent_jobs,
            credits=report.recent_credits,
            days=RECENT_DAYS,
        ),
        _(
            "**Prices:** {prices}",
            prices=join([join([name, f": {cost}"], "") for name, cost in prices.items()], " · "),
        ),
    ]
    if report.blocked:
        blocked = (
            _("**Blocked** from making videos in this server ({reason}).", reason=report.block_reason)
            if report.block_reason
            else _("**Blocked** from making videos in this server.")
        )
        lines.insert(0, blocked)
    return join(lines)


def recent_videos_text(jobs: list[JobRow], room: int = 2000) -> str:
    """Links to the member's latest videos: the way back to one the bot could not post or DM. At most
    `room` characters: long links give way, those of videos that could not be posted first."""
    delivered = [job for job in jobs if job.state == "delivered" and job.video_url]
    ordered = sorted(delivered, key=lambda job: job.result_message_id is not None)  # unposted first
    heading, left_out = "\n" + _("**Your latest videos:**"), 0
    lines: list[str] = []
    for job in ordered:
        line = (
            _("• job {id}: {url}", id=job.id, url=job.video_url)
            if job.result_message_id
            else _("• job {id}: {url} (could not be posted)", id=job.id, url=job.video_url)
        )
        if len(heading) + sum(len(x) + 1 for x in lines) + len(line) + 60 > room:
            left_out += 1
            continue
        lines.append(line)
    if left_out:
        lines.append(_("• {n} more in /history", n=left_out))
    return join([heading, *lines]) if delivered else ""


def on_off(allowed: bool) -> str:
    return _("on") if allowed else _("off")


def policy_text(policy: ServerPolicy) -> str:
    """The server's settings in force, then any change an admin made that waits for its switch."""
    waiting: list[str] = []
    if policy.pending_timezone is not None and policy.pending_at is not None:
        waiting.append(zone_change_text(policy))
    if period := period_change_text(policy):
        waiting.append(period)
    return join([settings_text(policy), *waiting], " ")


def settings_text(policy: ServerPolicy) -> str:
    cap = per_period(policy.cap, policy.period) if policy.cap else _("none")
    cooldown = f"{policy.cooldown_seconds:g} s" if policy.cooldown_seconds else _("off")
    return _(
        "Allowance {allowance} per member (time zone {timezone}); server cap {cap}; cooldown {cooldown}; "
        "10 s {ten}, audio {audio}, voices {voices}.",
        allowance=per_period(policy.allowance, policy.period),
        timezone=policy.timezone,
        cap=cap,
        cooldown=cooldown,
        ten=on_off(policy.allow_10s),
        audio=on_off(policy.allow_audio),
        voices=on_off(policy.allow_voices),
    )


def limited_note(asked: int, got: int) -> str:
    return (
        ""
        if asked == got
        else _(" (you asked for {asked}; the bot's operator allows at most {got})", asked=asked, got=got)
    )


# ----- the cog --------------------------------------------------------------------------------------------


class QuotaCog(commands.Cog):
    admin = ManagerGroup(name="quota-admin", description=locale_str("Credits and limits in this server"))

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.quota = quota_service(bot)
        if self.quota.settings.dm_credits > 0:
            # The operator granted a DM allowance, so /animate works in DMs: /quota should too.
            self.quota_command.guild_only = False
            self.quota_command.allowed_contexts = app_commands.AppCommandContext(guild=True, dm_channel=True)

    @app_commands.command(
        name="quota", description=locale_str("Your credits, when they reset, and your jobs")
    )
    @app_commands.guild_only()
    async def quota_command(self, interaction: Interaction) -> None:
        report = await self.quota.report(
            guild_id=interaction.guild_id,
            user_id=interaction.user.id,
            role_ids=role_ids_of(interaction.user),
        )
        text = report_text(report, self.quota.price_list(), whose="Your")
        store = getattr(self.bot, "job_store", None)
        if isinstance(store, JobStore):
            recent = await store.recent_for_user(interaction.user.id, limit=RECENT_VIDEOS)
            text = join([text, recent_videos_text(recent, room=2000 - len(text))], "")
        await reply(interaction, text)

    @admin.command(name="view", description=locale_str("A member's credits, jobs and spending"))
    @app_commands.describe(member=locale_str("The member to look at"))
    async def view(self, interaction: Interaction, member: discord.Member) -> None:
        report = await self.quota.view_member(
            **acting(interaction),
            user_id=member.id,
            role_ids=role_ids_of(member),
        )
        text = report_text(report, self.quota.price_list(), whose=member.mention)
        await reply(interaction, join([text, _("**Server:** {policy}", policy=policy_text(report.policy))]))

    @admin.command(name="grant", description=locale_str("Give a member bonus credits (they never reset)"))
    @app_commands.describe(
        member=locale_str("Who gets them"),
        credits=locale_str("How many"),
        reason=locale_str("Why (kept in the audit log)"),
    )
    async def grant(
        self, interaction: Interaction, member: discord.Member, credits: Credits, reason: Reason
    ) -> None:
        bonus = await self.quota.grant(
            **acting(interaction), user_id=member.id, credits=credits, reason=reason
        )
        await reply(
            interaction,
            _(
                "Gave {member} {credits} bonus credits. Their bonus is now {bonus}.",
                member=member.mention,
                credits=credits,
                bonus=bonus,
            ),
        )

    @admin.command(name="remove", description=locale_str("Take credits from a member (bonus first)"))
    @app_commands.describe(
        member=locale_str("From whom"),
        credits=locale_str("How many"),
        reason=locale_str("Why (kept in the audit log)"),
    )
    async def remove(
        self, interaction: Interaction, member: discord.Member, credits: Credits, reason: Reason
    ) -> None:
        removed = await self.quota.remove(
            **acting(interaction),
            user_id=member.id,
            role_ids=role_ids_of(member),
            credits=credits,
            reason=reason,
        )
        text = (
            _("Removed {removed} credits from {member}.", removed=removed, member=member.mention)
            if removed == credits
            else _(
                "Removed {removed} credits from {member} (they had only {removed} left).",
                removed=removed,
                member=member.mention,
            )
        )
        await reply(interaction, text)

    @admin.command(
        name="allowance", description=locale_str("Credits each member gets per period in this server")
    )
    @app_commands.describe(
        credits=locale_str("Credits per member per period"), period=locale_str("How often it resets")
    )
    @app_commands.choices(
        period=[
            app_commands.Choice(name=locale_str("daily"), value="daily"),
            app_commands.Choice(name=locale_str("weekly"), value="weekly"),
            app_commands.Choice(name=locale_str("monthly"), value="monthly"),
        ]
    )
    async def allowance(
        self,
        interaction: Interaction,
        credits: app_commands.Range[int, 0, MAX_CREDITS],
        period: str | None = None,
    ) -> None:
        policy = await self.quota.set_allowance(
            **acting(interaction), credits=credits, period=cast(Period | None, period)
        )
        await reply(
            interaction,
            " ".join(
                part
                for part in (
                    _(
                        "Members now get {allowance}{note}.",
                        allowance=per_period(policy.allowance, policy.period),
                        note=limited_note(credits, policy.allowance),
                    ),
                    period_change_text(policy),
                )
                if part
            ),
        )

    @admin.command(
        name="role-allowance", description=locale_str("Set or clear a role's allowance (most generous wins)")
    )
    @app_commands.describe(
        role=locale_str("The role"), credits=locale_str("Credits per period; leave empty to clear")
    )
    async def role_allowance(
        self,
        interaction: Interaction,
        role: discord.Role,
        credits: app_commands.Range[int, 0, MAX_CREDITS] | None = None,
    ) -> None:
        granted = await self.quota.set_role_allowance(**acting(interaction), role_id=role.id, credits=credits)
        if granted is None or credits is None:
            await reply(interaction, _("{role} no longer has an allowance of its own.", role=role.mention))
            return
        await reply(
            interaction,
            _(
                "Members with {role} get {granted} credits per period{note}.",
                role=role.mention,
                granted=granted,
                note=limited_note(credits, granted),
            ),
        )

    @admin.command(
        name="cap", description=locale_str("Credits the whole server may spend per period (0 = no cap)")
    )
    @app_commands.describe(
        credits=locale_str("Credits per period for all members together; 0 = no server cap")
    )
    async def cap(self, interaction: Interaction, credits: app_commands.Range[int, 0, MAX_CREDITS]) -> None:
        policy = await self.quota.set_cap(**acting(interaction), credits=credits)
        cap = per_period(policy.cap, policy.period)
        if not policy.cap:
            text = _("This server has no credit cap.")
        elif credits == 0:
            text = _("Server cap: {cap}, set by the bot's operator.", cap=cap)
        else:
            text = _("Server cap: {cap}{note}.", cap=cap, note=limited_note(credits, policy.cap))
        await reply(interaction, text)

    @admin.command(
        name="switches", description=locale_str("Turn the expensive options off (or back on) here")
    )
    @app_commands.describe(
        allow_10s=locale_str("Allow 10-second videos"),
        allow_audio=locale_str("Allow sound"),
        allow_voices=locale_str("Allow voices"),
    )
    async def switches(
        self,
        interaction: Interaction,
        allow_10s: bool | None = None,
        allow_audio: bool | None = None,
        allow_voices: bool | None = None,
    ) -> None:
        policy = await self.quota.set_switches(
            **acting(interaction),
            allow_10s=allow_10s,
            allow_audio=allow_audio,
            allow_voices=allow_voices,
        )
        asked_on = [
            name
            for name, asked, allowed in (
                ("10 s", allow_10s, policy.allow_10s),
                ("audio", allow_audio, policy.allow_audio),
                ("voices", allow_voices, policy.allow_voices),
            )
            if asked and not allowed
        ]
        note = _(" The bot's operator keeps {names} off.", names=", ".join(asked_on)) if asked_on else ""
        await reply(interaction, join([policy_text(policy), note], ""))

    @admin.command(name="block", description=locale_str("Stop a member from making videos here"))
    @app_commands.describe(member=locale_str("Who"), reason=locale_str("Why (the member sees it)"))
    async def block(
        self,
        interaction: Interaction,
        member: discord.Member,
        reason: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        await self.quota.block(**acting(interaction), user_id=member.id, reason=reason)
        await reply(interaction, _("{member} can no longer make videos here.", member=member.mention))

    @admin.command(name="unblock", description=locale_str("Let a blocked member make videos again"))
    @app_commands.describe(member=locale_str("Who"))
    async def unblock(self, interaction: Interaction, member: discord.Member) -> None:
        was_blocked = await self.quota.unblock(**acting(interaction), user_id=member.id)
        text = (
            _("{member} can make videos here again.", member=member.mention)
            if was_blocked
            else _("{member} was not blocked.", member=member.mention)
        )
        await reply(interaction, text)

    @admin.command(
        name="timezone", description=locale_str("The time zone whose midnight resets allowances here")
    )
    @app_commands.describe(tz=locale_str("An IANA time zone such as Europe/Paris or America/New_York"))
    async def timezone(self, interaction: Interaction, tz: app_commands.Range[str, 1, 64]) -> None:
        policy = await self.quota.set_timezone(**acting(interaction), timezone=tz)
        await reply(interaction, zone_change_text(policy))

    @timezone.autocomplete("tz")
    async def timezone_choices(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        needle = current.lower()
        found = [zone for zone in known_time_zones() if needle in zone.lower()]
        return [app_commands.Choice(name=zone, value=zone) for zone in found[:25]]

    @admin.command(
        name="cooldown", description=locale_str("Seconds a member must wait between two videos (0 = off)")
    )
    @app_commands.describe(seconds=locale_str("Seconds between two /animate of one member; 0 = no cooldown"))
    async def cooldown(self, interaction: Interaction, seconds: app_commands.Range[int, 0, 86_400]) -> None:
        policy = await self.quota.set_cooldown(**acting(interaction), seconds=seconds)
        effective = policy.cooldown_seconds
        if not effective:
            text = _("Cooldown: off.")
        elif effective == seconds:
            text = _("Cooldown: {seconds} s.", seconds=f"{effective:g}")
        else:
            text = _(
                "Cooldown: {seconds} s (the bot's operator requires at least that).", seconds=f"{effective:g}"
            )
        await reply(interaction, text)

    @admin.command(name="export", description=locale_str("Usage per member per day as a CSV file"))
    @app_commands.describe(days=locale_str("How many days back (default 30)"))
    async def export(self, interaction: Interaction, days: app_commands.Range[int, 1, 366] = 30) -> None:
        data = await self.quota.export_usage(**acting(interaction), days=days)
        name = f"usage-{interaction.guild_id}-{days}d.csv"
        file = discord.File(io.BytesIO(data.encode("utf-8")), filename=name)
        await reply(interaction, _("Usage for the last {days} days.", days=days), file=file)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(QuotaCog(bot))
