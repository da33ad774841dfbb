"""`kling-bot animate` end to end: against the fake sunra, against the simulator, refused, failed, capped,
and cancelled with a real Ctrl-C (SIGINT to a subprocess)."""

from __future__ import annotations

import asyncio
import io
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rich.console import Console

from bot.cli import build_parser, main
from bot.config import ToolSettings
from bot.i18n import CATALOGUES
from bot.i18n.msgids import marked
from bot.jobs import State
from bot.simulator import Simulator, SimulatorSettings
from bot.store import Database
from bot.store.jobs import TERMINAL_CHANNEL_ID, JobStore
from bot.store.ledger import ledger_entries
from bot.sunra import MAX_VOICES, RequestNotFound, SunraClient
from bot.terminal import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    OPERATOR_GUILD,
    AnimateOptions,
    ProcessJobs,
    animate,
    default_out,
)
from bot.video import MAX_VIDEO_BYTES
from tests.fakes.sunra_server import FakeSunra
from tests.test_simulator import assert_looks_like, first_frame, scene
from tests.world import file_hosts

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-terminal-0123456789abcdef"


def settings_for(api_url: str, database: Path, **overrides: Any) -> ToolSettings:
    values: dict[str, Any] = {
        "sunra_key": KEY,
        "sunra_api_url": api_url,
        "database_url": f"sqlite:///{database}",
        "jobs": {"poll_first_seconds": 0.05, "poll_max_seconds": 0.2},
    }
    values.update(overrides)
    values.setdefault("sunra_file_hosts", file_hosts(api_url))  # the fake on loopback is listed
    return ToolSettings(**values)


def picture(folder: Path, size: tuple[int, int] = (800, 600)) -> Path:
    path = folder / "picture.png"
    scene(size).save(path)
    return path


async def run(settings: ToolSettings, options: AnimateOptions) -> tuple[int, str]:
    buffer = io.StringIO()
    code = await animate(settings, options, Console(file=buffer, width=200))
    return code, buffer.getvalue()


async def test_a_video_from_the_fake_api_is_written_and_paid_for(tmp_path: Path) -> None:
    image = picture(tmp_path)
    async with FakeSunra(key=KEY) as fake:
        settings = settings_for(fake.url, tmp_path / "bot.sqlite3")
        code, said = await run(settings, AnimateOptions(image, "waves roll in", duration=10, audio=False))
        assert code == EXIT_OK, said
        (request_id,) = fake.jobs
        out = tmp_path / "picture.mp4"  # next to the image
        assert out.read_bytes() == fake.video_bytes(request_id)
        sent = fake.submissions[0]
        assert sent["duration"] == "10" and sent["generate_audio"] is False
        assert sent["start_image_url"] in fake.uploads and not fake.leaked_auth
    async with await Database.open(tmp_path / "bot.sqlite3") as db:
        (job,) = await JobStore(db, terminal=True).in_states([State.DELIVERED])
        assert job.channel_id == TERMINAL_CHANNEL_ID
        assert await JobStore(db).in_states([State.DELIVERED]) == []  # the bot never sees it
        entries = await ledger_entries(db, job_id=job.id)
    assert [e.kind for e in entries] == ["reserve", "commit"]
    assert entries[0].guild == OPERATOR_GUILD and entries[0].usd_micros == 700_000  # 10 s silent
    assert "10 credits ($0.70)" in said


async def test_the_global_cap_refuses_before_anything_is_sent(tmp_path: Path) -> None:
    image = picture(tmp_path)
    async with FakeSunra(key=KEY) as fake:
        settings = settings_for(fake.url, tmp_path / "bot.sqlite3", quota={"global_daily_usd": 1.0})
        code, said = await run(settings, AnimateOptions(image, "first", out=tmp_path / "a.mp4"))
        assert code == EXIT_OK, said  # $0.70 of $1.00
        code, said = await run(settings, AnimateOptions(image, "second", out=tmp_path / "b.mp4"))
        assert code == EXIT_REFUSED
        assert "global spending cap is reached: $0.70 of $1.00" in said
        assert fake.count("submit") == 1 and not (tmp_path / "b.mp4").exists()


