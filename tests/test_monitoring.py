"""The monitoring listener against the whole bot: /healthz with the gateway up, cut and back, and with
the database closed; /metrics scraped while jobs run, compared with the jobs table and the ledger."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from bot.metrics import BotMetrics
from bot.sunra import ApiCall
from bot.sunra.transport import endpoint_name
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.sunra_server import FakeSunra
from tests.world import SUNRA_KEY, World, loosen_rate_limits, running_world

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def monitored(port: int) -> dict[str, Any]:
    return {"http": {"port": port}}


async def get(port: int, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as answer:
        return answer.status, answer.headers.get("Content-Type", ""), await answer.text()


async def healthz(port: int) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as answer:
        return answer.status, await answer.json()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "never happened"
        await asyncio.sleep(0.05)


async def scrape(port: int) -> Samples:
    status, content_type, text = await get(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain"), (status, text)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# ------------------------------------------------------------------------------------------------ settings


def test_the_listener_is_off_by_default_and_on_loopback_when_on(monkeypatch: Any) -> None:
    settings = Settings(discord_token="t", sunra_key="k")
    assert (settings.http.port, settings.http.host) == (0, "127.0.0.1")
    monkeypatch.setenv("HTTP__PORT", "9100")
    monkeypatch.setenv("HTTP__HOST", "0.0.0.0")
    settings = Settings(discord_token="t", sunra_key="k")
    assert (settings.http.port, settings.http.host) == (9100, "0.0.0.0")


async def test_no_listener_unless_a_port_is_set(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        assert world.bot.monitor is None


# --------------------------------------------------------------------------------------------------- healthz


async def test_healthz_follows_the_gateway_and_the_database(tmp_path: Path) -> None:
    port = free_port()
    async with running_world(tmp_path, **monitored(port)) as world:
        assert world.bot.monitor is not None and world.bot.monitor.addresses == [("127.0.0.1", port)]
        assert await healthz(port) == (
            200,
            {"status": "ok", "gateway": "up", "database": "up", "shards": "all"},
        )

        # The gateway drops and Discord takes no new connection for a while: 503, then 200 again.
        world.discord.gateway_open = False
        await world.discord.drop_connections()

        async def gateway_down() -> bool:
            return await healthz(port) == (
                503,
                {"status": "down", "gateway": "down", "database": "up", "shards": "all"},
            )

        await eventually(gateway_down)
        world.discord.gateway_open = True

        async def healthy() -> bool:
            return (await healthz(port))[0] == 200

        await eventually(healthy, within=30.0)

        await world.db.close()
        assert await healthz(port) == (
            503,
            {"status": "down", "gateway": "up", "database": "down", "shards": "all"},
        )


# --------------------------------------------------------------------------------------------------- metrics


async def states_in_table(world: World) -> dict[str, int]:
    rows = await world.db.fetchall("SELECT state, COUNT(*) FROM jobs GROUP BY state")
    return {str(row[0]): int(row[1]) for row in rows}


async def queue_waits_in_table(world: World, job_ids: list[int]) -> dict[int, float]:
    """Each job's seconds from its `queued` event to its `submitting` one, read from job_events."""
    rows = await world.db.fetchall(
        f"SELECT job_id, to_state, at FROM job_events WHERE job_id IN ({', '.join('?' for _ in job_ids)})"
        " AND to_state IN ('queued', 'submitting') ORDER BY id",
        tuple(job_ids),
    )
    at = {(int(row[0]), str(row[1])): float(row[2]) for row in rows}
    return {job_id: at[(job_id, "submitting")] - at[(job_id, "queued")] for job_id in job_ids}


async def two_submitted_one_queued(world: World) -> bool:
    return await states_in_table(world) == {"submitted": 2, "queued": 1}


def jobs_in_metrics(samples: Samples) -> dict[str, int]:
    found = {dict(labels)["state"]: int(v) for (name, labels), v in samples.items() if name == "kling_jobs"}
    return {state: count for state, count in found.items() if count}


