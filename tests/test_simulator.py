"""The offline simulator, driven by the bot's own sunra client: real uploads, real MP4s, real failures."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from bot.simulator import Simulator, SimulatorSettings
from bot.simulator.video import render_clip, video_size
from bot.sunra import (
    AuthError,
    KlingInput,
    PredictionFailed,
    RequestNotFound,
    RetryPolicy,
    SunraClient,
    TransientError,
)
from tests.world import listed, running_world

FAST = SimulatorSettings(queue_seconds=0.2, generate_seconds=0.3)
FAST_RETRY = RetryPolicy(base=0.01, cap=0.05)


def scene(size: tuple[int, int] = (800, 600)) -> Image.Image:
    """Distinct regions, so a wrong crop, flip or colour shows in the comparison."""
    image = Image.new("RGB", size, (40, 90, 160))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rectangle((0, h * 2 // 3, w, h), fill=(30, 140, 60))
    draw.ellipse((w // 10, h // 10, w // 3, h // 3), fill=(250, 210, 40))
    draw.rectangle((w * 2 // 3, h // 3, w * 3 // 4, h * 2 // 3), fill=(200, 40, 40))
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def first_frame(video: bytes) -> tuple[Image.Image, list[str], float]:
    """The decoded first frame, the kinds of the streams, the duration in seconds."""
    with av.open(io.BytesIO(video)) as container:
        kinds = [stream.type for stream in container.streams]
        duration = (container.duration or 0) / av.time_base
        frame = next(container.decode(video=0)).to_image()
    return frame, kinds, duration


def assert_looks_like(frame: Image.Image, picture: Image.Image, tolerance: float = 8.0) -> None:
    """Mean absolute difference per channel (0-255) after scaling the picture to the frame."""
    expected = picture.convert("RGB").resize(frame.size, Image.Resampling.BILINEAR)
    difference = ImageStat.Stat(ImageChops.difference(frame.convert("RGB"), expected)).mean
    assert max(difference) < tolerance, difference


async def run_job(sim: Simulator, picture: bytes, **fields: object) -> tuple[SunraClient, str]:
    client = SunraClient(sim.url, "any-key", file_hosts=listed(sim.url), retry=FAST_RETRY)
    url = await client.upload(picture, content_type="image/png", file_name="start.png")
    submission = await client.submit(KlingInput(prompt="a slow zoom", start_image_url=url, **fields))  # type: ignore[arg-type]
    return client, submission.request_id


async def test_a_job_ends_in_a_playable_video_of_its_picture(tmp_path: Path) -> None:
    picture = scene()
    async with Simulator(FAST) as sim:
        client, request_id = await run_job(sim, png(picture), generate_audio=False)
        async with client:
            seen: list[str] = []

            async def on_update(status: object) -> None:
                seen.append(getattr(status, "status", ""))

            final = await client.wait(request_id, on_update=on_update)
            assert final.succeeded is True
            result = await client.result(request_id)
            dest = tmp_path / "video.mp4"
            await client.download(result.video.url, dest, max_bytes=50_000_000)
    assert "IN_QUEUE" in seen and "IN_PROGRESS" in seen
    frame, kinds, duration = first_frame(dest.read_bytes())
    assert kinds == ["video"]  # silent: no audio stream
    assert duration == pytest.approx(5.0, abs=0.2)
    assert frame.size == video_size(*picture.size)
    assert_looks_like(frame, picture)


def test_audio_and_ten_seconds_and_an_end_image() -> None:
    start, end = scene(), scene().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    video = render_clip(png(start), seconds=10, audio=True, end=png(end), fps=8, max_side=320)
    frame, kinds, duration = first_frame(video)
    assert sorted(kinds) == ["audio", "video"]
    assert duration == pytest.approx(10.0, abs=0.2)
    assert_looks_like(frame, start)
    with av.open(io.BytesIO(video)) as container:
        *_, last = container.decode(video=0)
    assert_looks_like(last.to_image(), end)


async def test_failures_are_reported_like_real_ones() -> None:
    async with Simulator(SimulatorSettings(queue_seconds=0.1, generate_seconds=0.1, failure_rate=1.0)) as sim:
        client, request_id = await run_job(sim, png(scene()))
        async with client:
            final = await client.wait(request_id)
            assert final.succeeded is False
            failure = final.failure
            assert isinstance(failure, PredictionFailed)
            assert "failed this job on purpose" in failure.user_message
            with pytest.raises(PredictionFailed):
                await client.result(request_id)


async def test_a_picture_it_never_received_fails_the_job() -> None:
    async with (
        Simulator(FAST) as sim,
        SunraClient(sim.url, "k", file_hosts=listed(sim.url), retry=FAST_RETRY) as client,
    ):
        submission = await client.submit(
            KlingInput(prompt="x", start_image_url="https://example.invalid/picture.png")
        )
        final = await client.wait(submission.request_id)
        assert final.failure is not None and "could not be downloaded" in final.failure.user_message


async def test_cancel_stops_a_job() -> None:
    slow = SimulatorSettings(queue_seconds=30, generate_seconds=30)
    async with Simulator(slow) as sim:
        client, request_id = await run_job(sim, png(scene()))
        async with client:
            assert await client.cancel(request_id) is True
            final = await client.wait(request_id)
            assert final.status == "CANCELLED"
            assert await client.cancel(request_id) is False  # already ended: 409


async def test_a_required_key_is_enforced() -> None:
    async with (
        Simulator(SimulatorSettings(key="right")) as sim,
        SunraClient(sim.url, "wrong", file_hosts=listed(sim.url), retry=FAST_RETRY) as client,
    ):
        with pytest.raises(AuthError):
            await client.status("sim-unknown")


async def test_outages_answer_503_like_an_overloaded_api() -> None:
    async with (
        Simulator(SimulatorSettings(error_rate=1.0)) as sim,
        SunraClient(sim.url, "k", file_hosts=listed(sim.url), retry=FAST_RETRY) as client,
    ):
        with pytest.raises(TransientError) as caught:
            await client.status("sim-unknown")
    assert caught.value.status == 503


async def test_the_whole_bot_runs_against_the_simulator(tmp_path: Path) -> None:
    picture = scene((640, 480))
    async with Simulator(FAST) as sim, running_world(tmp_path, sunra_api_url=sim.url) as world:
        interaction = await world.animate("the sun sets", image=world.image(png(picture), "scene.png"))
        job = await world.ended(interaction, within=60)
        assert job.state == "delivered", job.error_message
        (posted,) = world.outcome_messages(job.id)
        frame, kinds, _ = first_frame(posted.files[0].data)
    assert sorted(kinds) == ["audio", "video"]
    assert_looks_like(frame, picture)


async def test_old_jobs_are_forgotten_so_memory_stays_bounded() -> None:
    async with Simulator(SimulatorSettings(queue_seconds=30, max_jobs=2)) as sim:
        client, first = await run_job(sim, png(scene()))
        async with client:
            for _ in range(2):
                await client.submit(KlingInput(prompt="x", start_image_url="https://example.invalid/a.png"))
            assert len(sim.jobs) == 2 and len(sim.uploads) <= 4
            with pytest.raises(RequestNotFound):
                await client.status(first)