async def test_an_out_file_that_cannot_be_written_is_refused_before_anything_is_spent(tmp_path: Path) -> None:
    image = picture(tmp_path)
    async with FakeSunra(key=KEY) as fake:
        settings = settings_for(fake.url, tmp_path / "db.sqlite3")
        for out, said_part in (
            (tmp_path / "no-such-folder" / "v.mp4", "no-such-folder is not a folder"),
            (tmp_path, "is a folder"),
        ):
            code, said = await run(settings, AnimateOptions(image, "x", out=out))
            assert code == EXIT_USAGE, said
            assert said_part in said.replace("\n", ""), said
        assert fake.count("upload_initiate") == 0 and fake.count("submit") == 0


async def test_a_picture_kling_cannot_take_is_refused(tmp_path: Path) -> None:
    image = picture(tmp_path, size=(200, 200))
    async with FakeSunra(key=KEY) as fake:
        code, said = await run(settings_for(fake.url, tmp_path / "db.sqlite3"), AnimateOptions(image, "x"))
        assert code == EXIT_REFUSED and "at least 300×300 px" in said
        assert fake.count("upload_initiate") == 0 and fake.count("submit") == 0


async def test_a_failed_job_says_why(tmp_path: Path) -> None:
    image = picture(tmp_path)
    async with FakeSunra(key=KEY) as fake:
        fake.fail_next_job("NSFW content detected", retryable=False)
        code, said = await run(settings_for(fake.url, tmp_path / "db.sqlite3"), AnimateOptions(image, "x"))
    assert code == EXIT_FAILED
    assert "Kling could not make this video: NSFW content detected" in said
    assert not (tmp_path / "picture.mp4").exists()


async def test_the_simulators_failures_are_reported_like_real_ones(tmp_path: Path) -> None:
    image = picture(tmp_path)
    failing = SimulatorSettings(queue_seconds=0.1, generate_seconds=0.1, failure_rate=1.0)
    async with Simulator(failing) as sim:
        code, said = await run(settings_for(sim.url, tmp_path / "db.sqlite3"), AnimateOptions(image, "x"))
    assert code == EXIT_FAILED
    assert "Kling could not make this video: The simulator failed this job on purpose" in said


async def test_simulate_runs_offline_and_the_video_shows_the_picture(tmp_path: Path) -> None:
    image = picture(tmp_path)
    out = tmp_path / "out" / "clip.mp4"
    out.parent.mkdir()
    nothing = ToolSettings(database_url=f"sqlite:///{tmp_path / 'real.sqlite3'}")
    assert nothing.sunra_key is None and nothing.discord_token is None
    code, said = await run(nothing, AnimateOptions(image, "the sun sets", out=out, simulate=True))
    assert code == EXIT_OK, said
    frame, kinds, duration = first_frame(out.read_bytes())
    assert sorted(kinds) == ["audio", "video"] and duration == pytest.approx(5.0, abs=0.2)
    assert_looks_like(frame, Image.open(image))
    assert not (tmp_path / "real.sqlite3").exists()  # simulated spend stays out of the real ledger


def test_the_default_output_never_overwrites(tmp_path: Path) -> None:
    image = tmp_path / "cat.jpg"
    assert default_out(image) == tmp_path / "cat.mp4"
    (tmp_path / "cat.mp4").write_bytes(b"")
    assert default_out(image) == tmp_path / "cat-2.mp4"


