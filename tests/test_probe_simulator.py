"""A new operator follows `kling-bot simulate`'s banner literally: the variables it prints are enough
for the bot (here `kling-bot animate`, the same client and URL checks) to make a video from it. Before,
the banner named SUNRA_API_URL only; the bot then refused the simulator's loopback file URLs (not listed
in SUNRA_FILE_HOSTS) and said "Trying again may help"."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests import images

KLING_BOT = [sys.executable, "-m", "bot"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_simulator_banner_names_every_variable_the_bot_needs(tmp_path: Path) -> None:
    port = free_port()
    simulator = subprocess.Popen(
        [*KLING_BOT, "simulate", "--port", str(port), "--queue-seconds", "0", "--generate-seconds", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        banner = simulator.stdout.readline()
        variables = dict(re.findall(r"\b([A-Z_]+)=(\S+)", banner))
        assert "SUNRA_API_URL" in variables, banner
        picture = tmp_path / "cat.png"
        picture.write_bytes(images.png((640, 480)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SUNRA", "QUOTA", "DATABASE"))}
        env.update(variables, SUNRA_KEY="anything", DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}")
        env["QUOTA__GLOBAL_DAILY_USD"] = "5"
        done = subprocess.run(
            [*KLING_BOT, "animate", str(picture), "the cat waves", "--no-audio"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (banner, done.stdout, done.stderr)
        assert (tmp_path / "cat.mp4").stat().st_size > 0
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
