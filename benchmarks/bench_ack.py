"""Benchmark of /animate under a crowd: acknowledgement latency and sunra calls per job (not run by CI).

    .venv/bin/python benchmarks/bench_ack.py [--members 100] [--job-seconds 20] [--queue-seconds 5]

Starts a fake Discord and a fake sunra in this process, and the bot as a real `python -m bot` subprocess
(so the fakes' work does not slow the bot's event loop). Every member sends /animate with their own
picture at the same instant. Prints the latency of the interaction callbacks (the acknowledgement Discord
wants within 3 s) and of the private "your video is on its way" answer, then waits for every job to end
and prints the sunra status/stream calls each job cost, the end-to-end time and the bot's peak RSS.

The fake Discord is told to accept late callbacks (``--enforce-deadline`` keeps Discord's 3 s rule), so
every latency is measured; "over 3 s" counts the ones Discord would have refused. Message create/edit
limits are lifted unless ``--discord-message-limits``. The fake puts interaction callbacks in its shared
50/s "default" bucket (real Discord does not limit them globally); ``--loosen-default-bucket`` lifts it to
measure the bot alone. ``--no-stream`` makes the bot poll status instead of following the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw

from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.sunra_server import FakeSunra, JobPlan
from tests.world import file_hosts

ROOT = Path(__file__).resolve().parent.parent
SUNRA_KEY = "sk-bench-0123456789abcdef"
ENDED = ("delivered", "failed", "cancelled", "refused", "uncertain")
DISCORD_DEADLINE = 3.0
FIRST_MEMBER_ID = 1_300_000_000_000_000_000
# The bot paces submissions at 10/s and 100/min (bot/jobs.py SUBMIT_LIMITS).
SUBMITS_PER_MINUTE = 100
PROBLEM_MARKS = ("WARNING", "ERROR", "CRITICAL", "Traceback")
NOISE = ("voice will NOT be supported",)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    return (
        f"min {min(samples) * 1000:.0f} ms, median {statistics.median(samples) * 1000:.0f} ms, "
        f"p95 {percentile(samples, 0.95) * 1000:.0f} ms, p99 {percentile(samples, 0.99) * 1000:.0f} ms, "
        f"max {max(samples) * 1000:.0f} ms"
    )


def picture(index: int) -> tuple[str, bytes]:
    """A 640x480 picture, different for every member; every fourth one is a JPEG."""
    colour = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
    image = Image.new("RGB", (640, 480), colour)
    draw = ImageDraw.Draw(image)
    for step in range(8):
        offset = (index * 13 + step * 40) % 400
        draw.rectangle((offset, step * 60, offset + 200, step * 60 + 40), fill=(255 - colour[0], 80, 160))
    buffer = io.BytesIO()
    if index % 4 == 3:
        image.save(buffer, "JPEG", quality=85)
        return f"member{index}.jpg", buffer.getvalue()
    image.save(buffer, "PNG")
    return f"member{index}.png", buffer.getvalue()


def bot_environment(fake: FakeDiscord, sunra: FakeSunra, workdir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DISCORD_", "SUNRA_", "QUOTA__", "JOBS__"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        DISCORD_TOKEN=fake.token,
        SUNRA_KEY=SUNRA_KEY,
        DISCORD_API_URL=fake.api_url,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        SUNRA_API_URL=sunra.url,
        SUNRA_FILE_HOSTS=file_hosts(fake.api_url, sunra.url),  # the fakes on loopback are listed
        DATABASE_URL=f"sqlite:///{workdir / 'bot.sqlite3'}",
        QUOTA__DAILY_CREDITS="1000",
        QUOTA__MAX_CONCURRENT_JOBS="5",
        LOG_LEVEL="WARNING",
    )
    # The bot reads config/bot.toml from its working directory (a temp dir: none) unless BOT_CONFIG says.
    env.pop("BOT_CONFIG", None)
    return env


def job_states(database: Path) -> dict[str, int]:
    if not database.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        try:
            rows = db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        except sqlite3.OperationalError:  # the schema is not there yet
            return {}
    return {str(state): int(count) for state, count in rows}


def last_finish(database: Path) -> float | None:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        row = db.execute("SELECT MAX(finished_at) FROM jobs").fetchone()
    return float(row[0]) if row and row[0] is not None else None


def peak_rss_kib(pid: int) -> tuple[int | None, int | None]:
    """(VmHWM, VmRSS) of a live process in KiB, from /proc."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = int(rest.split()[0])
    return values.get("VmHWM"), values.get("VmRSS")


