"""Acknowledgements first (bot/acknowledgements.py): a command acknowledged waits with its picture work,
its reservation and its submission while another member's command is still owed its acknowledgement,
never longer than the bound, and nothing stays owed after a command, accepted or refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.acknowledgements import PendingAcknowledgements
from bot.store import ledger
from tests.world import running_world


async def test_settled_returns_at_once_when_nothing_is_owed() -> None:
    gate = PendingAcknowledgements(max_wait=5.0)
    await asyncio.wait_for(gate.settled(), timeout=0.5)
    assert gate.count == 0


async def test_settled_waits_for_the_last_owed_acknowledgement() -> None:
    gate = PendingAcknowledgements(max_wait=5.0)
    waited = asyncio.Event()

    async def after_acknowledgement() -> None:
        await gate.settled()
        waited.set()

    with gate.owed():
        with gate.owed():
            task = asyncio.create_task(after_acknowledgement())
            await asyncio.sleep(0.05)
            assert not waited.is_set() and gate.count == 2
        await asyncio.sleep(0.05)
        assert not waited.is_set() and gate.count == 1  # one still owed
    await asyncio.wait_for(task, timeout=1.0)
    assert waited.is_set() and gate.count == 0


async def test_settled_never_waits_longer_than_its_bound() -> None:
    gate = PendingAcknowledgements(max_wait=0.1)
    loop = asyncio.get_running_loop()
    with gate.owed():  # a command whose checks hang
        started = loop.time()
        await asyncio.wait_for(gate.settled(), timeout=2.0)
        assert loop.time() - started >= 0.09


async def test_an_owed_acknowledgement_holds_back_an_acknowledged_commands_work(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        gate = world.bot.runner.acknowledgements
        with gate.owed():  # another member's command, still between its arrival and its deferral
            interaction = await world.animate("the cat waves")
            callback = await world.discord.wait_for_callback(interaction.id, timeout=10)
            assert callback.type == 5  # this one is acknowledged (deferred) ...
            await asyncio.sleep(0.3)
            job = await world.job_for(interaction)
            assert job.state == "received"  # ... and waits: no reservation, no upload, no submission
            assert await ledger.find_reservation(world.db, job.id) is None
            assert world.sunra.count("submit") == 0
        job = await world.ended(interaction, within=30)
        assert job.state == "delivered"
        assert world.sunra.count("submit") == 1
        await world.assert_ledger_matches_jobs()


async def test_nothing_stays_owed_after_commands_accepted_and_refused(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        accepted = await world.animate("the cat waves", user_id=9101)
        refused = await world.animate("", user_id=9102)  # an empty prompt: refused before the record
        assert "on its way" in await world.private_answer(accepted)
        assert await world.private_answer(refused)
        assert world.bot.runner.acknowledgements.count == 0
