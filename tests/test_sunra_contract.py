"""One contract for both stand-ins of the sunra queue API: the offline simulator and the tests' fake.

The same protocol cases run at the HTTP level (httpx, not the bot's client, so a client bug cannot hide a
server one) against ``bot/simulator/server.py`` and ``tests/fakes/sunra_server/``: the nine routes
(submit, status, status stream, result, cancel, upload initiate, upload PUT, uploaded file, video) and
the error shape ``{"error": {"code", "message", "details"}}`` (README, "How it works"; the fake's
docstring lists the routes).
"""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.simulator import Simulator, SimulatorSettings, protocol
from tests import images
from tests.fakes.sunra_server import FakeSunra

KEY = "contract-key"
ENDPOINT = "kling/kling-v2.6-pro/image-to-video"
WAITING = ("IN_QUEUE", "IN_PROGRESS")


@dataclasses.dataclass
class Server:
    """One stand-in as the cases see it: its API base, and how to make its next job fail."""

    name: str
    url: str
    fail_next_job: Callable[[], None]

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")


@pytest.fixture(params=["simulator", "fake"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    if request.param == "simulator":
        settings = SimulatorSettings(queue_seconds=0.3, generate_seconds=0.3, key=KEY)
        async with Simulator(settings) as sim:

            def fail_sim() -> None:
                sim.settings = dataclasses.replace(sim.settings, failure_rate=1.0)

            yield Server("simulator", sim.url, fail_sim)
    else:
        async with FakeSunra(KEY, job_seconds=0.6, queue_seconds=0.3) as fake:
            yield Server("fake", fake.url, lambda: fake.fail_next_job("busy", retryable=True))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Key {KEY}"}) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    return dict(error)


async def upload(server: Server, http: httpx.AsyncClient, data: bytes) -> str:
    ticket = await http.post(
        f"{server.url}/storage/upload/initiate", json={"content_type": "image/png", "file_name": "start.png"}
    )
    assert ticket.status_code == 200, ticket.text
    urls = ticket.json()
    assert set(urls) >= {"upload_url", "file_url"}
    async with httpx.AsyncClient(timeout=30) as storage:  # the storage host never sees the key
        put = await storage.put(urls["upload_url"], content=data, headers={"Content-Type": "image/png"})
    assert put.status_code == 200
    return str(urls["file_url"])


async def submit(server: Server, http: httpx.AsyncClient, picture_url: str, **extra: Any) -> dict[str, Any]:
    body = {"prompt": "a slow zoom", "start_image_url": picture_url, "duration": "5", **extra}
    response = await http.post(f"{server.url}/queue/{ENDPOINT}", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def new_job(server: Server, http: httpx.AsyncClient) -> dict[str, Any]:
    return await submit(server, http, await upload(server, http, images.png((64, 48))))


async def stream_events(http: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with http.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


async def test_submit_answers_the_urls_of_the_request(server: Server, http: httpx.AsyncClient) -> None:
    job = await new_job(server, http)
    base = f"{server.url}/queue/requests/{job['request_id']}"
    assert job == {
        "request_id": job["request_id"],
        "status_url": base + "/status",
        "response_url": base,
        "cancel_url": base + "/cancel",
    }


async def test_a_job_is_queued_then_in_progress_then_completed_with_a_video(
    server: Server, http: httpx.AsyncClient
) -> None:
    job = await new_job(server, http)
    first = (await http.get(job["status_url"])).json()
    assert first["status"] == "IN_QUEUE" and first["request_id"] == job["request_id"]
    assert isinstance(first["queue_position"], int) and first["queue_position"] >= 0
    early = await http.get(job["response_url"])
    assert_error(early, 400, "NOT_COMPLETED")

    events = await stream_events(http, job["status_url"] + "/stream")
    statuses = [e["status"] for e in events]
    assert statuses[-1] == "COMPLETED" and set(statuses[:-1]) <= set(WAITING)
    assert events[-1]["success"] is True and events[-1]["request_id"] == job["request_id"]
    progress = [e for e in events if e["status"] == "IN_PROGRESS"]
    assert progress, "the stream shows the job generating"
    assert all({"message", "timestamp"} <= set(line) for e in progress for line in e["logs"])

    final = (await http.get(job["status_url"])).json()
    assert final == events[-1]
    result = (await http.get(job["response_url"])).json()
    video = result["video"]
    assert video["content_type"] == "video/mp4" and video["file_name"].endswith(".mp4")
    async with httpx.AsyncClient(timeout=30) as storage:
        download = await storage.get(video["url"])
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    assert download.content[4:8] == b"ftyp" and len(download.content) == video["file_size"]


async def test_a_failed_job_completes_without_success_and_its_result_is_the_error(
    server: Server, http: httpx.AsyncClient
) -> None:
    server.fail_next_job()
    job = await new_job(server, http)
    events = await stream_events(http, job["status_url"] + "/stream")
    final = events[-1]
    assert final["status"] == "COMPLETED" and final["success"] is False
    assert final["error"]["code"] == "PREDICTION_FAILED"
    assert {"code", "message", "reason", "retryable"} <= set(final["error"]["details"])
    result = await http.get(job["response_url"])
    assert result.status_code == 200 and result.json() == {"error": final["error"]}


async def test_cancel_stops_a_waiting_job_once(server: Server, http: httpx.AsyncClient) -> None:
    job = await new_job(server, http)
    cancel = await http.put(job["cancel_url"])
    assert cancel.status_code == 200
    assert cancel.json() == {"request_id": job["request_id"], "status": "CANCELLED", "success": True}
    status = (await http.get(job["status_url"])).json()
    assert status == {"status": "CANCELLED", "request_id": job["request_id"]}
    assert_error(await http.get(job["response_url"]), 400, "REQUEST_CANCELLED")
    assert_error(await http.put(job["cancel_url"]), 409, "ALREADY_COMPLETED")


async def test_an_unknown_request_is_404_on_every_route(server: Server, http: httpx.AsyncClient) -> None:
    base = f"{server.url}/queue/requests/no-such-request"
    assert_error(await http.get(base + "/status"), 404, "NOT_FOUND")
    assert_error(await http.get(base + "/status/stream"), 404, "NOT_FOUND")
    assert_error(await http.get(base), 404, "NOT_FOUND")
    assert_error(await http.put(base + "/cancel"), 404, "NOT_FOUND")


@pytest.mark.parametrize("auth", [None, "Key wrong", f"Bearer {KEY}", "Key", KEY])
async def test_the_api_refuses_a_missing_or_wrong_key(server: Server, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        body = {"prompt": "x", "start_image_url": "http://example.invalid/a.png"}
        assert_error(await client.post(f"{server.url}/queue/{ENDPOINT}", json=body), 401, "UNAUTHORIZED")
        assert_error(await client.get(f"{server.url}/queue/requests/x/status"), 401, "UNAUTHORIZED")
        initiate = await client.post(
            f"{server.url}/storage/upload/initiate", json={"content_type": "image/png", "file_name": "a.png"}
        )
        assert_error(initiate, 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"start_image_url": "u"}, {"prompt"}),
        ({"prompt": "", "start_image_url": "u"}, {"prompt"}),
        ({"prompt": "x" * 2501, "start_image_url": "u"}, {"prompt"}),
        ({"prompt": "x"}, {"start_image_url"}),
        ({"prompt": "x", "start_image_url": "u", "duration": "7"}, {"duration"}),
        ({"prompt": "x", "start_image_url": "u", "duration": 5}, {"duration"}),
        ({"prompt": "x", "start_image_url": "u", "generate_audio": "yes"}, {"generate_audio"}),
        ({"prompt": "x", "start_image_url": "u", "voice_ids": ["a", "b", "c"]}, {"voice_ids"}),
        ({"prompt": "x", "start_image_url": "u", "negative_prompt": "n" * 2501}, {"negative_prompt"}),
        ({"prompt": "x", "start_image_url": "u", "seed": 3}, {"seed"}),
        ({"duration": "7"}, {"prompt", "start_image_url", "duration"}),
        ([1, 2], {"body"}),
    ],
)
async def test_an_invalid_submit_is_422_naming_each_field(
    server: Server, http: httpx.AsyncClient, body: Any, fields: set[str]
) -> None:
    error = assert_error(
        await http.post(f"{server.url}/queue/{ENDPOINT}", json=body), 422, "VALIDATION_ERROR"
    )
    assert {d["field"] for d in error["details"]} == fields
    assert all(isinstance(d["message"], str) and d["message"] for d in error["details"])


async def test_a_submit_that_is_not_json_is_422(server: Server, http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"{server.url}/queue/{ENDPOINT}", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "VALIDATION_ERROR")


@pytest.mark.parametrize("body", [{}, {"content_type": "image/png"}, {"file_name": "a.png"}, [1]])
async def test_an_upload_without_its_type_or_name_is_422(
    server: Server, http: httpx.AsyncClient, body: Any
) -> None:
    response = await http.post(f"{server.url}/storage/upload/initiate", json=body)
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_an_uploaded_picture_is_served_back_as_sent(server: Server, http: httpx.AsyncClient) -> None:
    data = images.png((32, 32))
    file_url = await upload(server, http, data)
    assert file_url.startswith(server.root + "/files/")
    async with httpx.AsyncClient(timeout=30) as storage:
        served = await storage.get(file_url)
        assert served.status_code == 200 and served.content == data
        assert served.headers["content-type"] == "image/png"
        unknown = await storage.put(f"{server.root}/files/upload/no-such-ticket", content=b"x")
        assert_error(unknown, 404, "NOT_FOUND")
        assert_error(await storage.get(f"{server.root}/files/uploads/nope/a.png"), 404, "NOT_FOUND")
        assert_error(await storage.get(f"{server.root}/files/video/nope.mp4"), 404, "NOT_FOUND")


def test_the_shared_protocol_owes_nothing_to_the_bots_client() -> None:
    """Both servers take the protocol from bot/simulator/protocol.py; were it to import the client's
    models, a mistake there would be agreed to by every server the tests run against."""
    tree = ast.parse(Path(protocol.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported and not [name for name in imported if name.split(".")[0] == "bot"]