async def stop_process(proc: asyncio.subprocess.Process) -> int | None:
    if proc.returncode is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        print("the bot did not stop within 10 s of SIGTERM; killing it")
        proc.kill()
        return await proc.wait()


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def problem_lines(path: Path) -> list[str]:
    """The bot's warnings and errors, without discord.py's notes about voice support."""
    with contextlib.suppress(OSError):
        return [
            line
            for line in path.read_text(errors="replace").splitlines()
            if any(level in line for level in PROBLEM_MARKS) and not any(n in line for n in NOISE)
        ]
    return []


async def start_bot(
    fake: FakeDiscord,
    sunra: FakeSunra,
    workdir: Path,
    log_path: Path,
    command: tuple[str, ...] = ("-m", "bot"),
    **env: str,
) -> asyncio.subprocess.Process:
    """`python -m bot` (or `command`) against the fakes, with its output in `log_path`; `env` adds to or
    replaces its settings (a fleet's DATABASE_URL, SHARD_COUNT, SHARD_IDS)."""
    with log_path.open("wb") as log_file:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            cwd=workdir,
            env={**bot_environment(fake, sunra, workdir), **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )


async def wait_until_ready(fake: FakeDiscord, proc: asyncio.subprocess.Process, log_path: Path) -> None:
    def registered() -> bool:
        if proc.returncode is not None:
            raise RuntimeError(f"the bot exited with {proc.returncode}:\n{tail(log_path)}")
        return any(c.get("name") == "animate" for c in fake.registered_commands())

    await fake.wait_for_ready(timeout=30)
    await fake.wait_for(registered, timeout=30, what="/animate registered")
    # discord.py waits up to 2 s for more GUILD_CREATEs before on_ready: measure the steady state.
    await asyncio.sleep(2.5)


async def send_all(fake: FakeDiscord, members: int) -> tuple[list[int], float, float]:
    """Dispatches one /animate per member at once; (interaction ids, monotonic start, wall start)."""
    payloads: list[dict[str, Any]] = []
    for index in range(members):
        uid = FIRST_MEMBER_ID + index
        fake.ensure_member(p.DEFAULT_GUILD_ID, uid)
        filename, data = picture(index)
        attachment = fake.add_attachment(filename, data)
        options = {"image": attachment, "prompt": f"member {index} waves at the camera, slow zoom"}
        payloads.append(p.slash_command(fake, options=options, user_id=uid))
    started, wall = time.monotonic(), time.time()
    records = await asyncio.gather(*(fake.dispatch_interaction(payload) for payload in payloads))
    return [r.id for r in records], started, wall


def route_of(method: str, path: str) -> str:
    """A request's route with ids and tokens blanked: POST /interactions/{}/{}/callback."""
    parts = ["{}" if part.isdigit() or len(part) > 40 else part for part in path.split("/")]
    return f"{method} {'/'.join(parts)}"


def refusals_by_route(fake: FakeDiscord) -> dict[str, int]:
    """Discord answers other than success, by status, error code and route."""
    counts: dict[str, int] = {}
    for request in fake.requests:
        if request.status >= 400:
            key = f"{request.status} (code {request.error_code}) {route_of(request.method, request.path)}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def answer_latency(fake: FakeDiscord, interaction_id: int) -> float | None:
    """Seconds from dispatch until the member's private reply carried text (reply or deferred edit)."""
    record = fake.interactions[interaction_id]
    for message in fake.messages:
        if message.kind != "interaction_response" or message.interaction_id != interaction_id:
            continue
        if message.payload.get("content"):
            return fake.started_at + message.at - record.dispatched_at
        for edit in message.edits:
            if edit.payload.get("content"):
                return fake.started_at + edit.at - record.dispatched_at
    return None


