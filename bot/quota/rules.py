"""The rules of credits that need no database: settings, the price table, periods and their bounds, and
how a server's own settings are held within the operator's limits. QuotaService
(bot/quota/spending.py) applies them to the ledger.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
from dataclasses import dataclass
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.i18n import _, _n
from bot.store import server_rules

log = logging.getLogger(__name__)

Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[Period, ...] = get_args(Period)
PERIOD_NOUN: dict[Period, str] = {"daily": "day", "weekly": "week", "monthly": "month"}
# A period by its name, in the reader's language.
PERIOD_NAME: dict[Period, str] = {"daily": _("daily"), "weekly": _("weekly"), "monthly": _("monthly")}

MICROS_PER_USD = 1_000_000


# ----- settings -------------------------------------------------------------------------------------------


def load_zone(name: str) -> dt.tzinfo:
    """The named IANA time zone; ValueError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        if name.upper() in ("UTC", "ETC/UTC"):
            return dt.UTC  # a system without a time zone database still knows UTC
        raise ValueError(f"unknown time zone '{name}' (use an IANA name such as Europe/Paris)") from error


# Names the tz database carries that are no place's zone: "localtime" is whatever zone the host machine is
# set to (on Debian's tzdata), "Factory" a placeholder, "posixrules" a template.
NOT_PLACES = frozenset({"localtime", "Factory", "posixrules"})


@functools.cache
def known_time_zones() -> tuple[str, ...]:
    """The IANA names a server may choose: the system's tz database (zoneinfo.available_timezones, which
    leaves out the right/ and posix/ variants) less NOT_PLACES, with UTC."""
    return tuple(sorted((available_timezones() - NOT_PLACES) | {"UTC"}))


