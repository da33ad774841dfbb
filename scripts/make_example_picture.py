"""Draws examples/lighthouse.jpg, the picture the README's first command animates.

Drawn here with Pillow, so it is ours to ship under the project's license. Not run by the tests; the
file is committed. After changing the drawing: `.venv/bin/python scripts/make_example_picture.py`.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 960, 640
HORIZON = 400
OUT = Path(__file__).resolve().parent.parent / "examples" / "lighthouse.jpg"


def blend(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def draw() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT))
    pen = ImageDraw.Draw(image)
    for y in range(HORIZON):  # sunset sky: deep blue to orange
        pen.line((0, y, WIDTH, y), fill=blend((38, 44, 110), (250, 150, 80), (y / HORIZON) ** 1.6))
    pen.ellipse((560, 250, 720, 410), fill=(255, 214, 120))  # the sun, half set
    for y in range(HORIZON, HEIGHT):  # sea
        pen.line(
            (0, y, WIDTH, y), fill=blend((200, 110, 90), (20, 40, 80), (y - HORIZON) / (HEIGHT - HORIZON))
        )
    rng = random.Random(12)
    for _ in range(140):  # glints on the water
        x, y = rng.randrange(480, 800), rng.randrange(HORIZON + 4, HEIGHT)
        pen.line((x, y, x + rng.randrange(8, 30), y), fill=(255, 200, 130), width=2)
    pen.polygon([(0, 470), (120, 430), (330, 440), (420, 500), (420, HEIGHT), (0, HEIGHT)], fill=(34, 30, 40))
    pen.polygon([(190, 440), (270, 440), (256, 180), (204, 180)], fill=(236, 236, 230))  # tower
    for top in (230, 300, 370):
        pen.polygon([(200 - (top - 180) * 0.05, top), (260 + (top - 180) * 0.05, top),
                     (261 + (top - 180) * 0.05, top + 28), (199 - (top - 180) * 0.05, top + 28)],
                    fill=(200, 40, 40))  # fmt: skip
    pen.rectangle((196, 160, 264, 182), fill=(40, 40, 48))
    pen.rectangle((208, 130, 252, 160), fill=(255, 236, 150))  # the lamp
    pen.polygon([(214, 130), (230, 108), (246, 130)], fill=(40, 40, 48))
    beam = Image.new("L", (WIDTH, HEIGHT))  # the lamp's light, a soft translucent wedge
    ImageDraw.Draw(beam).polygon([(252, 138), (WIDTH, 60), (WIDTH, 200), (252, 152)], fill=90)
    image.paste((255, 240, 190), mask=beam.filter(ImageFilter.GaussianBlur(6)))
    return image.filter(ImageFilter.SMOOTH)


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    draw().save(OUT, "JPEG", quality=88, optimize=True)
    print(f"{OUT} ({OUT.stat().st_size} bytes)")
