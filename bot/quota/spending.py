"""Credits: the price of a job, who may spend how much, and the ledger that records it.

A job's price comes from a table that mirrors the API ($0.07 per second of silent video, twice that with
audio, 2.4 times with voices), so by default 1 credit = 1 second of silent video = $0.07. Each member has
an allowance per period (daily, weekly or monthly, reset at midnight in the server's time zone) and a
bonus pool filled by admins that never resets; the allowance is spent first. On top of that: a per-server
cap per period, the operator's USD cap per UTC day across every server, an optional cooldown, a block
list and switches for the expensive options.

Credits move in the append-only ledger (bot/store/ledger.py): reserved atomically before a job is queued,
committed when the API reports success, refunded when the job ends without a video. A reservation counts
as spent at once; a refund gives it back to the period it was taken from; a commit only makes it final.
The refund of a job the API may bill all the same (an uncertain submission, a cancel it did not confirm)
gives the member's credits back but keeps its USD counted against the operator's daily cap.
Server admins tune their server with /quota-admin but never beyond the operator's limits, which are
applied every time settings are read. The rules that need no database (settings, prices, periods,
server policy) are in bot/quota/rules.py; the refusal checks, QuotaRefused among them, in
bot/quota/checks.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.guild_cache import GroupRead, GuildCache
from bot.i18n import _
from bot.quota.admin import QuotaAdmin
from bot.quota.checks import (
    Balance,
    MemberState,
    QuotaRefused,
    check_balance,
    check_cooldown,
    check_global_cap,
    check_server_cap,
    check_switches,
)
from bot.quota.rules import (
    JobOptions,
    QuotaSettings,
    ServerPolicy,
    credit_count,
    job_cost,
    member_allowance,
    price_list,
    relative_time,
    server_policy,
    usd_micros,
    utc_day_bounds,
)
from bot.store import ledger, server_rules
from bot.store.db import Database

log = logging.getLogger(__name__)


# Job states as the job runner names them (bot/jobs/model.py), for settling and for /quota's counts.
REFUND_STATES = ("failed", "cancelled", "refused", "uncertain")
COMMIT_STATES = ("completed", "delivering", "delivered")
WAITING_STATES = ("queued",)
IN_FLIGHT_STATES = ("submitting", "submitted", "completed", "delivering")

RECENT_DAYS = 7


@dataclass(frozen=True, slots=True)
class Quote:
    cost: int
    usd_micros: int
    balance: int  # credits available before this job
    resets_at: float

    @property
    def balance_after(self) -> int:
        return self.balance - self.cost


@dataclass(frozen=True, slots=True)
class Reservation:
    job_id: int
    cost: int
    usd_micros: int
    from_allowance: int
    from_bonus: int
    balance_after: int
    resets_at: float

    def describe(self) -> str:
        return _(
            "It costs {cost}; you have {left} left (your allowance resets {when}).",
            cost=credit_count(self.cost),
            left=self.balance_after,
            when=relative_time(self.resets_at),
        )


@dataclass(frozen=True, slots=True)
class MemberReport:
    """What /quota and /quota-admin view show about one member."""

    balance: Balance
    blocked: bool
    block_reason: str | None
    waiting: int  # jobs in the bot's queue
    in_flight: int  # jobs at the API or being delivered
    recent_jobs: int  # jobs charged in the last RECENT_DAYS days (refunded ones excluded)
    recent_credits: int
    policy: ServerPolicy


@dataclass(frozen=True)
class Charge:
    """What one reservation takes, decided inside its transaction: whose (a ledger guild key and a user),
    the price in credits and micro-dollars, the pools it comes from, and the balance it leaves."""

    guild: str
    user_id: int
    cost: int
    usd_micros: int
    from_allowance: int
    from_bonus: int
    balance_after: int
    resets_at: float


# ----- the service ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Assessment:
    cost: int
    usd_micros: int
    state: MemberState


class QuotaService(QuotaAdmin):
    """Quotes, reserves, commits and refunds credits; and the admin changes behind /quota-admin."""

    def __init__(
        self, db: Database, settings: QuotaSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.settings = settings
        self._clock = clock
        # Server settings, role allowances and blocks change only through this service's admin actions,
        # which forget a server's entry once written: a quota check then reads only the ledger.
        self._rules: GuildCache[str, server_rules.ServerRules] = GuildCache()
        # A crowd's quotes in one server are read together: the members' sums in one statement, and the
        # server's and the operator's totals (the same for all of them) once, not a ledger scan each.
        self._figures: GroupRead[tuple[object, ...], int, ledger.MemberFigures] = GroupRead()

    # ----- a member's job ------------------------------------------------------------------------------

    async def quote(
        self, *, guild_id: int | None, user_id: int, role_ids: Sequence[int], options: JobOptions
    ) -> Quote:
        """The price and the balance, after every check `reserve` makes; writes nothing.

        Raises QuotaRefused for the same reasons as `reserve` (DMs off, blocked, option switched off,
        cooldown, too few credits, a cap reached), so /animate can refuse before the member waits.
        """
        check = await self._assess(self.db, guild_id, user_id, role_ids, options, self._clock())
        balance = check.state.balance
        return Quote(check.cost, check.usd_micros, balance.available, balance.resets_at)

    async def reserve(
        self,
        *,
        job_id: int,
        guild_id: int | None,
        user_id: int,
        role_ids: Sequence[int],
        options: JobOptions,
    ) -> Reservation:
        """Takes the job's price from the member, atomically with every check; idempotent per job."""
        now = self._clock()
        async with self.db.write() as tx:
            existing = await ledger.find_reservation(tx, job_id)
            if existing is not None:
                return await self._reserved(tx, existing, guild_id, user_id, role_ids, now)
            charge = await self._charge(tx, guild_id, user_id, role_ids, options, now)
            if not await ledger.set_job_cost(tx, job_id, charge.cost):
                raise LookupError(f"job {job_id} does not exist")
            await ledger.record_reservation(
                tx,
                job_id=job_id,
                guild=charge.guild,
                user_id=charge.user_id,
                from_allowance=charge.from_allowance,
                from_bonus=charge.from_bonus,
                usd_micros=charge.usd_micros,
                at=now,
            )
        return Reservation(
            job_id=job_id,
            cost=charge.cost,
            usd_micros=charge.usd_micros,
            from_allowance=charge.from_allowance,
            from_bonus=charge.from_bonus,
            balance_after=charge.balance_after,
            resets_at=charge.resets_at,
        )

    # The two seams of `reserve`, inside its transaction: what a new reservation takes after its checks
    # (QuotaRefused when it may not), and how a job's existing one is shown. The terminal's
    # OperatorQuota overrides both; the transaction and the ledger rows stay here.

    async def _charge(
        self,
        tx: ledger.Writer,
        guild_id: int | None,
        user_id: int,
        role_ids: Sequence[int],
        options: JobOptions,
        now: float,
    ) -> Charge:
        check = await self._assess(tx, guild_id, user_id, role_ids, options, now)
        balance = check.state.balance
        from_allowance = min(check.cost, balance.allowance_left)
        return Charge(
            guild=ledger.guild_key(guild_id),
            user_id=user_id,
            cost=check.cost,
            usd_micros=check.usd_micros,
            from_allowance=from_allowance,
            from_bonus=check.cost - from_allowance,
            balance_after=balance.available - check.cost,
            resets_at=balance.resets_at,
        )

    async def _reserved(
        self,
        tx: ledger.Writer,
        row: ledger.ReservationRow,
        guild_id: int | None,
        user_id: int,
        role_ids: Sequence[int],
        now: float,
    ) -> Reservation:
        state = await self._member_state(tx, guild_id, user_id, role_ids, now)
        return _reservation_from_row(row, state.balance)

    async def commit(self, job_id: int) -> None:
        """The API made the video: the reservation becomes final. Idempotent."""
        if not await ledger.settle_job(self.db, job_id, "commit", at=self._clock(), reason=None):
            log.debug("job %s: nothing to commit (never reserved or already settled)", job_id)

    async def refund(self, job_id: int, reason: str) -> None:
        """The job ended without a video: the credits go back. Idempotent; never undoes a commit."""
        if not await ledger.settle_job(self.db, job_id, "refund", at=self._clock(), reason=reason):
            log.debug("job %s: nothing to refund (never reserved or already settled)", job_id)

    async def settle_finished(self) -> int:
        """At start: settles the reservations of jobs that ended while the bot was down."""
        settled = await ledger.settle(
            self.db, refund_states=REFUND_STATES, commit_states=COMMIT_STATES, at=self._clock()
        )
        if settled:
            log.info("settled %d reservation(s) of jobs that ended while the bot was down", settled)
        return settled

    async def balance(self, *, guild_id: int | None, user_id: int, role_ids: Sequence[int]) -> Balance:
        state = await self._member_state(self.db, guild_id, user_id, role_ids, self._clock())
        return state.balance

    async def recent_usage(self, guild_id: int | None, user_id: int) -> int:
        """Credits the member reserved for jobs this period (committed or still open), for fairness."""
        now = self._clock()
        key = ledger.guild_key(guild_id)
        policy = await self._policy(self.db, guild_id, now)
        figures = await ledger.member_figures(self.db, key, user_id, policy.bounds(now))
        return figures.job_credits

    async def report(self, *, guild_id: int | None, user_id: int, role_ids: Sequence[int]) -> MemberReport:
        now = self._clock()
        state = await self._member_state(self.db, guild_id, user_id, role_ids, now)
        waiting, in_flight = await ledger.job_counts(
            self.db, guild_id, user_id, waiting=WAITING_STATES, in_flight=IN_FLIGHT_STATES
        )
        recent = await ledger.job_spending(
            self.db, ledger.guild_key(guild_id), now - RECENT_DAYS * 86_400, user_id
        )
        charged = [job for job in recent if not job.refunded]
        return MemberReport(
            balance=state.balance,
            blocked=state.blocked,
            block_reason=state.block_reason,
            waiting=waiting,
            in_flight=in_flight,
            recent_jobs=len(charged),
            recent_credits=sum(job.credits for job in charged),
            policy=state.policy,
        )

    async def policy(self, guild_id: int | None) -> ServerPolicy:
        return await self._policy(self.db, guild_id, self._clock())

    def price_list(self) -> dict[str, int]:
        """What the usual choices cost, for /quota."""
        return price_list(self.settings)

    # ----- the checks ----------------------------------------------------------------------------------

    async def audio_by_default(self, guild_id: int | None) -> bool:
        """What an /animate that leaves `audio` out gets: on, unless sound is switched off here (then
        silent, rather than refusing every command that did not think of the switch)."""
        return (await self._policy(self.db, guild_id, self._clock())).allow_audio

    async def _policy(self, reader: ledger.Reader, guild_id: int | None, now: float) -> ServerPolicy:
        if guild_id is None:
            return server_policy(self.settings, None, now)
        key = ledger.guild_key(guild_id)
        if reader is self.db:
            return server_policy(self.settings, (await self._server_rules(key)).overrides, now)
        return server_policy(self.settings, await server_rules.guild_overrides(reader, key), now)

    async def prime(self, guild_ids: Sequence[int]) -> int:
        """Reads the rules of these servers not yet in memory, in three statements for them all; how many
        it kept."""
        keys = [ledger.guild_key(guild_id) for guild_id in guild_ids]
        return await self._rules.prime(keys, lambda wanted: server_rules.servers_rules(self.db, wanted))

    async def _server_rules(self, key: str) -> server_rules.ServerRules:
        return await self._rules.get(key, lambda: server_rules.server_rules(self.db, key))

    async def _member_context(
        self, reader: ledger.Reader, key: str, user_id: int, role_ids: Sequence[int]
    ) -> server_rules.MemberContext:
        # Inside a write transaction (a reservation) the rules are read with it, atomically; a quote
        # outside one takes them from memory.
        if reader is self.db:
            return (await self._server_rules(key)).member_context(user_id, role_ids)
        return await server_rules.member_context(reader, key, user_id, role_ids)

    async def _member_state(
        self,
        reader: ledger.Reader,
        guild_id: int | None,
        user_id: int,
        role_ids: Sequence[int],
        now: float,
        *,
        with_caps: bool = False,
    ) -> MemberState:
        """The member's policy and balance; `with_caps` also sums what the server and the operator's
        wallet spent, when those caps are on."""
        key = ledger.guild_key(guild_id)
        context = await self._member_context(reader, key, user_id, () if guild_id is None else role_ids)
        policy = server_policy(self.settings, None if guild_id is None else context.overrides, now)
        allowance = member_allowance(policy, context.role_allowance, self.settings)
        start, end = policy.bounds(now)
        server_total = with_caps and policy.cap > 0
        utc_day = utc_day_bounds(now) if with_caps and self.settings.global_daily_usd > 0 else None
        if reader is self.db:
            # A quote, outside a transaction (advisory: the reservation checks again atomically): read
            # together with the quotes of every member of the server asking meanwhile.
            figures = await self._figures.get(
                (key, start, end, server_total, utc_day),
                user_id,
                lambda users: self._crowd_figures(key, users, (start, end), server_total, utc_day),
            )
        else:
            figures = await ledger.member_figures(
                reader, key, user_id, (start, end), server_total=server_total, utc_day=utc_day
            )
        balance = Balance(
            allowance=allowance,
            allowance_left=max(0, allowance - figures.allowance_used),
            bonus=max(0, figures.bonus),
            period=policy.period,
            period_start=start,
            resets_at=end,
            spent_this_period=figures.job_credits,
        )
        return MemberState(
            policy=policy,
            balance=balance,
            blocked=context.blocked and guild_id is not None,
            block_reason=context.block_reason,
            last_reserve_at=figures.last_reserve_at,
            server_credits=figures.server_credits,
            usd_micros_today=figures.usd_micros_today,
        )

    async def _crowd_figures(
        self,
        key: str,
        user_ids: list[int],
        period: tuple[float, float],
        server_total: bool,
        utc_day: tuple[float, float] | None,
    ) -> dict[int, ledger.MemberFigures]:
        """Several members' sums in one statement, and the caps' totals (the same for all) in one more."""
        found = await ledger.members_figures(self.db, key, user_ids, period)
        if not server_total and utc_day is None:
            return found
        server, usd = await ledger.spend_totals(self.db, key, period, utc_day)
        return {
            user_id: dataclasses.replace(
                figures, server_credits=server if server_total else 0, usd_micros_today=usd
            )
            for user_id, figures in found.items()
        }

    async def _assess(
        self,
        reader: ledger.Reader,
        guild_id: int | None,
        user_id: int,
        role_ids: Sequence[int],
        options: JobOptions,
        now: float,
    ) -> _Assessment:
        """Every check of a job, in the order a member can act on them; raises QuotaRefused."""
        if guild_id is None and self.settings.dm_credits <= 0:
            raise QuotaRefused(
                _(
                    "/animate is not available here: its operator allows it only in servers that added the "
                    "bot. Please use it in such a server."
                ),
                code="dm_off",
            )
        state = await self._member_state(reader, guild_id, user_id, role_ids, now, with_caps=True)
        if state.blocked:
            blocked = (
                _(
                    "A server admin has blocked you from making videos here ({reason}).",
                    reason=state.block_reason,
                )
                if state.block_reason
                else _("A server admin has blocked you from making videos here.")
            )
            raise QuotaRefused(blocked, code="blocked")
        check_switches(state, options)
        cost = job_cost(options, self.settings)
        check_cooldown(state, now)
        check_balance(state, cost)
        if state.policy.cap:
            check_server_cap(state, cost)
        micros = usd_micros(cost, self.settings)
        if self.settings.global_daily_usd > 0:
            check_global_cap(state, micros, self.settings, utc_day_bounds(now)[1])
        return _Assessment(cost, micros, state)


def _reservation_from_row(row: ledger.ReservationRow, balance: Balance) -> Reservation:
    return Reservation(
        job_id=row.job_id,
        cost=row.credits,
        usd_micros=row.usd_micros,
        from_allowance=row.from_allowance,
        from_bonus=row.from_bonus,
        balance_after=balance.available,
        resets_at=balance.resets_at,
    )


# ----- export ---------------------------------------------------------------------------------------------