async def test_metrics_scraped_while_jobs_run_agree_with_the_tables(tmp_path: Path) -> None:
    port = free_port()
    async with (
        FakeDiscord() as discord,
        FakeSunra(key=SUNRA_KEY, job_seconds=600) as sunra,
    ):
        loosen_rate_limits(discord)
        async with running_world(tmp_path, discord=discord, sunra=sunra, **monitored(port)) as world:
            interactions = [await world.animate(f"wave {i}") for i in range(3)]
            # Two at the API (the member's limit), one waiting in the bot's queue. Which one waits is the
            # runner's choice, not the order of the commands (they are accepted concurrently; in one run of
            # thirty the second command's job waited), so it is read from the table and put last.
            await eventually(lambda: two_submitted_one_queued(world), within=20.0)
            states = [(await world.job_for(interaction)).state for interaction in interactions]
            interactions = [
                i for i, state in zip(interactions, states, strict=True) if state == "submitted"
            ] + [i for i, state in zip(interactions, states, strict=True) if state == "queued"]
            running = await scrape(port)
            assert jobs_in_metrics(running) == await states_in_table(world) == {"submitted": 2, "queued": 1}
            assert value(running, "kling_acknowledgement_seconds_count") == 3
            assert 0 < value(running, "kling_acknowledgement_seconds_sum") < 3 * 3.0
            assert value(running, "kling_api_request_duration_seconds_count", endpoint="submit") == 2
            assert value(running, "kling_credits_spent_total") == 0
            assert value(running, "process_resident_memory_bytes") > 10_000_000

            # The API fails one result call (retried), then every job finishes.
            sunra.fail_next("result", 503)
            for interaction in interactions[:2]:
                sunra.finish((await world.job_for(interaction)).request_id or "")
            third = await world.until(lambda job: job.request_id is not None, interactions[2])
            sunra.finish(third.request_id or "")
            jobs = [await world.ended(interaction) for interaction in interactions]
            assert all(job.state == "delivered" for job in jobs)

            done = await scrape(port)
            assert jobs_in_metrics(done) == await states_in_table(world) == {"delivered": 3}
            assert value(done, "kling_credits_spent_total") == sum(job.cost_credits for job in jobs)
            usd = await world.db.fetchone("SELECT SUM(usd_micros) FROM quota_ledger WHERE kind = 'reserve'")
            assert usd is not None and value(done, "kling_usd_spent_total") == usd[0] / 1_000_000
            assert value(done, "kling_api_request_duration_seconds_count", endpoint="submit") == 3
            assert value(done, "kling_api_errors_total", endpoint="result", reason="503") == 1
            assert value(done, "kling_queue_wait_seconds_count") == 3
            # Each job's wait is the one its events record (queued to submitting), whatever the machine's
            # speed: the histogram's sum and every bucket agree with them.
            waits = await queue_waits_in_table(world, [job.id for job in jobs])
            assert value(done, "kling_queue_wait_seconds_sum") == pytest.approx(sum(waits.values()))
            for le in ("0.1", "1.0", "15.0", "+Inf"):
                expected = sum(1 for wait in waits.values() if wait <= float(le))
                assert value(done, "kling_queue_wait_seconds_bucket", le=le) == expected
            # The third job waited for one of the first two to finish: it left the queue after one of
            # them reached its end, and it waited longer than either.
            events = await world.db.fetchall(
                "SELECT job_id, to_state FROM job_events WHERE job_id IN (?, ?, ?) ORDER BY id",
                tuple(job.id for job in jobs),
            )
            order = [(int(row[0]), str(row[1])) for row in events]
            ended_first = min(order.index((job.id, "delivered")) for job in jobs[:2])
            assert order.index((jobs[2].id, "submitting")) > ended_first
            assert waits[jobs[2].id] > max(waits[jobs[0].id], waits[jobs[1].id])
            # A second scrape counts nothing twice.
            again = await scrape(port)
            assert value(again, "kling_queue_wait_seconds_count") == 3
            assert value(again, "kling_credits_spent_total") == value(done, "kling_credits_spent_total")


