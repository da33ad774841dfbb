"""Benchmark of the video work (not run by CI): a video's last frame (Extend) and re-encoding to fit.

    .venv/bin/python benchmarks/bench_video.py [--frames 22] [--width 1280] [--height 720] [--limit-mib 10]

Makes a high-bitrate clip with PyAV (noise frames, lossless H.264 with AAC sound), then prints its size,
the time to take its last frame, the time and result of re-encoding it under the limit, and the process's
peak memory (ru_maxrss). Run it alone: it uses one core, as the bot does (one re-encoding at a time).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.video import last_frame, reencode_to_fit
from tests.videos import make_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=22)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--limit-mib", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        source = make_video(
            Path(folder) / "source.mp4",
            frames=args.frames,
            size=(args.width, args.height),
            audio=True,
            lossless=True,
        )
        print(
            f"source: {source.stat().st_size / 1e6:.1f} MB, {args.frames} frames {args.width}x{args.height}"
        )
        started = time.perf_counter()
        frame = last_frame(source)
        print(f"last frame: {frame.size[0]}x{frame.size[1]} in {time.perf_counter() - started:.2f} s")
        limit = int(args.limit_mib * 1024 * 1024)
        started = time.perf_counter()
        fitted = reencode_to_fit(source, Path(folder) / "fitted.mp4", max_bytes=limit)
        took = time.perf_counter() - started
        if fitted is None:
            print(f"re-encode: nothing fits under {args.limit_mib} MiB ({took:.2f} s)")
        else:
            print(
                f"re-encode: {fitted.size / 1e6:.2f} MB (limit {limit / 1e6:.2f} MB), "
                f"{fitted.width}x{fitted.height}, in {took:.2f} s"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
