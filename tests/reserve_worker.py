"""One process of the two-process reservation test (tests/test_quota.py): reserves the given jobs all at
once for one member against a small allowance, and prints how many it won.

python -m tests.reserve_worker DATABASE_URL NOW JOB_ID...
"""

from __future__ import annotations

import asyncio
import sys

from bot.quota.checks import QuotaRefused
from bot.quota.rules import JobOptions, QuotaSettings
from bot.quota.spending import QuotaService
from bot.store import Database

GUILD = 111
ALICE = 1001
DAILY_CREDITS = 15  # three 5-credit jobs
SILENT_5 = JobOptions(duration=5, audio=False, voices=0)


async def main(url: str, now: float, job_ids: list[int]) -> int:
    async with await Database.open(url) as db:
        quota = QuotaService(db, QuotaSettings(daily_credits=DAILY_CREDITS), clock=lambda: now)

        async def one(job_id: int) -> bool:
            try:
                await quota.reserve(
                    job_id=job_id, guild_id=GUILD, user_id=ALICE, role_ids=(), options=SILENT_5
                )
            except QuotaRefused:
                return False
            return True

        return sum(await asyncio.gather(*(one(job_id) for job_id in job_ids)))


if __name__ == "__main__":
    won = asyncio.run(main(sys.argv[1], float(sys.argv[2]), [int(arg) for arg in sys.argv[3:]]))
    print(won)