async def test_two_bots_keep_their_own_metrics(tmp_path: Path) -> None:
    first, second = BotMetrics(), BotMetrics()
    first.observe_api(ApiCall("submit", 0.2, 200, None))
    second.observe_api(ApiCall("status", 0.1, 503, "503"))
    labels = {"endpoint": "status", "reason": "503"}
    assert first.registry.get_sample_value("kling_api_errors_total", labels) is None
    assert second.registry.get_sample_value("kling_api_errors_total", labels) == 1


def test_endpoints_are_named_without_request_ids() -> None:
    assert [
        endpoint_name(path)
        for path in (
            "/queue/kling/kling-v2.6-pro/image-to-video",
            "/queue/requests/abc/status",
            "/queue/requests/abc/status/stream",
            "/queue/requests/abc",
            "/queue/requests/abc/cancel",
            "/storage/upload/initiate",
        )
    ] == ["submit", "status", "status_stream", "result", "cancel", "upload_initiate"]
    assert endpoint_name("https://cdn.example/upload?sig=1", api=False) == "storage_upload"


async def test_discord_rate_limits_and_invalid_requests_are_counted(tmp_path: Path) -> None:
    metrics = BotMetrics()
    async with FakeDiscord() as fake:
        fake.set_rate_limit("default", 1, 5.0)
        url = f"{fake.api_url}/users/@me"
        headers = {"Authorization": f"Bot {fake.token}"}
        async with aiohttp.ClientSession(trace_configs=[metrics.discord_trace()]) as session:
            for _ in range(3):
                async with session.get(url, headers=headers) as answer:
                    await answer.read()
            async with session.get(url, headers={"Authorization": "Bot wrong"}) as answer:
                await answer.read()
    sample = metrics.registry.get_sample_value
    assert sample("kling_discord_rate_limited_total", {"scope": "user"}) == 2
    assert sample("kling_discord_invalid_requests_total", {"status": "429"}) == 2
    assert sample("kling_discord_invalid_requests_total", {"status": "401"}) == 1
    assert fake.invalid_requests == 3


async def test_the_docker_healthcheck_asks_healthz_only_when_the_listener_is_on(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from bot import healthcheck

    monkeypatch.setenv("BOT_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    monkeypatch.delenv("HTTP__PORT", raising=False)
    assert await asyncio.to_thread(healthcheck.main) == 0  # off: nothing to ask
    port = free_port()
    monkeypatch.setenv("HTTP__PORT", str(port))
    monkeypatch.setenv("HTTP__HOST", "0.0.0.0")
    assert await asyncio.to_thread(healthcheck.main) == 1  # on, but nothing answers
    # The bot itself listens on loopback (the tests' rule); the check asks 127.0.0.1 for 0.0.0.0.
    async with running_world(tmp_path, http={"port": port, "host": "127.0.0.1"}) as world:
        assert world.bot.monitor is not None and world.bot.monitor.addresses == [("127.0.0.1", port)]
        assert await asyncio.to_thread(healthcheck.main) == 0
        await world.db.close()
        assert await asyncio.to_thread(healthcheck.main) == 1


async def test_discords_refusals_of_the_bots_own_requests_are_counted(tmp_path: Path) -> None:
    port = free_port()
    async with running_world(tmp_path, **monitored(port)) as world:
        # The channel refuses the first post (the progress message): the bot carries on without it.
        world.discord.inject_error(
            f"/channels/{world.discord.default_channel_id}/messages",
            method="POST",
            status=403,
            code=50013,
            message="Missing Permissions",
        )
        job = await world.ended(await world.animate())
        assert job.state == "delivered"
        samples = await scrape(port)
    assert value(samples, "kling_discord_invalid_requests_total", status="403") == 1
    counted = sum(v for (name, _), v in samples.items() if name == "kling_discord_invalid_requests_total")
    assert counted == world.discord.invalid_requests == 1
