"""Peak memory of one picture decode (not run by CI).

    .venv/bin/python benchmarks/bench_media.py [--dir /tmp/bench_media]

Generates, once, photo-like test files in --dir: a 200 MP JPEG (16320×12240, the largest phone sensors),
a rotated 48 MP JPEG, a progressive one, a 40 MP PNG and a 48 MP HEIC. Each is then prepared by
`bot.picture_decode.inspect_bytes` (exactly what a worker thread runs for an attachment) in a fresh
process, which prints:

- peak RSS during the decode above the process's RSS just before it (the file's bytes already read),
  from the kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs);
- tracemalloc's peak, which sees only Python objects (the encoded output), not Pillow's or libjpeg's
  C buffers: that is why the RSS figure is the one to read;
- the time it took, the source and output sizes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CASES = {
    "200mp.jpg": ((16320, 12240), "JPEG", {"quality": 90}, 1),
    "48mp-rotated.jpg": ((8064, 6048), "JPEG", {"quality": 90}, 6),
    "48mp-progressive.jpg": ((8064, 6048), "JPEG", {"quality": 90, "progressive": True}, 1),
    "40mp.png": ((7746, 5164), "PNG", {}, 1),
    "48mp.heic": ((8064, 6048), "HEIF", {"quality": 80}, 1),
}


def photo_like(size: tuple[int, int]) -> object:
    """Smooth random colour fields: compresses like a photo (not like noise, not like a flat colour)."""
    from PIL import Image

    small = Image.frombytes(
        "RGB", (size[0] // 64, size[1] // 64), os.urandom(size[0] // 64 * (size[1] // 64) * 3)
    )
    return small.resize(size, Image.Resampling.BICUBIC)


def generate(directory: Path) -> None:
    from PIL import Image

    import bot.picture_decode  # noqa: F401  (registers the HEIF plugin)
    from tests.images import as_stored, exif_orientation

    directory.mkdir(parents=True, exist_ok=True)
    for name, (size, fmt, params, orientation) in CASES.items():
        path = directory / name
        if path.exists():
            continue
        print(f"generating {path} ...", flush=True)
        image = photo_like(size)
        assert isinstance(image, Image.Image)
        if orientation != 1:
            image = as_stored(image, orientation)
            params = {**params, "exif": exif_orientation(orientation)}
        image.save(path, fmt, **params)


def vm(field: str) -> int:
    """A /proc/self/status figure in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def measure_one(path: Path) -> dict[str, object]:
    from bot.picture_decode import inspect_bytes

    data = path.read_bytes()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = vm("VmRSS")
    tracemalloc.start()
    started = time.perf_counter()
    result = inspect_bytes(data, max_input_bytes=1 << 40)
    elapsed = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = vm("VmHWM")
    from PIL import Image

    with Image.open(io.BytesIO(data)) as source:
        source_size = source.size
    return {
        "file": path.name,
        "file_mb": len(data) / 1e6,
        "source_mp": source_size[0] * source_size[1] / 1e6,
        "output": f"{result.width}×{result.height} {result.content_type} {len(result.data) / 1e6:.1f} MB"
        + (" re-encoded" if result.reencoded else " unchanged"),
        "seconds": elapsed,
        "peak_rss_mib": (peak - before) / 2**20,
        "tracemalloc_mib": traced_peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench_media"))
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one)))
        return
    generate(args.dir)
    print(f"{'file':<22}{'MB':>7}{'MP':>7}{'seconds':>9}{'peak RSS':>11}{'tracemalloc':>13}  output")
    for name in CASES:
        # A fresh process per file: the high-water mark then belongs to this decode alone.
        run = subprocess.run(
            [sys.executable, __file__, "--one", str(args.dir / name)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(run.stdout)
        print(
            f"{row['file']:<22}{row['file_mb']:>7.1f}{row['source_mp']:>7.0f}{row['seconds']:>9.2f}"
            f"{row['peak_rss_mib']:>8.0f} MiB{row['tracemalloc_mib']:>9.0f} MiB  {row['output']}"
        )


if __name__ == "__main__":
    main()
