"""The refusal checks of a job's credits: a member's `Balance`, what the service read of them
(`MemberState`), and each check that raises `QuotaRefused` with a message saying why, the balance and
when it resets (options switched off, the cooldown, the balance, the server's cap, the operator's daily
cap). QuotaService (bot/quota/spending.py) reads the state and runs them in the order a member can act on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.errors import InputRefused
from bot.i18n import _
from bot.quota.rules import (
    MICROS_PER_USD,
    JobOptions,
    Period,
    QuotaSettings,
    ServerPolicy,
    credit_count,
    per_period,
    relative_time,
)


@dataclass(frozen=True, slots=True)
class Balance:
    allowance: int  # this member's allowance per period here
    allowance_left: int
    bonus: int  # admin-granted credits; they never reset
    period: Period
    period_start: float
    resets_at: float
    spent_this_period: int  # credits reserved for jobs this period, net of refunds

    @property
    def available(self) -> int:
        return self.allowance_left + self.bonus


class QuotaRefused(InputRefused):
    """The member may not start this job now; the message says why, the balance and when it resets."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        balance: int | None = None,
        resets_at: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.code = code
        self.balance = balance
        self.resets_at = resets_at


@dataclass(frozen=True, slots=True)
class MemberState:
    policy: ServerPolicy
    balance: Balance
    blocked: bool
    block_reason: str | None
    last_reserve_at: float | None
    server_credits: int  # the server's job credits this period (only when its cap is on)
    usd_micros_today: int  # every server's spend this UTC day (only when the operator's cap is on)


_PERIOD_NOUN = {"daily": _("day"), "weekly": _("week"), "monthly": _("month")}


def _left(balance: Balance) -> str:
    return _(
        "You have {credits} left; your allowance ({allowance}) resets {when}.",
        credits=credit_count(balance.available),
        allowance=per_period(balance.allowance, balance.period),
        when=relative_time(balance.resets_at),
    )


def check_switches(state: MemberState, options: JobOptions) -> None:
    policy = state.policy
    if options.duration > 5 and not policy.allow_10s:
        why, code = _("10-second videos are turned off here; choose 5 seconds."), "10s_off"
    elif options.voices > 0 and not policy.allow_voices:
        why, code = _("Voices are turned off here; leave voice_1 and voice_2 empty."), "voices_off"
    elif options.audio and not policy.allow_audio:
        why, code = _("Sound is turned off here; set audio to False."), "audio_off"
    else:
        return
    raise QuotaRefused(
        _("{why} {left}", why=why, left=_left(state.balance)),
        code=code,
        balance=state.balance.available,
        resets_at=state.balance.resets_at,
    )


def check_cooldown(state: MemberState, now: float) -> None:
    wait = state.policy.cooldown_seconds
    if not wait or state.last_reserve_at is None or now - state.last_reserve_at >= wait:
        return
    ready = state.last_reserve_at + wait
    raise QuotaRefused(
        _(
            "Please wait a little: you can make your next video {when}. {left}",
            when=relative_time(math.ceil(ready)),
            left=_left(state.balance),
        ),
        code="cooldown",
        balance=state.balance.available,
        resets_at=state.balance.resets_at,
        retryable=True,
    )


def check_balance(state: MemberState, cost: int) -> None:
    balance = state.balance
    if cost <= balance.available:
        return
    raise QuotaRefused(
        _(
            "This video costs {cost}, but you have {left} left. Your allowance ({allowance}) resets {when}. "
            "A shorter video, or one without sound, costs less.",
            cost=credit_count(cost),
            left=balance.available,
            allowance=per_period(balance.allowance, balance.period),
            when=relative_time(balance.resets_at),
        ),
        code="insufficient_credits",
        balance=balance.available,
        resets_at=balance.resets_at,
        retryable=True,
    )


def check_server_cap(state: MemberState, cost: int) -> None:
    cap = state.policy.cap
    spent = state.server_credits
    if spent + cost <= cap:
        return
    balance = state.balance
    raise QuotaRefused(
        _(
            "This server has used its {cap} credits for this {period} ({spare} left, this video costs "
            "{cost}). It resets {when}; {left}",
            cap=cap,
            period=_PERIOD_NOUN[balance.period],
            spare=cap - spent,
            cost=cost,
            when=relative_time(balance.resets_at),
            left=_left(balance),
        ),
        code="server_cap",
        balance=balance.available,
        resets_at=balance.resets_at,
        retryable=True,
    )


def check_global_cap(state: MemberState, micros: int, settings: QuotaSettings, day_end: float) -> None:
    cap_micros = round(settings.global_daily_usd * MICROS_PER_USD)
    if state.usd_micros_today + micros <= cap_micros:
        return
    raise QuotaRefused(
        _(
            "The bot has reached its spending limit for today; it resets {when}. {left}",
            when=relative_time(day_end),
            left=_left(state.balance),
        ),
        code="global_cap",
        balance=state.balance.available,
        resets_at=state.balance.resets_at,
        retryable=True,
    )