class QuotaSettings(BaseModel):
    """The operator's quota settings (`[quota]` in the config file, `QUOTA__*` in the environment)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting stops start-up instead of being ignored

    # Credits per member per period; server admins may set less, never more (0 = servers set their own).
    daily_credits: int = Field(default=50, ge=0)
    period: Period = "daily"
    timezone: str = "UTC"
    # Jobs one member may have at the API at once (the job runner reads it; 0 = no limit).
    max_concurrent_jobs: int = Field(default=2, ge=0)
    # Credits a whole server may spend per period (0 = no cap).
    guild_credits: int = Field(default=0, ge=0)
    # Bonus credits one server's admins may grant in total per period (0 = they may not grant). The
    # period is the operator's, in the operator's time zone, so a server cannot move it.
    guild_grant_credits: int = Field(default=500, ge=0)
    # USD per UTC day across all servers and DMs (0 = no cap).
    global_daily_usd: float = Field(default=0.0, ge=0)
    cooldown_seconds: float = Field(default=0.0, ge=0)
    # Jobs at the API at once across all servers (the job runner reads it; 0 = no cap).
    max_jobs_in_flight: int = Field(default=0, ge=0)
    # Credits per period for use in DMs; 0 keeps /animate out of DMs.
    dm_credits: int = Field(default=0, ge=0)
    allow_10s: bool = True
    allow_audio: bool = True
    allow_voices: bool = True
    usd_per_credit: float = Field(default=0.07, ge=0)
    audio_multiplier: float = Field(default=2.0, gt=0)
    voices_multiplier: float = Field(default=2.4, gt=0)
    credits_per_second: float = Field(default=1.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        load_zone(value)
        return value


# ----- prices ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobOptions:
    duration: int  # seconds of video
    audio: bool
    voices: int  # number of voice ids


def job_cost(options: JobOptions, settings: QuotaSettings) -> int:
    """Credits for one job, rounded up: with the defaults 5 s silent = 5, with audio = 10, voices = 12."""
    multiplier = 1.0
    if options.voices > 0:  # voices need audio: the voices price includes it
        multiplier = settings.voices_multiplier
    elif options.audio:
        multiplier = settings.audio_multiplier
    exact = options.duration * settings.credits_per_second * multiplier
    # 5 × 2.4 is 12.000000000000002 in binary floating point; round that noise away before rounding up.
    return max(0, math.ceil(round(exact, 6)))


def price_list(settings: QuotaSettings) -> dict[str, int]:
    """Credits of the usual choices, for /quota and `kling-bot check`."""
    return {
        "5 s": job_cost(JobOptions(5, False, 0), settings),
        _("5 s with audio"): job_cost(JobOptions(5, True, 0), settings),
        _("5 s with voices"): job_cost(JobOptions(5, True, 1), settings),
        "10 s": job_cost(JobOptions(10, False, 0), settings),
        _("10 s with audio"): job_cost(JobOptions(10, True, 0), settings),
        _("10 s with voices"): job_cost(JobOptions(10, True, 1), settings),
    }


def usd_micros(credits: int, settings: QuotaSettings) -> int:
    return round(credits * settings.usd_per_credit * MICROS_PER_USD)


def format_usd(micros: int) -> str:
    return f"{micros / MICROS_PER_USD:.2f}"


# ----- periods --------------------------------------------------------------------------------------------


def period_bounds(now: float, period: Period, zone: dt.tzinfo) -> tuple[float, float]:
    """[start, end) of the period holding `now`: local midnights (weeks start on Monday)."""
    # Every quota check asks, nearly always for the period it asked for last: time zone arithmetic
    # was a fifth of a check's own time under a crowd.
    known = _last_bounds.get((period, zone))
    if known is not None and known[0] <= now < known[1]:
        return known
    bounds = _period_bounds(now, period, zone)
    if len(_last_bounds) > 1000:
        _last_bounds.clear()
    _last_bounds[(period, zone)] = bounds
    return bounds


_last_bounds: dict[tuple[Period, dt.tzinfo], tuple[float, float]] = {}


def _period_bounds(now: float, period: Period, zone: dt.tzinfo) -> tuple[float, float]:
    today = dt.datetime.fromtimestamp(now, zone).date()
    if period == "weekly":
        first = today - dt.timedelta(days=today.weekday())
        following = first + dt.timedelta(days=7)
    elif period == "monthly":
        first = today.replace(day=1)
        following = (first + dt.timedelta(days=32)).replace(day=1)
    else:
        first = today
        following = today + dt.timedelta(days=1)
    return midnight(first, zone), midnight(following, zone)


def midnight(day: dt.date, zone: dt.tzinfo) -> float:
    # Where a DST change skips midnight, fold=0 resolves it to the instant the day actually begins.
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).timestamp()


@functools.lru_cache(maxsize=1024)
def first_period_end(since: float, period: Period, zone: dt.tzinfo) -> float:
    """When the first period of a zone that took over at `since` ends: the end of the zone's first whole
    period after `since` (or the end of the period `since` begins, when it is a boundary of the zone
    already). So the first period is never shorter than a whole one: a day between 24 and 48 hours, a week
    between 7 and 14 days, a month one whole calendar month and the part before it."""
    # Cached apart from period_bounds' own memory, which holds the period of now and would be evicted.
    start, end = _period_bounds(since, period, zone)
    if start == since:
        return end
    return _period_bounds(end, period, zone)[1]


def anchored_bounds(now: float, period: Period, zone: dt.tzinfo, since: float | None) -> tuple[float, float]:
    """[start, end) of the period holding `now` in a zone in force since `since` (None: always): the
    first period runs from `since` to `first_period_end`, later ones from local midnight to midnight."""
    if since is None or now < since:
        return period_bounds(now, period, zone)
    first_end = first_period_end(since, period, zone)
    if now < first_end:
        return since, first_end
    return period_bounds(now, period, zone)


def utc_day_bounds(now: float) -> tuple[float, float]:
    return period_bounds(now, "daily", dt.UTC)


# ----- what applies where ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerPolicy:
    """A server's quota rules (or the DM rules) once the operator's limits are applied."""

    allowance: int  # per member per period, before role allowances
    period: Period
    timezone: str  # the zone in force now
    cap: int  # credits per period for the whole server; 0 = no cap
    cooldown_seconds: float
    allow_10s: bool
    allow_audio: bool
    allow_voices: bool
    switched_at: float | None = None  # when the zone and period in force took over (None: always)
    pending_timezone: str | None = None  # an admin's change waiting for pending_at, if any
    pending_period: Period | None = None
    pending_at: float | None = None

    @property
    def zone(self) -> dt.tzinfo:
        return load_zone(self.timezone)

    def bounds(self, now: float) -> tuple[float, float]:
        """[start, end) of this server's period holding `now` (epoch seconds), in the zone in force."""
        return anchored_bounds(now, self.period, self.zone, self.switched_at)


