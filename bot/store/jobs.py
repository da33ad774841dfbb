"""SQL for the `jobs`, `job_events` and `meta` tables: a job's row, its guarded transitions, the fleet's
fair queue and the reads of the cogs. The recording of new jobs is in bot/store/inbox.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.fleet import WHOLE, ShardPlan
from bot.store.db import Database, Row
from bot.store.inbox import VIA_INTERACTION, JobInbox
from bot.store.ledger import Reader, Writer

# Columns a transition may set besides `state`; names are never taken from outside this list.
UPDATABLE = frozenset(
    {
        "start_image_url",
        "end_image_url",
        "request_id",
        "progress_message_id",
        "result_message_id",
        "video_url",
        "video_size",
        "error_code",
        "error_message",
        "retryable",
        "notified",
        "cost_credits",
        "submitted_at",
        "finished_at",
        "may_be_billed",
        "cancel_reason",
        "claimed_at",
    }
)


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    interaction_id: str
    guild_id: int | None
    channel_id: int
    user_id: int
    state: str
    params: dict[str, Any]
    upload_limit: int
    start_image_url: str | None
    end_image_url: str | None
    request_id: str | None
    progress_message_id: int | None
    result_message_id: int | None
    video_url: str | None
    video_size: int | None
    error_code: str | None
    error_message: str | None
    retryable: bool | None
    notified: bool
    cost_credits: int
    created_at: float
    updated_at: float
    submitted_at: float | None
    finished_at: float | None
    deadline: float
    may_be_billed: bool = False  # ended without a video, yet the API may bill it (migration 0003)
    cancel_reason: str | None = None  # Cancel pressed while at the API; survives a restart (0007)
    shard: int = 0  # the shard of its guild: the process owning it follows the job (0008)
    # 'channel' or 'interaction' (VIA_INTERACTION): how its messages reach the member (0010)
    deliver_via: str = "channel"
    locale: str | None = None  # the language of its public messages, a Discord locale (0011)

    @property
    def through_interaction(self) -> bool:
        """Whether the bot cannot post in the job's channel: never post there, use the interaction."""
        return self.deliver_via == VIA_INTERACTION

    @classmethod
    def from_row(cls, row: Row) -> JobRow:
        return cls(
            id=row["id"],
            interaction_id=row["interaction_id"],
            guild_id=_int_or_none(row["guild_id"]),
            channel_id=int(row["channel_id"]),
            user_id=int(row["user_id"]),
            state=row["state"],
            params=json.loads(row["params"]),
            upload_limit=row["upload_limit"],
            start_image_url=row["start_image_url"],
            end_image_url=row["end_image_url"],
            request_id=row["request_id"],
            progress_message_id=_int_or_none(row["progress_message_id"]),
            result_message_id=_int_or_none(row["result_message_id"]),
            video_url=row["video_url"],
            video_size=row["video_size"],
            error_code=row["error_code"],
            error_message=row["error_message"],
            retryable=None if row["retryable"] is None else bool(row["retryable"]),
            notified=bool(row["notified"]),
            cost_credits=row["cost_credits"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            submitted_at=row["submitted_at"],
            finished_at=row["finished_at"],
            deadline=row["deadline"],
            may_be_billed=bool(row["may_be_billed"]),
            cancel_reason=row["cancel_reason"],
            shard=int(row["shard"]),
            deliver_via=str(row["deliver_via"]),
            locale=row["locale"],
        )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _sql_value(value: Any) -> Any:
    # Snowflakes are kept as TEXT so they sort and compare exactly.
    if isinstance(value, bool):
        return int(value)
    return value


# Jobs of a member's last day the fair queue counts at most (see JobStore._heads_sql).
USAGE_COUNTED = 10


@dataclass(frozen=True, slots=True)
class _ClaimRule:
    """What `JobStore.claim_next` was asked to respect."""

    from_state: str
    busy_states: Sequence[str]
    usage_since: float
    max_busy: int
    max_busy_per_member: int
    pace: Callable[[list[float]], float]
    pace_window: float
    pace_count: int


@dataclass(frozen=True, slots=True)
class _Claim:
    """What `JobStore._next_claim` found: the job to claim (None: none now, or after `wait` seconds),
    the members at their cap then, and the job's member's usage count."""

    job_id: int | None
    wait: float
    full: list[str] | None = None
    usage: int = -1


# The channel of jobs started from a terminal (`kling-bot animate`): no Discord channel has id 0.
TERMINAL_CHANNEL_ID = 0


class JobStore(JobInbox):
    """`terminal` and `shards` choose whose jobs `in_states`, `unnotified` and the queue's reads return:
    the bot and a terminal may share the database (and its ledger), and so may the processes of a fleet
    (bot/fleet.py); each queues, resumes and reports only its own jobs. Caps and pacing are fleet-wide."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Any = time.time,
        terminal: bool = False,
        shards: ShardPlan = WHOLE,
    ) -> None:
        super().__init__(db, clock=clock, shards=shards)
        self._terminal = terminal
        self._own = self._owned()

    def _owned(self, alias: str = "") -> str:
        """The condition that a job of `jobs` (named `alias`, if given) is this store's own."""
        column = f"{alias}." if alias else ""
        own = f"{column}channel_id {'=' if self._terminal else '!='} '{TERMINAL_CHANNEL_ID}'"
        if self.shards.owned is not None and not self._terminal:
            # Integers from the settings, never from outside: safe to write into the statement.
            own += f" AND {column}shard IN ({', '.join(str(int(shard)) for shard in self.shards.owned)})"
        return own

    async def received_before(self, job_id: int, *, user_id: int, since: float) -> int:
        """The member's jobs recorded before `job_id` (and after `since`) that are still `received`,
        across every process sharing the database."""
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM jobs"
            " WHERE state = 'received' AND user_id = ? AND id < ? AND created_at >= ?",
            (str(user_id), job_id, since),
        )
        return 0 if row is None else int(row[0])

    async def transition(
        self, job_id: int, from_states: str | Iterable[str], to_state: str, **fields: Any
    ) -> bool:
        """Moves a job on only if it is still in one of `from_states`; False means someone else moved it."""
        async with self.db.write() as tx:
            return await self._move(tx, job_id, from_states, to_state, fields)

    async def record_submission(self, job_id: int, *, request_id: str, submitted_at: float) -> bool:
        """`submitting` → `submitted` with sunra's request id; False if the job moved meanwhile. Without
        the fleet's write lock: the conditional UPDATE of the job's own row is atomic by itself, and a
        request that has left must be written down even while the fleet is busy or this process stops
        (cut off, the job would end "uncertain" although it is at the API)."""
        fields = {"request_id": request_id, "submitted_at": submitted_at}
        async with self.db.write(exclusive=False) as tx:
            return await self._move(tx, job_id, "submitting", "submitted", fields)

    async def _move(
        self,
        tx: Writer,
        job_id: int,
        from_states: str | Iterable[str],
        to_state: str,
        fields: Mapping[str, Any],
    ) -> bool:
        allowed = (from_states,) if isinstance(from_states, str) else tuple(from_states)
        sets, values = self._assignments(fields)
        now = self._clock()
        placeholders = ", ".join("?" for _ in allowed)
        current = await tx.fetchone("SELECT state FROM jobs WHERE id = ?", (job_id,))
        changed = await tx.execute(
            f"UPDATE jobs SET state = ?, updated_at = ?{sets} WHERE id = ? AND state IN ({placeholders})",
            (to_state, now, *values, job_id, *allowed),
        )
        if changed:
            await tx.execute(
                "INSERT INTO job_events (job_id, from_state, to_state, at, detail) VALUES (?, ?, ?, ?, ?)",
                (job_id, current["state"] if current else None, to_state, now, fields.get("error_code")),
            )
        return changed == 1

    async def update(self, job_id: int, **fields: Any) -> None:
        """Sets facts about a job (a message id, the request id) without changing its state."""
        sets, values = self._assignments(fields)
        await self.db.execute(
            f"UPDATE jobs SET updated_at = ?{sets} WHERE id = ?", (self._clock(), *values, job_id)
        )

    @staticmethod
    def _assignments(fields: Mapping[str, Any]) -> tuple[str, list[Any]]:
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        sets = "".join(f", {name} = ?" for name in fields)
        values = [_sql_value(fields[name]) for name in fields]
        return sets, values

    async def get(self, job_id: int) -> JobRow | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else JobRow.from_row(row)

    async def in_states(self, states: Iterable[str]) -> list[JobRow]:
        wanted = tuple(states)
        placeholders = ", ".join("?" for _ in wanted)
        rows = await self.db.fetchall(
            f"SELECT * FROM jobs WHERE state IN ({placeholders}) AND {self._own} ORDER BY id", wanted
        )
        return [JobRow.from_row(row) for row in rows]

    async def place_in_queue(self, job_id: int, state: str, usage_since: float) -> int | None:
        """The job's place (1 = next) among this process's jobs in `state`, in the fair order of
        bot/jobs/dispatch.py `fair_order` (a member's k-th waiting job in round k, then members with
        fewer jobs submitted since `usage_since`, then age); None if the job is not in `state`.
        Counted inside SQLite: a crowd's commands each ask, and reading the queue as rows for each
        would cost the event loop the square of the queue's length."""
        row = await self.db.fetchone(
            "WITH queue AS ("
            "  SELECT id, user_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY id) AS round"
            f"  FROM jobs WHERE state = :state AND {self._own}),"
            " usage AS ("
            "  SELECT user_id, COUNT(*) AS n FROM jobs WHERE submitted_at >= :since GROUP BY user_id),"
            " keyed AS (SELECT q.id, q.round, COALESCE(u.n, 0) AS n"
            "  FROM queue q LEFT JOIN usage u ON u.user_id = q.user_id)"
            " SELECT (SELECT COUNT(*) FROM keyed k WHERE (k.round, k.n, k.id) <= (me.round, me.n, me.id))"
            " AS place FROM keyed me WHERE me.id = :job",
            {"state": state, "since": usage_since, "job": job_id},
        )
        return None if row is None else int(row["place"])

    # ----- the fleet's queue (bot/jobs/dispatch.py): each read touches the queue's heads, not all of it --

    async def expired_in_queue(self, state: str, now: float, limit: int) -> list[JobRow]:
        """Up to `limit` of this process's jobs in `state` whose deadline has passed, the first to pass
        first. In the order of the index `jobs_deadline`, so the read is that index's range of expired
        jobs (ordered by id, PostgreSQL would walk the whole table by its key, 17 ms with 110,000 jobs)."""
        rows = await self.db.fetchall(
            f"SELECT * FROM jobs WHERE state = ? AND deadline < ? AND {self._own}"
            " ORDER BY state, deadline, id LIMIT ?",
            (state, now, limit),
        )
        return [JobRow.from_row(row) for row in rows]

    async def queue_front(self, state: str, usage_since: float, limit: int) -> list[JobRow]:
        """The first `limit` of this process's jobs in `state`, in the fair order of `place_in_queue`,
        without reading the whole queue: with `limit` members waiting or more, the front is their first
        jobs; with fewer, it is made of each one's first `limit` jobs."""
        heads = await self.db.fetchall(
            self._heads_sql(),
            {"state": state, "since": usage_since, "full": "[]", "now": None, "limit": limit},
        )
        if len(heads) >= limit:
            ids = [int(row["id"]) for row in heads]
        else:
            users = [str(row["user_id"]) for row in heads]
            usage = {str(row["user_id"]): int(row["n"]) for row in heads}
            per_user = " UNION ALL ".join(
                f"SELECT * FROM (SELECT id, user_id FROM jobs WHERE state = ? AND user_id = ? AND {self._own}"
                f" ORDER BY id LIMIT ?) AS member_{number}"
                for number in range(len(users))
            )
            values = [value for user in users for value in (state, user, limit)]
            rows = await self.db.fetchall(per_user, values) if users else []
            rounds: dict[str, int] = {}
            keyed = []
            for row in sorted(rows, key=lambda r: int(r["id"])):
                user = str(row["user_id"])
                rounds[user] = rounds.get(user, 0) + 1
                keyed.append(((rounds[user], usage[user], int(row["id"])), int(row["id"])))
            ids = [job_id for _, job_id in sorted(keyed)[:limit]]
        if not ids:
            return []
        found = await self.db.fetchall(
            f"SELECT * FROM jobs WHERE id IN ({', '.join('?' for _ in ids)})", tuple(ids)
        )
        by_id = {int(row["id"]): JobRow.from_row(row) for row in found}
        return [by_id[job_id] for job_id in ids if job_id in by_id]

    def _heads_sql(self) -> str:
        """Each member's first job in `:state`, members with fewer jobs submitted since `:since` first,
        then the oldest, leaving out the members in the JSON array `:full` and, unless `:now` is NULL,
        the heads whose deadline is before `:now`, up to `:limit` rows: (id, user_id, n). The heads come
        from the index `jobs_queue`, each member's count from `jobs_user_submitted`, and the expired
        heads from one range of `jobs_deadline` (not one look-up per head)."""
        return (
            "WITH heads AS ("
            f"  SELECT user_id, MIN(id) AS id FROM jobs WHERE state = :state AND {self._own}"
            "  GROUP BY user_id)"
            # Counted up to USAGE_COUNTED: the order among members who made more is the age of their
            # jobs, and each member's count stays a bounded read however busy the day was.
            f" SELECT h.id, h.user_id, ({self._usage_sql('h.user_id')}) AS n FROM heads h"
            " WHERE h.user_id NOT IN (SELECT value FROM json_each(:full))"
            " AND h.id NOT IN (SELECT e.id FROM jobs e WHERE e.state = :state AND e.deadline < :now)"
            " ORDER BY n, h.id LIMIT :limit"
        )

    @staticmethod
    def _usage_sql(member: str) -> str:
        """A member's jobs submitted since `:since`, counted up to USAGE_COUNTED (`member`: a column)."""
        return (
            f"SELECT COUNT(*) FROM (SELECT 1 FROM jobs u WHERE u.user_id = {member}"
            f" AND u.submitted_at >= :since LIMIT {USAGE_COUNTED}) AS recent"
        )

    async def claim_next(
        self,
        *,
        from_state: str,
        to_state: str,
        busy_states: Sequence[str],
        usage_since: float,
        max_busy: int,
        max_busy_per_member: int,
        pace: Callable[[list[float]], float],
        pace_window: float,
        pace_count: int,
    ) -> tuple[JobRow | None, float]:
        """Moves the next of this process's waiting jobs on, if the fleet's caps and pace allow; one
        write transaction, and the fleet's write transactions run one at a time (bot/store/db.py), so
        caps and pace hold across processes.

        The next job: the first waiting job of each member who is not at `max_busy_per_member` jobs in
        `busy_states` (0 = no cap), members with fewer jobs submitted since `usage_since` first, then the
        oldest. Nothing moves while the fleet has `max_busy` jobs in `busy_states` (0 = no cap).
        `pace(times)` gets the claims of the last `pace_window` seconds (at most `pace_count`) and
        returns the seconds to wait first. Returns (the job, now in `to_state` with `claimed_at` set, 0),
        (None, seconds to wait) or (None, 0) when no job may move now.

        The queue is read before the write transaction, which every process's writes share (PostgreSQL:
        the fleet's write lock), so the lock is held for a handful of index reads, not for the read of
        every waiting member's usage. Inside it the caps, the pace, the chosen job and its member's
        usage are read again; if the members at their cap changed, or the job or its member's count
        did, the queue is read again inside. A job recorded while the pass runs counts as recorded just
        after it."""
        now = self._clock()
        rule = _ClaimRule(
            from_state, busy_states, usage_since, max_busy, max_busy_per_member, pace, pace_window, pace_count
        )
        # Read first, outside any write: a pass that can claim nothing (caps full, the pace, an empty
        # queue) takes no write lock at all.
        look = await self._next_claim(self.db, rule, now)
        if look.job_id is None:
            return None, look.wait
        async with self.db.write() as tx:
            again = await self._next_claim(tx, rule, now, expected=look)
            if again.job_id is None or not await self._move(
                tx, again.job_id, from_state, to_state, {"claimed_at": now}
            ):
                return None, again.wait
            row = await tx.fetchone("SELECT * FROM jobs WHERE id = ?", (again.job_id,))
        return (None if row is None else JobRow.from_row(row)), 0.0

    async def _next_claim(
        self, reader: Reader, rule: _ClaimRule, now: float, *, expected: _Claim | None = None
    ) -> _Claim:
        """The next job to claim, or why none: the caps and the pace first (a few index reads), then
        the queue's heads. With `expected` (the look before the transaction), its job is checked rather
        than the queue read again, unless what chose it changed."""
        busy_in = ", ".join("?" for _ in rule.busy_states)
        busy = {
            str(row[0]): int(row[1])
            for row in await reader.fetchall(
                f"SELECT user_id, COUNT(*) FROM jobs WHERE state IN ({busy_in}) GROUP BY user_id",
                tuple(rule.busy_states),
            )
        }
        if rule.max_busy and sum(busy.values()) >= rule.max_busy:
            return _Claim(None, 0.0)
        per_member = rule.max_busy_per_member
        full = sorted(user for user, n in busy.items() if per_member and n >= per_member)
        sent = await reader.fetchall(
            "SELECT claimed_at FROM jobs WHERE claimed_at > ? ORDER BY claimed_at DESC LIMIT ?",
            (now - rule.pace_window, rule.pace_count),
        )
        wait = rule.pace([float(row[0]) for row in sent])
        if wait > 0:
            # Told to wait only when a job waits (one index read), as when the queue is read.
            # In the order of the index `jobs_queue`: otherwise PostgreSQL may scan the table for it.
            waiting = await reader.fetchone(
                f"SELECT 1 FROM jobs WHERE state = ? AND {self._own} ORDER BY state, user_id LIMIT 1",
                (rule.from_state,),
            )
            return _Claim(None, wait if waiting is not None else 0.0)
        if expected is not None and expected.full == full and expected.job_id is not None:
            # The look's choice stands if its job is still its member's first, alive, and the member's
            # count unchanged: then no other head moved ahead of it (counts only grow with `since` fixed).
            same = await reader.fetchone(
                f"SELECT j.id, ({self._usage_sql('j.user_id')}) AS n FROM jobs j"
                " WHERE j.id = :job AND j.state = :state AND j.deadline >= :now"
                " AND NOT EXISTS (SELECT 1 FROM jobs f WHERE f.state = :state AND f.user_id = j.user_id"
                f" AND f.id < j.id AND {self._owned('f')})",
                {"job": expected.job_id, "state": rule.from_state, "now": now, "since": rule.usage_since},
            )
            if same is not None and int(same["n"]) == expected.usage:
                return expected
        found = await reader.fetchone(
            self._heads_sql(),
            {
                "state": rule.from_state,
                "since": rule.usage_since,
                "full": json.dumps(full),
                # A head whose lifetime is over is ended by the dispatcher, not submitted.
                "now": now,
                "limit": 1,
            },
        )
        if found is None:
            return _Claim(None, 0.0)
        return _Claim(int(found["id"]), 0.0, full, int(found["n"]))

    async def reckon_shards(self, ended: Iterable[str]) -> int:
        """Stamps every job still to follow or to tell (not in `ended`, or not notified) with its
        guild's shard under this process's SHARD_COUNT: a job recorded by an unsharded process, or
        under another count, is owned by the process of its shard now. Returns the jobs moved."""
        count = self.shards.count
        if count is None:
            return 0
        done = tuple(ended)
        placeholders = ", ".join("?" for _ in done)
        moved = 0
        async with self.db.write() as tx:
            rows = await tx.fetchall(
                f"SELECT id, guild_id, shard FROM jobs WHERE (state NOT IN ({placeholders}) OR notified = 0)"
                f" AND channel_id != '{TERMINAL_CHANNEL_ID}'",
                done,
            )
            for row in rows:
                guild_id = None if row["guild_id"] is None else int(row["guild_id"])
                shard = self.shards.shard_of(guild_id)
                if int(row["shard"]) != shard:
                    await tx.execute("UPDATE jobs SET shard = ? WHERE id = ?", (shard, row["id"]))
                    moved += 1
        return moved

    async def unnotified(self, states: Iterable[str]) -> list[JobRow]:
        wanted = tuple(states)
        placeholders = ", ".join("?" for _ in wanted)
        rows = await self.db.fetchall(
            f"SELECT * FROM jobs WHERE notified = 0 AND state IN ({placeholders}) AND {self._own}"
            " ORDER BY id",
            wanted,
        )
        return [JobRow.from_row(row) for row in rows]

    async def count_by_user(self, states: Iterable[str]) -> dict[int, int]:
        wanted = tuple(states)
        placeholders = ", ".join("?" for _ in wanted)
        rows = await self.db.fetchall(
            f"SELECT user_id, COUNT(*) AS n FROM jobs WHERE state IN ({placeholders}) GROUP BY user_id",
            wanted,
        )
        return {int(row["user_id"]): int(row["n"]) for row in rows}

    async def started_since(self, since: float) -> dict[int, int]:
        """Jobs per member that reached the API since `since`, for usage-weighted fairness."""
        rows = await self.db.fetchall(
            "SELECT user_id, COUNT(*) AS n FROM jobs WHERE submitted_at >= ? GROUP BY user_id", (since,)
        )
        return {int(row["user_id"]): int(row["n"]) for row in rows}

    async def recent_for_user(self, user_id: int, limit: int = 10) -> list[JobRow]:
        rows = await self.db.fetchall(
            "SELECT * FROM jobs WHERE user_id = ? ORDER BY id DESC LIMIT ?", (str(user_id), limit)
        )
        return [JobRow.from_row(row) for row in rows]

    async def history(self, user_id: int, *, offset: int, limit: int) -> tuple[list[JobRow], int]:
        """A page of the member's jobs, newest first, and how many they have in all."""
        total = await self.db.fetchone("SELECT COUNT(*) FROM jobs WHERE user_id = ?", (str(user_id),))
        rows = await self.db.fetchall(
            "SELECT * FROM jobs WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (str(user_id), limit, offset),
        )
        return [JobRow.from_row(row) for row in rows], int(total[0]) if total else 0

    async def events(self, job_id: int) -> list[tuple[str | None, str]]:
        rows = await self.db.fetchall(
            "SELECT from_state, to_state FROM job_events WHERE job_id = ? ORDER BY id", (job_id,)
        )
        return [(row["from_state"], row["to_state"]) for row in rows]

    async def get_meta(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

    async def set_meta(self, key: str, value: str) -> None:
        await self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
