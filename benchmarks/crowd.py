"""A crowd in one second: the whole bot process against the loopback fakes, one table (not run by CI).

    .venv/bin/python benchmarks/crowd.py [--runs 3] [--members 100 500] [--engines sqlite postgresql]
        [--jobs 100]
        [--job-seconds 20 60 120] [--memory-jobs 1000] [--fleet-members 1000] [--postgres-url …]

Starts a fake Discord and a fake sunra in this process and the bot as a real `python -m bot` subprocess,
as benchmarks/bench_ack.py does, and prints:

* acknowledgement: N members send /animate at the same instant; p50/p99 of the interaction callback (the
  deferral Discord wants within 3 s), for the bot and for a bare discord.py client that only defers
  (benchmarks/bare_client.py, the floor: same intents, same harness), and the ratio of the p99s. Each is
  the median of `--runs` runs, each run in a fresh process and a fresh database: a SQLite file, or with
  `--engines postgresql` also a database of its own on `--postgres-url` (one process, no shards).
* a finished crowd (`--jobs` members, sunra jobs of each `--job-seconds`: 20, 60 and 120 s by default;
  Kling 2.6 Pro's real jobs take 1-5 minutes, so 20 s is a short job's worst case): status requests per
  job-minute at sunra (every status GET and status-stream connection, over the minutes from submission
  to COMPLETED, queue included) next to a client that polls every 0.1 s (600 a minute), with what each
  job cost in status GETs, stream connections and result GETs; the bot's CPU seconds per job (user +
  system, /proc); the time from the moment the API's job is COMPLETED to the moment the video's upload
  reaches Discord (p50/p99).
* memory: peak RSS (VmHWM) of the bot with `--memory-jobs` jobs accepted and in flight at once.
* a fleet (`--fleet-members`, 1,000 by default): two bot processes on one PostgreSQL database
  (`--postgres-url`, a fresh database made and dropped per run), SHARD_COUNT=2, one shard each, and the
  members spread over one server on each shard, all at once: p50/p99 per process, next to two bare
  clients sharded the same way; and the single process on SQLite with the same crowd beside it.

Discord's shared 50/s "default" bucket and its per-channel message limits are lifted in the fake, so the
figures are the bot's own. The machine matters: the table ends with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import secrets
import sqlite3
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_ack import (
    FIRST_MEMBER_ID,
    SUNRA_KEY,
    answer_latency,
    peak_rss_kib,
    percentile,
    picture,
    problem_lines,
    send_all,
    start_bot,
    stop_process,
    wait_for_jobs,
    wait_until_ready,
)
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.sunra_server import FakeSunra, JobPlan

BARE = (str(Path(__file__).resolve().parent / "bare_client.py"),)
POLL_EVERY_SECONDS = 0.1
UPLOAD_NAME = re.compile(r"kling-(\d+)\.mp4$")


@dataclass
class Crowd:
    fake: FakeDiscord
    sunra: FakeSunra
    proc: asyncio.subprocess.Process
    workdir: Path

    @property
    def database(self) -> Path:
        return self.workdir / "bot.sqlite3"


@contextlib.asynccontextmanager
async def crowd(  # type: ignore[no-untyped-def]
    job_seconds: float,
    queue_seconds: float,
    command: tuple[str, ...] = ("-m", "bot"),
    *,
    quiet: bool = False,
    env: dict[str, str] | None = None,
):
    """The bot (or `command`) running against fresh fakes; `quiet` ignores its log (an acknowledgement
    run stops the bot in the middle of the crowd's work, which logs the commands it cut short); `env`
    adds to its settings (a PostgreSQL DATABASE_URL)."""
    with tempfile.TemporaryDirectory(prefix="bench-crowd-") as tmp:
        workdir = Path(tmp)
        log_path = workdir / "bot.log"
        async with FakeDiscord() as fake, FakeSunra(key=SUNRA_KEY, job_seconds=job_seconds) as sunra:
            for bucket in ("message_create", "message_edit", "default"):
                fake.set_rate_limit(bucket, 100_000, 1.0)
            sunra.plan_jobs(JobPlan(seconds=job_seconds, queue_seconds=queue_seconds), times=None)
            proc = await start_bot(fake, sunra, workdir, log_path, command, **(env or {}))
            try:
                await wait_until_ready(fake, proc, log_path)
                yield Crowd(fake, sunra, proc, workdir)
            finally:
                await stop_process(proc)
                problems = [] if quiet else problem_lines(log_path)
                if problems:
                    kept = Path(tempfile.gettempdir()) / "bench-crowd-last.log"
                    kept.write_bytes(log_path.read_bytes())
                    print(
                        f"    {len(problems)} warning/error lines in the log, kept in {kept}", file=sys.stderr
                    )


async def acknowledge(fake: FakeDiscord, members: int, wait: float = 60.0) -> tuple[list[int], list[float]]:
    ids, _, _ = await send_all(fake, members)

    def done() -> bool:
        return all(fake.interactions[i].acknowledged or fake.interactions[i].expired for i in ids)

    with contextlib.suppress(TimeoutError):
        await fake.wait_for(done, timeout=wait, what="every callback")
    wanted = set(ids)
    latencies = [c.latency for c in fake.callbacks if c.interaction_id in wanted]
    if len(latencies) < members:
        print(f"    only {len(latencies)}/{members} callbacks arrived", file=sys.stderr)
    return ids, latencies


async def ack_run(
    members: int, command: tuple[str, ...], postgres_url: str | None = None
) -> tuple[float, float]:
    """(p50, p99) of one crowd's acknowledgements; on a fresh PostgreSQL database when `postgres_url`
    (the server to make it on), else on a fresh SQLite file."""
    async with contextlib.AsyncExitStack() as stack:
        env = {}
        if postgres_url is not None:
            env["DATABASE_URL"] = await stack.enter_async_context(fresh_postgres(postgres_url))
        c = await stack.enter_async_context(crowd(600.0, 5.0, command, quiet=True, env=env))
        _, latencies = await acknowledge(c.fake, members)
    return statistics.median(latencies), percentile(latencies, 0.99)


@contextlib.asynccontextmanager
async def fresh_postgres(admin_url: str):  # type: ignore[no-untyped-def]
    """A new empty PostgreSQL database for one run; its URL. Dropped afterwards."""
    import asyncpg  # only the fleet run needs it

    name = f"kling_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def fleet_ack_run(
    members: int, command: tuple[str, ...], admin_url: str
) -> dict[int, tuple[float, float]]:
    """Two processes of `command`, shards 0 and 1 of 2 on one fresh PostgreSQL database; `members` send
    /animate at once, half in a server on each shard. {shard: (p50, p99)} of the acknowledgements."""
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        workdir = Path(tmp)
        async with (
            fresh_postgres(admin_url) as url,
            FakeDiscord(shard_count=2) as fake,
            FakeSunra(key=SUNRA_KEY, job_seconds=600.0) as sunra,
        ):
            for bucket in ("message_create", "message_edit", "default"):
                fake.set_rate_limit(bucket, 100_000, 1.0)
            sunra.plan_jobs(JobPlan(seconds=600.0, queue_seconds=5.0), times=None)
            guilds = []
            for shard in (0, 1):
                guild_id = fake.guild_id_on_shard(shard)
                fake.add_guild(f"shard {shard}", guild_id=guild_id)
                guilds.append((guild_id, fake.guilds[guild_id].channel_ids[0]))
            procs = []
            try:
                for shard in (0, 1):
                    log_path = workdir / f"shard-{shard}.log"
                    env = {"DATABASE_URL": url, "SHARD_COUNT": "2", "SHARD_IDS": str(shard)}
                    procs.append(await start_bot(fake, sunra, workdir, log_path, command, **env))
                    await fake.wait_for_ready(timeout=60, shard_id=shard)
                await wait_until_ready(fake, procs[0], workdir / "shard-0.log")
                payloads = []
                for index in range(members):
                    guild_id, channel_id = guilds[index % 2]
                    uid = FIRST_MEMBER_ID + index
                    fake.ensure_member(guild_id, uid)
                    filename, data = picture(index)
                    attachment = fake.add_attachment(filename, data)
                    options = {"image": attachment, "prompt": f"member {index} waves at the camera"}
                    payloads.append(
                        p.slash_command(
                            fake, options=options, user_id=uid, guild_id=guild_id, channel_id=channel_id
                        )
                    )
                records = await asyncio.gather(*(fake.dispatch_interaction(payload) for payload in payloads))
                ids = [r.id for r in records]

                def done() -> bool:
                    return all(fake.interactions[i].acknowledged or fake.interactions[i].expired for i in ids)

                with contextlib.suppress(TimeoutError):
                    await fake.wait_for(done, timeout=120, what="every callback")
                shard_of = {r.id: fake.shard_of(r.guild_id) for r in records}
                latencies: dict[int, list[float]] = {0: [], 1: []}
                for callback in fake.callbacks:
                    if callback.interaction_id in shard_of:
                        latencies[shard_of[callback.interaction_id]].append(callback.latency)
                if sum(map(len, latencies.values())) < members:
                    print(
                        f"    only {sum(map(len, latencies.values()))}/{members} callbacks arrived",
                        file=sys.stderr,
                    )
                return {
                    shard: (statistics.median(values), percentile(values, 0.99))
                    for shard, values in latencies.items()
                    if values
                }
            finally:
                for proc in procs:
                    await stop_process(proc)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upload_delays(c: Crowd) -> list[float]:
    """Seconds from each job's COMPLETED at the fake sunra to its video upload reaching the fake Discord."""
    with contextlib.closing(sqlite3.connect(f"file:{c.database}?mode=ro", uri=True)) as db:
        request_ids = dict(db.execute("SELECT id, request_id FROM jobs WHERE request_id IS NOT NULL"))
    delays: list[float] = []
    for request in c.fake.requests:
        found = next((UPLOAD_NAME.search(f.filename or "") for f in request.files), None)
        if request.method != "POST" or found is None:
            continue
        job = c.sunra.jobs.get(request_ids.get(int(found.group(1)), ""))
        if job is not None:
            delays.append(c.fake.started_at + request.at - (job.created_at + job.seconds))
    return delays


@dataclass
class Finished:
    status_per_job_minute: float
    requests_per_job: dict[str, float]
    cpu_per_job: float
    upload_p50: float
    upload_p99: float
    jobs: int


# What the bot may send sunra about a submitted job while it waits: every one of these counts.
STATUS_ROUTES = ("status", "stream")


async def finished_run(jobs: int, job_seconds: float, queue_seconds: float) -> Finished:
    """`jobs` members at once, each job `queue_seconds` in sunra's queue then `job_seconds` running.
    Status requests per job-minute: every request to the status and status-stream endpoints, over the
    minutes the jobs spent at sunra (submission to COMPLETED, queue and run)."""
    async with crowd(job_seconds, queue_seconds) as c:
        cpu_before = cpu_seconds(c.proc.pid)
        ids, _ = await acknowledge(c.fake, jobs)
        await wait_for_jobs(c.database, ids, c.fake, limit=120 + 60 * (jobs // 100 + 1) + 2 * job_seconds)
        cpu = cpu_seconds(c.proc.pid) - cpu_before
        waited_minutes = sum(job.queue_seconds + job.seconds for job in c.sunra.jobs.values()) / 60
        calls = sum(c.sunra.count(route) for route in STATUS_ROUTES)
        count = max(1, len(c.sunra.jobs))
        delays = upload_delays(c) or [float("nan")]
        return Finished(
            status_per_job_minute=calls / max(waited_minutes, 1e-9),
            requests_per_job={route: c.sunra.count(route) / count for route in (*STATUS_ROUTES, "result")},
            cpu_per_job=cpu / count,
            upload_p50=statistics.median(delays),
            upload_p99=percentile(delays, 0.99),
            jobs=len(c.sunra.jobs),
        )


async def memory_run(jobs: int) -> tuple[float, int]:
    """Peak RSS in MiB once `jobs` members have all been answered (their jobs queued or at the API)."""
    async with crowd(3600.0, 60.0) as c:
        ids, _ = await acknowledge(c.fake, jobs, wait=120)

        def answered() -> bool:
            return all(answer_latency(c.fake, i) is not None for i in ids)

        with contextlib.suppress(TimeoutError):
            await c.fake.wait_for(answered, timeout=300, what="every private answer")
        hwm, _ = peak_rss_kib(c.proc.pid)
        in_flight = sum(1 for i in ids if answer_latency(c.fake, i) is not None)
        return (hwm or 0) / 1024, in_flight


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, IndexError, ValueError):
        total_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f"{total_kib / 1024 / 1024:.1f} GiB"
    load = load_average()
    return (
        f"{os.cpu_count()} cores ({model}), {memory} RAM, Python {platform.python_version()}, "
        f"load average {load}"
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


async def main(args: argparse.Namespace) -> None:
    rows: list[tuple[str, str, str]] = []
    print(f"machine: {machine()}", flush=True)
    for engine, members in [(e, m) for e in args.engines for m in args.members]:
        postgres_url = args.postgres_url if engine == "postgresql" else None
        bare_runs: list[tuple[float, float]] = []
        bot_runs: list[tuple[float, float]] = []
        for _ in range(args.runs):
            # Alternated, so a change in the machine's load weighs on both alike.
            bare_runs.append(await ack_run(members, BARE))
            bot_runs.append(await ack_run(members, ("-m", "bot"), postgres_url))
            print(
                f"  {members} members ({engine}): bare p99 {ms(bare_runs[-1][1])}, "
                f"bot p99 {ms(bot_runs[-1][1])}; load average {load_average()}",
                flush=True,
            )
        bare, bot = medians(bare_runs), medians(bot_runs)
        name = f"acknowledgement, {members} members at once{'' if engine == 'sqlite' else ', PostgreSQL'}"
        rows.append((f"{name}: p50", ms(bot[0]), ms(bare[0])))
        rows.append((f"{name}: p99", ms(bot[1]), f"{ms(bare[1])} (the bot: {bot[1] / bare[1]:.2f}x)"))
    if args.jobs:
        polled = 60 / POLL_EVERY_SECONDS
        for job_seconds in args.job_seconds:
            done = await finished_run(args.jobs, job_seconds, args.queue_seconds)
            sent = done.requests_per_job
            print(
                f"  {done.jobs} jobs of {job_seconds:g} s finished: per job {sent['status']:.2f} status "
                f"GETs, {sent['stream']:.2f} stream connections, {sent['result']:.2f} result GETs",
                flush=True,
            )
            rows.append(
                (
                    f"status requests per job-minute at sunra ({args.queue_seconds:g} s queued + "
                    f"{job_seconds:g} s running)",
                    f"{done.status_per_job_minute:.2f}",
                    f"{polled:.0f} (polls every 0.1 s)",
                )
            )
        # CPU and upload figures of the last (the longest, realistic) job length.
        rows.append((f"CPU seconds per job ({job_seconds:g} s jobs)", f"{done.cpu_per_job:.3f} s", ""))
        rows.append(("API completed -> upload starts: p50", ms(done.upload_p50), ""))
        rows.append(("API completed -> upload starts: p99", ms(done.upload_p99), ""))
    if args.fleet_members:
        members = args.fleet_members
        single_bare: list[tuple[float, float]] = []
        single_bot: list[tuple[float, float]] = []
        fleet_bare: list[dict[int, tuple[float, float]]] = []
        fleet_bot: list[dict[int, tuple[float, float]]] = []
        for _ in range(args.runs):
            single_bare.append(await ack_run(members, BARE))
            single_bot.append(await ack_run(members, ("-m", "bot")))
            fleet_bare.append(await fleet_ack_run(members, BARE, args.postgres_url))
            fleet_bot.append(await fleet_ack_run(members, ("-m", "bot"), args.postgres_url))
            print(
                f"  fleet of 2, {members} members: bare p99 "
                f"{', '.join(ms(v[1]) for v in fleet_bare[-1].values())}, bot p99 "
                f"{', '.join(ms(v[1]) for v in fleet_bot[-1].values())}; one process on SQLite: "
                f"bare p99 {ms(single_bare[-1][1])}, bot p99 {ms(single_bot[-1][1])}",
                flush=True,
            )
        bare, bot = medians(single_bare), medians(single_bot)
        rows.append((f"one process, SQLite, {members} members at once: p50", ms(bot[0]), ms(bare[0])))
        ratio = f"{ms(bare[1])} (the bot: {bot[1] / bare[1]:.2f}x)"
        rows.append((f"one process, SQLite, {members} members at once: p99", ms(bot[1]), ratio))
        for shard in (0, 1):
            bare = medians([run[shard] for run in fleet_bare if shard in run])
            bot = medians([run[shard] for run in fleet_bot if shard in run])
            name = f"fleet of 2 on PostgreSQL, {members} members: shard {shard}'s process"
            rows.append((f"{name}: p50", ms(bot[0]), ms(bare[0])))
            rows.append((f"{name}: p99", ms(bot[1]), f"{ms(bare[1])} (the bot: {bot[1] / bare[1]:.2f}x)"))
    if args.memory_jobs:
        peak, in_flight = await memory_run(args.memory_jobs)
        rows.append((f"peak RSS, {in_flight} jobs in flight", f"{peak:.0f} MiB", ""))
    print()
    print(f"Medians of {args.runs} runs for acknowledgement; one run for the rest.")
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'the bot':>14}  bare discord.py client (defers only)")
    for name, value, floor in rows:
        print(f"{name:{width}}  {value:>14}  {floor}")
    print(f"machine: {machine()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="runs per acknowledgement figure (median)")
    parser.add_argument("--members", type=int, nargs="*", default=[100, 500])
    parser.add_argument(
        "--engines",
        nargs="*",
        choices=["sqlite", "postgresql"],
        default=["sqlite"],
        help="the single process's database for the acknowledgement rows (postgresql: --postgres-url)",
    )
    parser.add_argument("--jobs", type=int, default=100, help="jobs run to the end (0 = skip)")
    # Kling 2.6 Pro's jobs take one to five minutes at sunra; 20 s shows a short job's worst case.
    parser.add_argument(
        "--job-seconds",
        type=float,
        nargs="*",
        default=[20.0, 60.0, 120.0],
        help="running seconds of the finished crowd's jobs, one run per value (realistic: 60-300)",
    )
    parser.add_argument("--queue-seconds", type=float, default=5.0)
    parser.add_argument(
        "--memory-jobs", type=int, default=1000, help="jobs in flight for peak RSS (0 = skip)"
    )
    parser.add_argument(
        "--fleet-members", type=int, default=1000, help="members for the two-process run (0 = skip)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POSTGRES_TEST_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server where the fleet run may create and drop its own database",
    )
    asyncio.run(main(parser.parse_args()))