def within_operator_limit(value: int, limit: int) -> int:
    """A server's value, never above the operator's (a limit of 0 means the operator set none)."""
    return value if limit == 0 else min(value, limit)


def effective_cap(server_cap: int | None, operator_cap: int) -> int:
    """0 = no cap. A server can tighten the operator's cap but neither lift nor remove it."""
    if not server_cap:
        return operator_cap
    return within_operator_limit(server_cap, operator_cap)


def as_period(value: str | None) -> Period | None:
    for period in PERIODS:
        if value == period:
            return period
    return None


def period_allowed(period: Period, operator_period: Period) -> bool:
    """A server may pick a period as long as the operator's or longer, never a shorter one: with the
    same credit limit a longer period only ever gives less."""
    return PERIODS.index(period) >= PERIODS.index(operator_period)


def server_policy(
    settings: QuotaSettings, overrides: server_rules.GuildOverrides | None, now: float
) -> ServerPolicy:
    """The rules of a server at `now` (epoch seconds); `overrides` None means direct messages, which only
    the operator sets."""
    if overrides is None:
        return ServerPolicy(
            allowance=settings.dm_credits,
            period=settings.period,
            timezone=settings.timezone,
            cap=0,
            cooldown_seconds=settings.cooldown_seconds,
            allow_10s=settings.allow_10s,
            allow_audio=settings.allow_audio,
            allow_voices=settings.allow_voices,
        )
    allowance = settings.daily_credits
    if overrides.allowance is not None:
        allowance = within_operator_limit(overrides.allowance, settings.daily_credits)
    schedule = schedule_at(overrides, now)
    return ServerPolicy(
        allowance=allowance,
        period=_usable_period(schedule.period, settings.period),
        timezone=_usable_zone(schedule.timezone, settings.timezone),
        switched_at=schedule.switched_at,
        pending_timezone=schedule.pending_timezone,
        pending_period=as_period(schedule.pending_period),
        pending_at=schedule.pending_at,
        cap=effective_cap(overrides.cap, settings.guild_credits),
        # The operator's cooldown is a minimum: a server may only wait longer.
        cooldown_seconds=max(settings.cooldown_seconds, overrides.cooldown_seconds or 0.0),
        allow_10s=settings.allow_10s and overrides.allow_10s is not False,
        allow_audio=settings.allow_audio and overrides.allow_audio is not False,
        allow_voices=settings.allow_voices and overrides.allow_voices is not False,
    )


@dataclass(frozen=True, slots=True)
class Schedule:
    """A server's time zone and period at one instant, as stored (None: the operator's): the ones in force,
    since when (None: always), and a change still waiting for its switch at `pending_at`, if any."""

    timezone: str | None
    period: str | None
    switched_at: float | None
    pending_timezone: str | None = None
    pending_period: str | None = None
    pending_at: float | None = None


