"""The fake sunra in a child process (FakeSunraProcess) and its command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from bot.simulator.protocol import API_PREFIX
from tests.fakes.serving import serve_until_signalled
from tests.fakes.sunra_server._fake import FakeSunra
from tests.fakes.sunra_server._jobs import (
    CONTROL_PREFIX,
    DEFAULT_JOB_SECONDS,
    DEFAULT_KEY,
    DEFAULT_VIDEO_SIZE,
)


class FakeSunraProcess:
    """Runs the fake in a child process: ``async with FakeSunraProcess(key="k") as proc: proc.url``."""

    def __init__(
        self,
        key: str = DEFAULT_KEY,
        *,
        port: int = 0,
        job_seconds: float = DEFAULT_JOB_SECONDS,
        queue_seconds: float | None = None,
    ) -> None:
        self.key = key
        self.port = port
        self.job_seconds = job_seconds
        self.queue_seconds = queue_seconds
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None

    @property
    def control_url(self) -> str:
        return self.url.removesuffix(API_PREFIX) + CONTROL_PREFIX

    async def start(self) -> FakeSunraProcess:
        args = [sys.executable, "-m", "tests.fakes.sunra_server", "--port", str(self.port), "--key", self.key]
        args += ["--job-seconds", str(self.job_seconds)]
        if self.queue_seconds is not None:
            args += ["--queue-seconds", str(self.queue_seconds)]
        root = Path(__file__).resolve().parents[3]
        self._process = await asyncio.create_subprocess_exec(*args, cwd=root, stdout=asyncio.subprocess.PIPE)
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), 20)
        if not line:
            raise RuntimeError("the fake sunra process exited before printing its URL")
        self.url = line.decode().strip()
        return self

    async def control(self, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``control("state")`` (GET) or any POST action of the control API."""
        import httpx  # a test dependency anyway; imported here so the server itself needs only aiohttp

        async with httpx.AsyncClient(timeout=10) as client:
            if action == "state":
                response = await client.get(f"{self.control_url}/state")
            else:
                response = await client.post(f"{self.control_url}/{action}", json=body or {})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def __aenter__(self) -> FakeSunraProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeSunra(
        args.key,
        host=args.host,
        port=args.port,
        job_seconds=args.job_seconds,
        queue_seconds=args.queue_seconds,
        video_size=args.video_size,
    )
    await fake.start()
    print(fake.url, flush=True)
    await serve_until_signalled(fake.stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.sunra_server",
        description="Fake sunra.ai queue API (Kling image-to-video) on loopback; control API at /_control.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed on stdout line 1)")
    parser.add_argument("--key", default=DEFAULT_KEY, help="the API key the fake accepts")
    parser.add_argument("--job-seconds", type=float, default=DEFAULT_JOB_SECONDS, help="submit → COMPLETED")
    parser.add_argument("--queue-seconds", type=float, default=None, help="time IN_QUEUE (default: a third)")
    parser.add_argument("--video-size", type=int, default=DEFAULT_VIDEO_SIZE, help="bytes per video")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