async def test_ctrl_c_cancels_the_job_at_the_api(tmp_path: Path) -> None:
    image = picture(tmp_path)
    async with FakeSunra(key=KEY, job_seconds=60.0) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SUNRA_", "QUOTA__"))}
        env.update(
            PYTHONPATH=str(ROOT),
            SUNRA_KEY=KEY,
            SUNRA_API_URL=fake.url,
            SUNRA_FILE_HOSTS=file_hosts(fake.url),
            DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "animate", str(image), "a long one", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await fake.wait_until(lambda: len(fake.jobs) == 1 and fake.count("stream") > 0, within=60)
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        (request_id,) = fake.jobs
        assert fake.count("cancel", request_id) == 1
        assert fake.jobs[request_id].cancelled_at is not None
    assert proc.returncode == EXIT_CANCELLED, err.decode()
    assert "You cancelled it (Ctrl-C); nothing was charged." in err.decode()
    assert out == b"" and KEY.encode() not in out + err


async def test_the_readmes_first_command_makes_a_playable_video(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    command = first_block.split("kling-bot ", 1)[1].strip()
    assert command.startswith("animate examples/") and command.endswith("--simulate")
    words = shlex.split(command)
    image = ROOT / words[1]
    assert image.stat().st_size < 200_000
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SUNRA_"))}
    env["PYTHONPATH"] = str(ROOT)
    out = tmp_path / "first.mp4"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *words, "--out", str(out), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == EXIT_OK, stderr.decode()
    assert stdout.decode().strip() == str(out)
    frame, _, _ = first_frame(out.read_bytes())
    assert_looks_like(frame, Image.open(image))


async def test_loop_ends_on_the_start_image(tmp_path: Path) -> None:
    image = picture(tmp_path)
    async with FakeSunra(key=KEY) as fake:
        settings = settings_for(fake.url, tmp_path / "db.sqlite3")
        code, said = await run(settings, AnimateOptions(image, "round and round", loop=True))
        assert code == EXIT_OK, said
        sent = fake.submissions[0]
        start, end = fake.uploads[sent["start_image_url"]], fake.uploads[sent["end_image_url"]]
        assert start.data == end.data


def test_loop_and_an_end_image_cannot_be_combined(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["animate", "a.png", "x", "--loop", "--end-image", "b.png"])
    assert caught.value.code == EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err


async def test_simulate_serves_until_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SUNRA_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "simulate", "--port", "0", "--failure-rate", "1", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        url = line.split("SUNRA_API_URL=", 1)[1].split()[0]
        async with SunraClient(url, "any key") as client:
            with pytest.raises(RequestNotFound):
                await client.status("no-such-job")
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == EXIT_OK
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_terminals_and_the_bot_never_take_each_others_jobs(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "db.sqlite3") as db:
        first, second, bot = ProcessJobs(db), ProcessJobs(db), JobStore(db)
        common = {"guild_id": None, "user_id": 0, "params": {}, "upload_limit": 1, "lifetime_seconds": 60}
        mine, _ = await first.create(
            interaction_id=-1, channel_id=TERMINAL_CHANNEL_ID, state=State.QUEUED, **common
        )
        member, _ = await bot.create(interaction_id=7, channel_id=42, state=State.QUEUED, **common)
        assert [job.id for job in await first.in_states([State.QUEUED])] == [mine]
        assert await second.in_states([State.QUEUED]) == []
        assert [job.id for job in await bot.in_states([State.QUEUED])] == [member]


@pytest.mark.parametrize("trouble", ["cut", "over the cap"])
async def test_an_error_never_touches_the_operators_existing_out_file(tmp_path: Path, trouble: str) -> None:
    """Issue 19, item 7: --out is written under a temporary name beside it, capped, and moved into
    place only when complete."""
    image = picture(tmp_path)
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"the operator's own video")
    async with FakeSunra(key=KEY) as fake:
        settings = settings_for(fake.url, tmp_path / "bot.sqlite3", jobs={"max_video_mb": 0.1})
        if trouble == "cut":
            fake.next_job(video_size=300_000)
            fake.fail_next("video", cut_after=50_000, times=20)
        else:
            fake.next_job(video_size=MAX_VIDEO_BYTES + 1)
        code, said = await run(settings, AnimateOptions(image, "waves", out=existing))
        assert code == EXIT_FAILED, said
    assert existing.read_bytes() == b"the operator's own video"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


async def test_a_complete_video_replaces_the_out_file(tmp_path: Path) -> None:
    image = picture(tmp_path)
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"old")
    async with FakeSunra(key=KEY) as fake:
        settings = settings_for(fake.url, tmp_path / "bot.sqlite3", jobs={"max_video_mb": 0.1})
        fake.next_job(video_size=300_000)
        code, said = await run(settings, AnimateOptions(image, "waves", out=existing))
        assert code == EXIT_OK, said
        assert existing.read_bytes() == fake.video_bytes(next(iter(fake.jobs)))