def schedule_at(overrides: server_rules.GuildOverrides, now: float) -> Schedule:
    """Which zone and period hold at `now` (epoch seconds): a waiting change whose switch has come is in
    force from its switch.

    An admin's change never takes effect at once (QuotaAdmin stores it as waiting until the end of the
    period then running): moving the zone to where midnight just passed would otherwise start a fresh
    period, and a fresh allowance, every hour, and a change from weekly to monthly on the 1st a month the
    week's spending is not in (issue 18)."""
    at = overrides.pending_at
    if at is None or now < at:
        return Schedule(
            overrides.timezone,
            overrides.period,
            overrides.switched_at,
            overrides.pending_timezone,
            overrides.pending_period,
            at,
        )
    return Schedule(
        overrides.pending_timezone or overrides.timezone, overrides.pending_period or overrides.period, at
    )


def _usable_period(value: str | None, operator_period: Period) -> Period:
    chosen = as_period(value)
    if chosen is not None and period_allowed(chosen, operator_period):
        return chosen
    return operator_period


def _usable_zone(name: str | None, fallback: str) -> str:
    if name is None:
        return fallback
    try:
        load_zone(name)
    except ValueError:
        log.warning("stored time zone %r is unknown here; using %s", name, fallback)
        return fallback
    return name


def member_allowance(policy: ServerPolicy, role_allowance: int | None, settings: QuotaSettings) -> int:
    """A role allowance replaces the server's (the most generous role wins), within the operator's limit."""
    if role_allowance is None:
        return policy.allowance
    return within_operator_limit(role_allowance, settings.daily_credits)


# ----- results --------------------------------------------------------------------------------------------


def credit_count(n: int) -> str:
    """`1 credit`, `5 credits` (in the member's language when rendered; bot/i18n)."""
    return _n(n, "{n} credit", "{n} credits")


def per_period(n: int, period: Period) -> str:
    """An allowance with its period: `20 per day` (in the member's language when rendered)."""
    if period == "weekly":
        return _("{n} per week", n=n)
    if period == "monthly":
        return _("{n} per month", n=n)
    return _("{n} per day", n=n)


def _switch_times(policy: ServerPolicy, switch_at: float) -> tuple[str, str]:
    """Discord timestamps (each reader sees their own time zone) of a waiting change's switch and of the
    end of the first period after it."""
    zone = load_zone(policy.pending_timezone or policy.timezone)
    first = first_period_end(switch_at, policy.pending_period or policy.period, zone)
    return f"<t:{int(switch_at)}:f>", f"<t:{int(first)}:f>"


def zone_change_text(policy: ServerPolicy) -> str:
    """What /quota-admin timezone tells the admin: when the zone takes effect, if it waits."""
    if policy.pending_timezone is None or policy.pending_at is None:
        return _("Allowances here now reset at midnight in {timezone}.", timezone=policy.timezone)
    switch, first = _switch_times(policy, policy.pending_at)
    return _(
        "The time zone changes to {zone} when the current period ends, {switch}; until then {current} "
        "stays in force. The first period in {zone} runs from then until {first}, so that no period is "
        "shorter than a whole one; after that, allowances reset at midnight in {zone}.",
        zone=policy.pending_timezone,
        current=policy.timezone,
        switch=switch,
        first=first,
    )


def period_change_text(policy: ServerPolicy) -> str:
    """What /quota-admin allowance adds when the period it set waits for the current one to end; empty
    when nothing waits."""
    if policy.pending_period is None or policy.pending_at is None:
        return ""
    switch, first = _switch_times(policy, policy.pending_at)
    return _(
        "From {switch}, when the current period ends, members get {allowance}; the first such period "
        "runs until {first}, so that no period is shorter than a whole one.",
        switch=switch,
        allowance=per_period(policy.allowance, policy.pending_period),
        first=first,
    )


def relative_time(epoch: float) -> str:
    """Discord's timestamp markup: every reader sees it in their own time zone ("in 5 hours")."""
    return f"<t:{int(epoch)}:R>"