async def wait_for_jobs(database: Path, ids: list[int], fake: FakeDiscord, limit: float) -> dict[str, int]:
    """Waits until no job is open (every /animate was answered first); the last states seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    states: dict[str, int] = {}
    while loop.time() < deadline:
        states = await asyncio.to_thread(job_states, database)
        answered = all(fake.interactions[i].acknowledged for i in ids)
        stuck = 0
        if fake.callback_timeout is not None:
            # An interaction whose deferral Discord refused leaves its row in "received".
            stuck = sum(1 for i in ids if not fake.interactions[i].acknowledged)
        open_jobs = sum(n for state, n in states.items() if state not in ENDED)
        if (answered or fake.callback_timeout is not None) and open_jobs <= stuck and states:
            return states
        await asyncio.sleep(0.5)
    print(f"gave up waiting for the jobs after {limit:.0f} s")
    return states


async def main(args: argparse.Namespace) -> None:
    members: int = args.members
    with tempfile.TemporaryDirectory(prefix="bench-ack-") as tmp:
        workdir = Path(tmp)
        database = workdir / "bot.sqlite3"
        log_path = workdir / "bot.log"
        callback_timeout = DISCORD_DEADLINE if args.enforce_deadline else None
        async with (
            FakeDiscord(callback_timeout=callback_timeout) as fake,
            FakeSunra(key=SUNRA_KEY, job_seconds=args.job_seconds) as sunra,
        ):
            if not args.discord_message_limits:
                fake.set_rate_limit("message_create", 10000, 1.0)
                fake.set_rate_limit("message_edit", 10000, 1.0)
            if args.loosen_default_bucket:
                fake.set_rate_limit("default", 10000, 1.0)
            sunra.stream_enabled = not args.no_stream
            sunra.plan_jobs(JobPlan(seconds=args.job_seconds, queue_seconds=args.queue_seconds), times=None)
            proc = await start_bot(fake, sunra, workdir, log_path)
            try:
                await wait_until_ready(fake, proc, log_path)
                await run_bench(args, fake, sunra, proc, database, log_path, members)
            finally:
                stopping = time.monotonic()
                code = await stop_process(proc)
                print(f"bot stopped with exit code {code} in {time.monotonic() - stopping:.1f} s")
                if code != 0:
                    print(f"last log lines:\n{tail(log_path)}")
                if args.bot_log:
                    shutil.copyfile(log_path, args.bot_log)
                    print(f"bot log copied to {args.bot_log}")


async def run_bench(
    args: argparse.Namespace,
    fake: FakeDiscord,
    sunra: FakeSunra,
    proc: asyncio.subprocess.Process,
    database: Path,
    log_path: Path,
    members: int,
) -> None:
    _, idle_rss = peak_rss_kib(proc.pid)
    deadline_rule = "enforced" if fake.callback_timeout else "not enforced (late callbacks measured)"
    print(
        f"{members} members send /animate at once; sunra jobs take {args.job_seconds:g} s "
        f"({args.queue_seconds:g} s queued); Discord's 3 s deadline {deadline_rule}; "
        f"status stream {'off' if args.no_stream else 'on'}"
    )
    ids, started, wall_started = await send_all(fake, members)
    dispatched = time.monotonic() - started
    print(f"dispatched {members} interactions in {dispatched * 1000:.0f} ms")

    def acknowledged() -> bool:
        return all(fake.interactions[i].acknowledged or fake.interactions[i].expired for i in ids)

    with contextlib.suppress(TimeoutError):
        await fake.wait_for(acknowledged, timeout=args.ack_timeout, what="every callback")
    callbacks = {c.interaction_id: c for c in fake.callbacks if c.interaction_id in set(ids)}
    latencies = [c.latency for c in callbacks.values()]
    kinds: dict[int, int] = {}
    for callback in callbacks.values():
        kinds[callback.type] = kinds.get(callback.type, 0) + 1
    late = sum(1 for v in latencies if v > DISCORD_DEADLINE)
    refused = sum(1 for r in fake.requests if r.path.startswith("/interactions/") and r.error_code == 10062)
    print(f"callbacks: {len(callbacks)}/{members} (types {dict(sorted(kinds.items()))})")
    print(f"  callback latency: {describe(latencies)}")
    print(f"  over 3 s: {late}; refused by the fake as too late (10062): {refused}")

    def answered() -> bool:
        return all(answer_latency(fake, i) is not None for i in ids)

    with contextlib.suppress(TimeoutError):
        await fake.wait_for(answered, timeout=args.ack_timeout, what="every private answer")
    answers = [v for v in (answer_latency(fake, i) for i in ids) if v is not None]
    print(f"private answers: {len(answers)}/{members}; latency: {describe(answers)}")

    waves = math.ceil(members / SUBMITS_PER_MINUTE)
    limit = args.end_timeout or (60 * waves + 2 * args.job_seconds + 120)
    states = await wait_for_jobs(database, ids, fake, limit)
    finished = await asyncio.to_thread(last_finish, database)
    end_to_end = (finished - wall_started) if finished else time.time() - wall_started
    submits = sunra.count("submit")
    status_calls, stream_calls = sunra.count("status"), sunra.count("stream")
    per_job = max(1, len(sunra.jobs))
    videos = sum(1 for m in fake.messages if m.kind == "channel" and m.files)
    print(f"job states: {dict(sorted(states.items()))}")
    print(
        f"sunra: {submits} submits, {len(sunra.jobs)} jobs; status calls {status_calls} "
        f"({status_calls / per_job:.2f}/job), stream calls {stream_calls} "
        f"({stream_calls / per_job:.2f}/job), "
        f"results {sunra.count('result')}, video downloads {sunra.count('video')}, "
        f"uploads {sunra.count('upload_put')}"
    )
    print(f"discord: {videos} video messages, {len(fake.edits)} edits, {fake.invalid_requests} 401/403/429s")
    for route, count in refusals_by_route(fake).items():
        print(f"  {count} x {route}")
    print(f"end to end (first dispatch to last job finished): {end_to_end:.1f} s")
    hwm, rss = peak_rss_kib(proc.pid)
    if hwm is not None:
        print(
            f"bot memory: peak RSS {hwm / 1024:.1f} MiB (RSS {rss / 1024 if rss else 0:.1f} MiB now, "
            f"{idle_rss / 1024 if idle_rss else 0:.1f} MiB before the crowd)"
        )
    problems = problem_lines(log_path)
    print(f"bot log: {len(problems)} warning/error lines")
    for line in problems[-8:]:
        print(f"  {line[:300]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--job-seconds", type=float, default=20.0, help="sunra job length, submit to end")
    parser.add_argument("--queue-seconds", type=float, default=5.0, help="of which in sunra's queue")
    parser.add_argument("--ack-timeout", type=float, default=60.0, help="wait for callbacks/answers")
    parser.add_argument("--end-timeout", type=float, default=0.0, help="wait for jobs (0 = from the load)")
    parser.add_argument(
        "--enforce-deadline", action="store_true", help="refuse callbacks after 3 s, as Discord does"
    )
    parser.add_argument(
        "--loosen-default-bucket",
        action="store_true",
        help="lift the fake's shared 50/s 'default' bucket, which interaction callbacks also use",
    )
    parser.add_argument(
        "--discord-message-limits",
        action="store_true",
        help="keep Discord's 5 per 5 s message create/edit buckets per channel (loosened by default)",
    )
    parser.add_argument(
        "--no-stream", action="store_true", help="the status stream answers 404, so the bot polls status"
    )
    parser.add_argument("--bot-log", type=Path, help="copy the bot's log (stdout and stderr) to this file")
    asyncio.run(main(parser.parse_args()))
