"""A server admin's time zone must not lift the operator's per-member allowance (issue 18 item 1:
"Server admins adjust their own server but never above the operator's non-zero values")."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools

import pytest

from bot.quota.admin import GrantRefused
from bot.quota.checks import QuotaRefused
from bot.quota.rules import Period, load_zone, period_change_text, zone_change_text
from bot.quota.spending import QuotaService
from bot.store import Database
from tests.test_quota import (  # noqa: F401 (fixtures)
    ADMIN,
    ALICE,
    BOB,
    GUILD,
    SILENT_10,
    Clock,
    clock,
    db,
    make_service,
    reserve,
)


def zone_just_past_midnight(now: float) -> str:
    """The Etc/GMT zone whose local time is between 00:00 and 01:00 at `now`."""
    hour = dt.datetime.fromtimestamp(now, dt.UTC).hour
    offset = (24 - hour) % 24  # local = UTC + offset hours → 00:xx
    if offset > 14:
        offset -= 24
    # Etc/GMT's sign is inverted (POSIX): Etc/GMT-3 is UTC+3.
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


async def test_switching_time_zones_does_not_renew_the_allowance_within_the_operators_day(
    db: Database,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    quota = make_service(db, clock, daily_credits=10)
    spent = 0
    for _ in range(6):
        await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone=zone_just_past_midnight(clock.now))
        try:
            await reserve(quota, options=SILENT_10)
        except QuotaRefused:
            pass
        else:
            spent += 10
        clock.advance(3600)
    # Six hours in one UTC day: the operator's 10 credits a day, however the server's zone moved.
    assert spent <= 10 * 2, spent


# ----- a hostile admin's zone moves, against every period and bound ---------------------------------------

DAY = 86_400
SHORTEST = {"daily": DAY, "weekly": 7 * DAY, "monthly": 28 * DAY}


async def hostile_admin(
    quota: QuotaService,
    time: Clock,
    *,
    steps: int,
    step_seconds: float,
    members: tuple[int, ...],
    periods: tuple[Period, ...] = (),
) -> dict[tuple[float, float], dict[int, int]]:
    """Every step the admin moves the server's zone to where midnight just passed and each member asks
    for 5 credits as long as the bot gives them; returns what each member got in each period /quota showed."""
    got: dict[tuple[float, float], dict[int, int]] = {}
    for step in range(steps):
        await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone=zone_just_past_midnight(time.now))
        if periods:  # and the period, back and forth
            await quota.set_allowance(
                guild_id=GUILD, actor_id=ADMIN, credits=10, period=periods[step % len(periods)]
            )
        for member in members:
            while True:
                balance = await quota.balance(guild_id=GUILD, user_id=member, role_ids=())
                try:
                    await reserve(quota, user_id=member)
                except QuotaRefused:
                    break
                spent = got.setdefault((balance.period_start, balance.resets_at), {})
                spent[member] = spent.get(member, 0) + 5
        time.advance(step_seconds)
    return got


def assert_whole_periods(got: dict[tuple[float, float], dict[int, int]], shortest: float) -> None:
    """Periods never overlap and none is shorter than a whole one."""
    periods = sorted(got)
    for start, end in periods:
        assert end - start >= shortest, (start, end)
    for (_, end), (start, _) in itertools.pairwise(periods):
        assert start >= end, periods


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly"])
async def test_hourly_zone_moves_give_one_allowance_per_whole_period(
    db: Database,  # noqa: F811
    clock: Clock,  # noqa: F811
    period: str,
) -> None:
    quota = make_service(db, clock, daily_credits=10, period=period)
    step = {"daily": 3600, "weekly": 6 * 3600, "monthly": 3600}[period]
    steps = {"daily": 72, "weekly": 60, "monthly": 96}[period]
    if period == "monthly":  # the hours around a month's end, where the zone decides the month
        clock.advance(dt.datetime(2025, 3, 30, tzinfo=dt.UTC).timestamp() - clock.now)
    got = await hostile_admin(quota, clock, steps=steps, step_seconds=step, members=(ALICE,))
    assert_whole_periods(got, SHORTEST[period])
    assert all(spent[ALICE] <= 10 for spent in got.values()), got
    # Whole periods that do not overlap: at most one allowance per whole period of the run, plus the
    # two the run began and ended in.
    assert sum(spent[ALICE] for spent in got.values()) <= 10 * (steps * step // SHORTEST[period] + 2)


async def test_zone_and_period_moves_give_one_allowance_per_whole_week(
    db: Database,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    quota = make_service(db, clock, daily_credits=10, period="weekly")
    clock.advance(dt.datetime(2025, 3, 24, tzinfo=dt.UTC).timestamp() - clock.now)  # a month's last week
    got = await hostile_admin(
        quota, clock, steps=120, step_seconds=3 * 3600, members=(ALICE,), periods=("weekly", "monthly")
    )
    assert_whole_periods(got, 7 * DAY)
    assert all(spent[ALICE] <= 10 for spent in got.values()), got


async def test_zone_moves_do_not_renew_the_server_cap(
    db: Database,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    quota = make_service(db, clock, daily_credits=10, guild_credits=15)
    got = await hostile_admin(quota, clock, steps=48, step_seconds=3600, members=(ALICE, BOB, 1003))
    assert_whole_periods(got, DAY)
    assert all(sum(spent.values()) <= 15 for spent in got.values()), got
    assert sum(sum(spent.values()) for spent in got.values()) <= 15 * 3


async def test_zone_moves_do_not_renew_the_grant_bound(
    db: Database,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    quota = make_service(db, clock, guild_grant_credits=50)
    granted = 0
    for _ in range(8):  # 15:00 to 22:00 UTC, one operator day
        await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone=zone_just_past_midnight(clock.now))
        with contextlib.suppress(GrantRefused):
            granted += await quota.grant(
                guild_id=GUILD, actor_id=ADMIN, user_id=ALICE, credits=50, reason="x"
            )
        clock.advance(3600)
    assert granted == 50


async def test_repeated_changes_replace_the_waiting_zone_and_keep_its_switch(
    db: Database,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    quota = make_service(db, clock)
    utc_midnight = dt.datetime(2025, 3, 13, tzinfo=dt.UTC).timestamp()
    first = await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="Asia/Tokyo")
    clock.advance(3600)
    second = await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="America/New_York")
    assert (first.pending_timezone, first.pending_at) == ("Asia/Tokyo", utc_midnight)
    assert (second.timezone, second.pending_timezone, second.pending_at) == (
        "UTC",
        "America/New_York",
        utc_midnight,
    )
    text = zone_change_text(second)
    assert f"<t:{int(utc_midnight)}:f>" in text and "America/New_York" in text
    # The first period in New York (UTC-4 in March) runs from the switch (20:00 on the 12th there) to
    # the end of its first whole day: midnight of the 14th, 28 hours.
    new_york_14th = dt.datetime(2025, 3, 14, tzinfo=load_zone("America/New_York")).timestamp()
    assert f"<t:{int(new_york_14th)}:f>" in text
    # Back to the zone in force: nothing waits any more.
    back = await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="UTC")
    assert (back.timezone, back.pending_timezone, back.pending_at) == ("UTC", None, None)
    assert zone_change_text(back) == "Allowances here now reset at midnight in UTC."
    # Every change is audited with when it takes (or took) effect.
    audit = [e for e in reversed(await quota.audit_log(GUILD)) if e.action == "timezone"]
    assert [e.details for e in audit] == [
        {"timezone": "Asia/Tokyo", "takes_effect_at": utc_midnight},
        {"timezone": "America/New_York", "takes_effect_at": utc_midnight},
        {"timezone": "UTC", "takes_effect_at": clock.now},
    ]
    # After the switch, a change waits for the end of the (long) first period of the zone in force.
    await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="America/New_York")
    clock.advance(utc_midnight - clock.now + 3600)
    moved = await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="Europe/Paris")
    assert (moved.timezone, moved.switched_at) == ("America/New_York", utc_midnight)
    assert (moved.pending_timezone, moved.pending_at) == ("Europe/Paris", new_york_14th)
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert (balance.period_start, balance.resets_at) == (utc_midnight, new_york_14th)


async def test_a_period_and_a_zone_waiting_together_switch_together(
    db: Database,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    quota = make_service(db, clock)
    await quota.set_timezone(guild_id=GUILD, actor_id=ADMIN, timezone="Asia/Tokyo")
    policy = await quota.set_allowance(guild_id=GUILD, actor_id=ADMIN, credits=30, period="weekly")
    utc_midnight = dt.datetime(2025, 3, 13, tzinfo=dt.UTC).timestamp()
    assert (policy.allowance, policy.period, policy.timezone) == (30, "daily", "UTC")
    assert (policy.pending_period, policy.pending_timezone, policy.pending_at) == (
        "weekly",
        "Asia/Tokyo",
        utc_midnight,
    )
    # 00:00 UTC on Thursday the 13th is 09:00 in Tokyo: the first week runs to Tokyo's Monday the 24th.
    tokyo_24th = dt.datetime(2025, 3, 24, tzinfo=load_zone("Asia/Tokyo")).timestamp()
    assert period_change_text(policy) == (
        f"From <t:{int(utc_midnight)}:f>, when the current period ends, members get 30 per week; the first "
        f"such period runs until <t:{int(tokyo_24th)}:f>, so that no period is shorter than a whole one."
    )
    clock.advance(utc_midnight - clock.now)
    balance = await quota.balance(guild_id=GUILD, user_id=ALICE, role_ids=())
    assert (balance.period, balance.period_start, balance.resets_at) == ("weekly", utc_midnight, tokyo_24th)
    # Asking for the period in force cancels what waited: nothing does now.
    policy = await quota.set_allowance(guild_id=GUILD, actor_id=ADMIN, credits=30, period="weekly")
    assert (policy.pending_period, policy.pending_timezone, policy.pending_at) == (None, None, None)
    assert period_change_text(policy) == ""
    audit = [e.details for e in reversed(await quota.audit_log(GUILD)) if e.action == "allowance"]
    assert [d["takes_effect_at"] for d in audit] == [utc_midnight, utc_midnight]


async def test_a_period_change_does_not_renew_the_allowance_within_the_operators_week(
    db: Database,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    quota = make_service(db, clock, daily_credits=10, period="weekly")
    clock.advance(dt.datetime(2025, 3, 31, 12, tzinfo=dt.UTC).timestamp() - clock.now)  # a Monday
    await reserve(quota, options=SILENT_10)
    clock.advance(DAY)  # Tuesday, 1 April: a new month, the same week
    await quota.set_allowance(guild_id=GUILD, actor_id=ADMIN, credits=10, period="monthly")
    with pytest.raises(QuotaRefused):
        await reserve(quota, options=SILENT_10)
