"""`kling-bot animate --out` tried as a new operator would mistype it: the picture itself as the output
replaced the operator's photo with the MP4 (exit 0), and a folder on a read-only mount (that
`os.access` passes for root) was found only after the video was made and paid for (exit 1, the video
left at a link that expires). Both are refused before anything is sent (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.terminal import EXIT_USAGE, AnimateOptions
from tests.fakes.sunra_server import FakeSunra
from tests.test_terminal import KEY, picture, run, settings_for


async def test_the_picture_itself_as_out_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    image = picture(tmp_path)
    before = image.read_bytes()
    async with FakeSunra(key=KEY) as fake:
        settings = settings_for(fake.url, tmp_path / "db.sqlite3")
        for out in (image, tmp_path / "." / image.name):
            code, said = await run(settings, AnimateOptions(image, "waves", out=out))
            assert code == EXIT_USAGE, said
            assert "the picture" in said, said
        end = tmp_path / "end.png"
        end.write_bytes(before)
        code, said = await run(settings, AnimateOptions(image, "waves", end_image=end, out=end))
        assert code == EXIT_USAGE, said
        assert fake.count("upload_initiate") == 0 and fake.count("submit") == 0
    assert image.read_bytes() == before and end.read_bytes() == before


@pytest.mark.skipif(not Path("/proc").is_dir() or os.name != "posix", reason="needs a read-only /proc")
async def test_a_folder_on_a_read_only_mount_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    image = picture(tmp_path)
    async with FakeSunra(key=KEY) as fake:
        settings = settings_for(fake.url, tmp_path / "db.sqlite3")
        code, said = await run(settings, AnimateOptions(image, "waves", out=Path("/proc/kling.mp4")))
        assert code == EXIT_USAGE, said
        assert "cannot be written" in said, said
        assert fake.count("upload_initiate") == 0 and fake.count("submit") == 0