@pytest.mark.parametrize(
    ("voices", "prompt", "audio", "code"),
    [
        (
            ("v1", "v2", "v3"),
            "<<<voice_1>>> <<<voice_2>>> <<<voice_3>>>",
            True,
            EXIT_USAGE,
        ),  # a third --voice
        (("v1", ""), "<<<voice_1>>> <<<voice_2>>>", True, EXIT_USAGE),  # an empty one
        (("v1", "two words"), "<<<voice_1>>> <<<voice_2>>>", True, EXIT_USAGE),  # not a voice id
        (("v1",), "<<<voice_1>>> then <<<voice_2>>>", True, EXIT_REFUSED),  # a reference without a --voice
        (("v1", "v2"), "only <<<voice_1>>> speaks", True, EXIT_REFUSED),  # a --voice never referred to
        (("v1",), "<<<voice_1>>> speaks", False, EXIT_REFUSED),  # voices with --no-audio
    ],
)
async def test_voice_refusals_name_the_voice_flag_not_the_discord_option(
    tmp_path: Path, voices: tuple[str, ...], prompt: str, audio: bool, code: int
) -> None:
    image = picture(tmp_path)
    async with FakeSunra(key=KEY) as fake:
        settings = settings_for(fake.url, tmp_path / "db.sqlite3")
        got, said = await run(settings, AnimateOptions(image, prompt, audio=audio, voices=voices))
        assert got == code, said
        assert "--voice" in said and "voice_1`" not in said and "voice_2`" not in said, said
        assert fake.count("upload_initiate") == 0 and fake.count("submit") == 0


def test_a_third_voice_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["animate", "a.png", "x", "--voice", "a", "--voice", "b", "--voice", "c"], serve=lambda: None)
    assert caught.value.code == EXIT_USAGE
    assert f"`--voice` may be given at most {MAX_VOICES} times" in capsys.readouterr().err


def test_every_catalogue_names_the_voice_flag_in_its_voice_refusals() -> None:
    flag_messages = [msgid for msgid in marked() if "`--voice" in msgid]
    assert len(flag_messages) >= 4
    for code, catalogue in CATALOGUES.items():
        for msgid in flag_messages:
            forms = catalogue[msgid]
            for form in forms if isinstance(forms, tuple) else (forms,):
                assert "`--voice" in form, (code, msgid, form)


async def test_text_the_operator_typed_is_shown_as_typed_not_read_as_rich_markup(tmp_path: Path) -> None:
    """A voice id or a folder with square brackets was read as rich markup: `a[/]` raised MarkupError
    (a traceback instead of the refusal), `[bold]` vanished from the message."""
    image = picture(tmp_path)
    async with FakeSunra(key=KEY) as fake:
        settings = settings_for(fake.url, tmp_path / "db.sqlite3")
        for voice in ("a[/]", "x[bold]y"):
            code, said = await run(settings, AnimateOptions(image, "no reference", voices=(voice,)))
            assert code == EXIT_REFUSED, said
            assert f"`--voice {voice}` was given" in said, said
        out = tmp_path / "[draft]" / "v.mp4"
        code, said = await run(settings, AnimateOptions(image, "x", out=out))
        assert code == EXIT_USAGE and "[draft] is not a folder" in said.replace("\n", ""), said
        assert fake.count("upload_initiate") == 0 and fake.count("submit") == 0
