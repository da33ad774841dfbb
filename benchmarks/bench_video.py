"""Benchmark of the video work (not run by CI): a video's last frame (Extend) and re-encoding to fit.

    .venv/bin/python benchmarks/bench_video.py [--frames 22] [--width 1280] [--height 720] [--limit-mib 10]

Makes a high-bitrate clip with PyAV (noise frames, lossless H.264 with AAC sound), then prints its size,
the time to take its last frame, the time and result of re-encoding it under the limit, and the process's
peak memory (ru_maxrss). Run it alone: it uses one core, as the bot does (one re-encoding at a time).

Then, each in a fresh process, the peak memory each operation adds (ru_maxrss growth): probing, the
last frame and re-encoding, on the clip above and on hostile files (a 200 KB MP4 with one 8192×8192
frame; 20,000 tiny frames), which are refused before they are decoded (issue 19, item 3).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.video import last_frame, reencode_to_fit
from tests.videos import make_blank_video, make_video

# One operation in a fresh process: prints the peak memory it added, in KiB, and how it ended.
_ONE = """
import sys, time
from pathlib import Path

def peak_kib():
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak (Linux keeps it over exec).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

from bot.video import VideoRefused, last_frame, probe_video, reencode_to_fit
path, operation = Path(sys.argv[1]), sys.argv[2]
work = {
    "probe": lambda: probe_video(path),
    "last frame": lambda: last_frame(path),
    "re-encode": lambda: reencode_to_fit(path, path.with_suffix(".fit.mp4"), max_bytes=2_000_000),
}[operation]
before = peak_kib()
started = time.perf_counter()
try:
    work()
    ended = "done"
except VideoRefused:
    ended = "refused"
took = time.perf_counter() - started
print(peak_kib() - before, ended, f"{took:.2f}")
"""


def per_operation(files: dict[str, Path]) -> None:
    root = Path(__file__).resolve().parent.parent
    print(f"{'file':<28} {'operation':<11} {'peak added':>10} {'time':>7}  result")
    for name, path in files.items():
        for operation in ("probe", "last frame", "re-encode"):
            done = subprocess.run(
                [sys.executable, "-c", _ONE, str(path), operation],
                capture_output=True, text=True, cwd=root, check=True,
            )  # fmt: skip
            kib, ended, took = done.stdout.split()
            print(f"{name:<28} {operation:<11} {int(kib) / 1024:>7.0f} MiB {float(took):>6.2f}s  {ended}")


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
        folder_path = Path(folder)
        per_operation(
            {
                f"clip {args.width}x{args.height}": source,
                "one 8192x8192 frame": make_blank_video(folder_path / "huge.mp4", size=(8192, 8192)),
                "20,000 frames of 16x16": make_blank_video(
                    folder_path / "flood.mp4", size=(16, 16), frames=20_000
                ),
            }
        )


if __name__ == "__main__":
    main()
