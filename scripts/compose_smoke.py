"""Smoke test of compose.yaml's fleet, by hand (not in CI): the two bot processes it describes, for real.

    .venv/bin/python scripts/compose_smoke.py [--jobs 40] [--budget 20]

`docker compose` is not needed and PostgreSQL's image is not pulled: the script reads compose.yaml (as
tests/test_compose_file.py does), and runs each bot service as `python -m bot` with that service's
environment, against the local PostgreSQL (127.0.0.1:5432, user postgres, or POSTGRES_TEST_URL) in a
database of its own, and against the fake Discord and sunra servers of tests/ on 127.0.0.1. What compose
does around the processes is stood in for:

* `${…:?}`: the secrets and the daily USD cap are interpolated the way compose does (the fakes' token
  and key, `--budget`); DATABASE_URL keeps compose's form but names the local server and database;
* the `./config:/app/config:ro` mount: each process starts in a folder of its own whose `config` is the
  same read-only folder, holding a bot.toml (JSON logs, a fleet-wide in-flight cap) both must obey;
* the published ports: each HTTP__PORT is a free port on 127.0.0.1 (compose maps 9100 to 9100/9101);
* the health check: compose's own test command (`python -m bot.healthcheck`), in the process's
  environment, until it exits 0;
* `restart: unless-stopped`: the process killed with SIGKILL is started again at once.

It checks, and prints the figures: both processes healthy (seconds from start), the migrations applied
once between them, shard 1's process killed -9 with jobs at the API and in the queue, restarted and
healthy again (seconds), every job delivered exactly once (one post each), and the ledger matching the
jobs (each delivered job charged its price once, the USD spent within the cap). Exit code 0 when all
hold, 1 with the failing check otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bot.config import Settings  # noqa: E402
from bot.store.migrations import migrations  # noqa: E402
from tests import images, postgres  # noqa: E402
from tests.fakes.discord_server import FakeDiscord, InteractionRecord  # noqa: E402
from tests.fakes.sunra_server import FakeSunra, JobPlan  # noqa: E402
from tests.test_compose_file import bots, load  # noqa: E402
from tests.test_crash import SUNRA_KEY, BotProcess  # noqa: E402
from tests.test_fleet import animate_at_home, members_on_two_shards, outcome_posts, settled, shard_states  # noqa: E402
from tests.world import LEDGER_BY_JOB, assert_ledger_matches  # noqa: E402

JOB_SECONDS = 2.0
MEMBERS = 20
IN_FLIGHT = 6  # from the shared bot.toml: the fleet's cap, which both processes must read
BOT_TOML = f"""# Written by scripts/compose_smoke.py: the file compose mounts read-only for both bots.
log_format = "json"

[quota]
max_jobs_in_flight = {IN_FLIGHT}
"""


class SmokeFailure(Exception):
    """A check did not hold; the message says which."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeFailure(what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_database_url(compose_url: str, local_url: str) -> str:
    """Compose's DATABASE_URL (postgresql://kling:…@postgres:5432/kling) moved to the local server."""
    compose, local = urlsplit(compose_url), urlsplit(local_url)
    return urlunsplit((compose.scheme, local.netloc, local.path, local.query, ""))


def shared_config(where: Path) -> Path:
    """The stand-in of ./config: a copy of the repository's folder with the smoke's bot.toml, read-only."""
    folder = where / "config"
    shutil.copytree(ROOT / "config", folder, ignore=shutil.ignore_patterns("bot.toml"))
    (folder / "bot.toml").write_text(BOT_TOML, encoding="utf-8")
    for path in (*folder.iterdir(), folder):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return folder


HEALTHY_WITHIN = 120.0


