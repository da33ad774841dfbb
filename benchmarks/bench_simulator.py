"""How long the simulator takes to render its videos (the CPU a simulated job costs). Prints figures.

.venv/bin/python benchmarks/bench_simulator.py
"""

from __future__ import annotations

import time
from pathlib import Path

from bot.simulator.video import render_clip

PICTURE = Path(__file__).resolve().parent.parent / "examples" / "lighthouse.jpg"
CASES = (
    ("5 s silent", {"seconds": 5, "audio": False}),
    ("5 s with audio", {"seconds": 5, "audio": True}),
    ("10 s with audio", {"seconds": 10, "audio": True}),
    ("10 s with audio and an end image", {"seconds": 10, "audio": True, "end": True}),
)


def main() -> None:
    data = PICTURE.read_bytes()
    for name, case in CASES:
        options = dict(case)
        end = data if options.pop("end", False) else None
        started = time.perf_counter()
        video = render_clip(data, end=end, **options)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        print(f"{name:<34} {elapsed:5.2f} s   {len(video) / 1000:7.0f} kB")


if __name__ == "__main__":
    main()