class Local:
    """A bot service as `python -m bot` (tests/test_crash.py's BotProcess) in a folder of its own."""

    def __init__(self, bot: BotProcess, service: dict[str, Any]) -> None:
        self.bot = bot
        self.name = bot.workdir.name
        self.kills = 0

    async def up(self) -> None:
        # A process restarted after a kill first waits out its predecessor's lease (SHARD_LEASE_SECONDS,
        # which compose leaves at its default of 30 s) before it connects.
        await self.bot.start(ready_within=HEALTHY_WITHIN)

    async def healthy(self) -> bool:
        """Compose's health check command, run in the bot's environment and folder."""
        check(self.bot.running, f"{self.name} exited\n{self.tail()}")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.healthcheck",
            cwd=self.bot.workdir,
            env=self.bot.environment(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await proc.wait() == 0

    async def kill(self) -> None:
        await self.bot.kill()
        self.kills += 1

    async def restarted(self) -> None:
        await self.up()  # restart: unless-stopped starts it again at once

    async def down(self) -> None:
        await self.bot.stop()

    def log_text(self) -> str:
        return self.bot.log_text()

    def tail(self, lines: int = 30) -> str:
        return self.bot.tail(lines)


class Docker:
    """A bot service as a container of the image built from the Dockerfile (`--image`): `docker run`
    with the service's environment, restart policy, health check and the config folder mounted read-only
    at /app/config; host networking, since the fakes and PostgreSQL listen on this machine's loopback."""

    def __init__(self, bot: BotProcess, service: dict[str, Any], image: str, config: Path) -> None:
        self.bot = bot
        self.name = f"kling-smoke-{bot.workdir.name}-{os.getpid()}"
        self.service = service
        self.image = image
        self.config = config
        self.kills = 0
        self._restarts = 0

    async def docker(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        check(proc.returncode == 0, f"docker {args[0]}: {out.decode(errors='replace')[-2000:]}")
        return out.decode(errors="replace")

    async def up(self) -> None:
        # Only what this script sets, not the rest of its own environment (PATH, HOME, …).
        env = {
            k: v for k, v in self.bot.environment().items() if os.environ.get(k) != v and k != "PYTHONPATH"
        }
        health = self.service["healthcheck"]
        test = health["test"]
        command = " ".join(test[1:]) if test[0] in ("CMD", "CMD-SHELL") else " ".join(test)
        await self.docker(
            "run",
            "--detach",
            "--name",
            self.name,
            "--network",
            "host",
            "--restart",
            str(self.service.get("restart", "no")),
            "--volume",
            f"{self.config}:/app/config:ro",
            "--health-cmd",
            command,
            "--health-interval",
            str(health.get("interval", "30s")),
            "--health-timeout",
            str(health.get("timeout", "30s")),
            "--health-start-period",
            str(health.get("start_period", "0s")),
            "--health-retries",
            str(health.get("retries", 3)),
            *(arg for key, value in sorted(env.items()) for arg in ("--env", f"{key}={value}")),
            self.image,
        )

    async def state(self) -> dict[str, Any]:
        found = json.loads(await self.docker("inspect", "--format", "{{json .}}", self.name))
        return found  # type: ignore[no-any-return]

    async def healthy(self) -> bool:
        found = await self.state()
        check(
            found["State"]["Status"] in ("running", "restarting"),
            f"{self.name} is {found['State']['Status']}\n{self.tail()}",
        )
        status = found["State"].get("Health", {}).get("Status")
        return bool(found["RestartCount"] == self._restarts and status == "healthy")

    async def kill(self) -> None:
        """kill -9 of the container's main process from outside: Docker sees it die, not a stop."""
        os.kill(int((await self.state())["State"]["Pid"]), signal.SIGKILL)
        self.kills += 1

    async def restarted(self) -> None:
        self._restarts += 1  # Docker restarts it by its policy; healthy() waits for that restart

    async def down(self) -> None:
        await self.docker("rm", "--force", self.name)

    def log_text(self) -> str:
        done = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True, check=False)
        return done.stdout + done.stderr

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


Service = Local | Docker


async def healthy_after(service: Service, began: float) -> float:
    """Polls the service's health until it passes; the seconds since `began`."""
    while time.monotonic() - began < HEALTHY_WITHIN:
        if await service.healthy():
            return time.monotonic() - began
        await asyncio.sleep(0.2)
    raise SmokeFailure(f"{service.name} not healthy within {HEALTHY_WITHIN:.0f} s\n{service.tail()}")


async def start_and_wait(service: Service) -> float:
    """Starts the service (as compose does) and returns the seconds until its health check passed."""
    began = time.monotonic()
    await service.up()
    return await healthy_after(service, began)


async def run(jobs: int, budget: str, image: str | None) -> dict[str, object]:
    why = postgres.unavailable()
    if why is not None:
        raise SmokeFailure(f"no PostgreSQL answers at {postgres.ADMIN_URL} ({why})")
    figures: dict[str, object] = {"mode": f"docker image {image}" if image else "local processes"}
    with tempfile.TemporaryDirectory(prefix="compose-smoke-") as scratch:
        where = Path(scratch)
        where.chmod(0o755)  # the image's user (not root) reads the config folder through it
        config = shared_config(where)
        async with (
            postgres.fresh_database() as database_url,
            FakeDiscord(shard_count=2) as discord,
            FakeSunra(key=SUNRA_KEY, job_seconds=JOB_SECONDS) as sunra,
        ):
            for bucket in ("message_create", "message_edit", "default"):
                discord.set_rate_limit(bucket, 100_000, 1.0)
            sunra.plan_jobs(JobPlan(seconds=JOB_SECONDS, queue_seconds=0.5), times=None)
            operator = {
                "DISCORD_TOKEN": discord.token,
                "SUNRA_KEY": SUNRA_KEY,
                "POSTGRES_PASSWORD": "smoke",
                "QUOTA__GLOBAL_DAILY_USD": budget,
            }
            services = sorted(
                bots(load(operator)).items(), key=lambda s: str(s[1]["environment"]["SHARD_IDS"])
            )
            fleet: list[Service] = []
            for name, service in services:
                env = {key: str(value) for key, value in service["environment"].items()}
                # What compose leaves unset keeps the bot's default, not the tests' shorter lease.
                lease = Settings.model_fields["shard_lease_seconds"].default
                env.setdefault("SHARD_LEASE_SECONDS", str(lease))
                env.update(
                    DATABASE_URL=local_database_url(env["DATABASE_URL"], database_url),
                    HTTP__PORT=str(free_port()),
                    HTTP__HOST="127.0.0.1",
                    LOG_LEVEL="INFO",
                )
                workdir = where / name
                workdir.mkdir()
                (workdir / "config").symlink_to(config, target_is_directory=True)
                bot = BotProcess(workdir, discord, sunra, **env)
                fleet.append(Docker(bot, service, image, config) if image else Local(bot, service))
            try:
                figures.update(await exercise(discord, sunra, fleet, database_url, jobs, float(budget)))
            finally:
                for member in fleet:
                    await member.down()
    return figures


async def exercise(
    discord: FakeDiscord,
    sunra: FakeSunra,
    fleet: list[Service],
    database_url: str,
    jobs: int,
    budget: float,
) -> dict[str, object]:
    figures: dict[str, object] = {}
    home = members_on_two_shards(discord, MEMBERS)

    # Both at once, as `docker compose up` starts them.
    to_healthy = await asyncio.gather(*(start_and_wait(bot) for bot in fleet))
    figures["healthy_seconds"] = [round(s, 1) for s in to_healthy]

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        applied = await pool.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        logged = sum(bot.log_text().count("applying migration") for bot in fleet)
        expected = len(migrations("postgresql"))
        check(
            len(applied) == expected and logged == expected,
            f"migrations: {len(applied)} recorded and {logged} applied, {expected} expected",
        )
        figures["migrations"] = f"{expected} applied once ({logged} applying lines over both processes)"
        json_lines = [line for bot in fleet for line in bot.log_text().splitlines() if line.startswith("{")]
        check(
            bool(json_lines) and all(isinstance(json.loads(line), dict) for line in json_lines),
            "the processes did not log JSON: the mounted bot.toml was not read",
        )

        image = discord.add_attachment("cat.png", images.png((640, 480)))
        interactions: list[InteractionRecord] = []

        command = animate_at_home(discord, home, image, "smoke prompt", interactions)

        members = list(home)
        before = jobs * 3 // 4
        await asyncio.gather(*(command(n, members[n % MEMBERS]) for n in range(before)))

        for _ in range(600):
            states = await shard_states(pool, 1)
            # Jobs waiting and at the API, none half-way through its submit (killed there, a job ends
            # `uncertain` by design: it is never submitted twice, its member is told, nothing charged).
            if (
                not states.get("received")
                and not states.get("submitting")
                and states.get("submitted", 0) >= 1
                and states.get("queued", 0) >= 1
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise SmokeFailure(f"shard 1 never had jobs queued and at the API to be killed with: {states}")
        figures["shard_1_at_kill"] = dict(states)
        killed_at = time.monotonic()
        await fleet[1].kill()  # kill -9: no handler, no finally, the lease left to run out
        await fleet[1].restarted()
        figures["restart_seconds"] = round(await healthy_after(fleet[1], killed_at), 1)  # to healthy again
        await asyncio.gather(*(command(n, members[n % MEMBERS]) for n in range(before, jobs)))

        for _ in range(1800):
            if await settled(pool, discord, interactions):
                break
            await asyncio.sleep(0.1)
        figures["kill_to_all_ended_seconds"] = round(time.monotonic() - killed_at, 1)
        rows = [dict(r) for r in await pool.fetch("SELECT * FROM jobs ORDER BY id")]
        ledger = [tuple(r) for r in await pool.fetch(LEDGER_BY_JOB)]
        spent = await pool.fetchval(
            "SELECT COALESCE(-SUM(allowance_delta + bonus_delta), 0) FROM quota_ledger"
            " WHERE job_id IS NOT NULL"
        )
    finally:
        await pool.close()

    tails = "\n".join(bot.tail(30) for bot in fleet)
    check(len(interactions) == jobs, f"{len(interactions)} commands sent, {jobs} meant")
    check(discord.interaction_problems() == [], f"interactions: {discord.interaction_problems()}\n{tails}")
    states = Counter(r["state"] for r in rows)
    figures["jobs"] = dict(states)
    # Killed in the instant of a submit despite the choice of moment, a job may end `uncertain`: never
    # at sunra twice, told once, charged nothing (checked below); every other job must be delivered.
    uncertain = [r for r in rows if r["state"] == "uncertain"]
    check(
        len(rows) == jobs and states["delivered"] + len(uncertain) == jobs and len(uncertain) <= 1,
        f"not every job delivered: {dict(states)}\n{tails}",
    )
    posts = {r["id"]: len(outcome_posts(discord, r["id"])) for r in rows}
    check(all(n == 1 for n in posts.values()), f"posts per job other than one: {posts}")
    for row in rows:
        check(row["shard"] == discord.shard_of(int(row["guild_id"])), f"job {row['id']} on the wrong shard")
    prompts = Counter(str(job.input.get("prompt")) for job in sunra.jobs.values())
    check(max(prompts.values()) == 1, "a prompt reached sunra twice")
    try:
        assert_ledger_matches(ledger)
    except AssertionError as error:
        raise SmokeFailure(f"the ledger does not match the jobs: {error}") from None
    charged = sum(int(r["cost_credits"]) for r in rows if r["state"] == "delivered")
    check(int(spent) == charged, f"the ledger holds {spent} credits spent, the delivered jobs cost {charged}")
    usd = charged * 0.07
    check(usd <= budget, f"spent ${usd:.2f} over the ${budget:.2f} cap")
    figures["credits"] = (
        f"{charged} charged in the ledger = {charged} for {states['delivered']} delivered jobs"
    )
    figures["usd"] = f"{usd:.2f} of the {budget:.2f} cap"
    figures["kills"] = fleet[1].kills
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=40, help="/animate commands in all (default 40)")
    parser.add_argument("--budget", default="20", help="QUOTA__GLOBAL_DAILY_USD (default 20)")
    parser.add_argument(
        "--image", help="run the bots as containers of this image (docker build -t IMAGE .), not as processes"
    )
    args = parser.parse_args()
    os.environ.pop("BOT_CONFIG", None)  # the processes read the mounted config/bot.toml, nothing else
    started = time.monotonic()
    try:
        figures = asyncio.run(run(args.jobs, args.budget, args.image))
    except (SmokeFailure, AssertionError) as failure:  # AssertionError: a test helper's own check
        print(f"FAIL {failure}", file=sys.stderr)
        return 1
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(f"OK in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
