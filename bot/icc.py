"""An ICC profile for a HEIF picture whose colour is described by an ``nclx`` box instead (issue 19,
item 6): many Android phones tag their wide-gamut (Display P3) photos that way, and a JPEG without a
profile would be read as sRGB, its colours dulled.

`icc_from_nclx` writes a small ICC v4 display profile (matrix and parametric tone curves) from the
nclx colour primaries and transfer characteristics, as numbered by ITU-T H.273 (the numbering HEIF's
nclx box uses, ISO/IEC 23091-2). HDR transfers (PQ, HLG) and unknown codes give None: the picture is
then converted without a profile, as before.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

Matrix = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
Vector = tuple[float, float, float]

D65 = (0.3127, 0.3290)
D50_XYZ: Vector = (0.9642, 1.0, 0.8249)  # the ICC profile connection space's white (ICC.1, 7.2.16)

# H.273 ColourPrimaries: (red, green, blue, white) chromaticities.
PRIMARIES: dict[int, tuple[tuple[float, float], ...]] = {
    1: ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060), D65),  # BT.709 / sRGB
    5: ((0.640, 0.330), (0.290, 0.600), (0.150, 0.060), D65),  # BT.601 625
    6: ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070), D65),  # BT.601 525
    9: ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046), D65),  # BT.2020
    12: ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), D65),  # Display P3 (SMPTE EG 432-1)
}
NAMES = {1: "sRGB", 5: "BT.601-625", 6: "BT.601-525", 9: "BT.2020", 12: "Display P3"}
# H.273 TransferCharacteristics as ICC parametric curves: (function type, parameters).
_SRGB_CURVE = (3, (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
_BT709_CURVE = (3, (1 / 0.45, 1 / 1.099, 0.099 / 1.099, 1 / 4.5, 0.081))
TRANSFERS: dict[int, tuple[int, tuple[float, ...]]] = {
    1: _BT709_CURVE,
    2: _SRGB_CURVE,  # unspecified: what a display assumes
    4: (0, (2.2,)),
    5: (0, (2.8,)),
    6: _BT709_CURVE,
    8: (0, (1.0,)),  # linear
    13: _SRGB_CURVE,
    14: _BT709_CURVE,
    15: _BT709_CURVE,
}
_BRADFORD: Matrix = (
    (0.8951, 0.2664, -0.1614),
    (-0.7502, 1.7135, 0.0367),
    (0.0389, -0.0685, 1.0296),
)


def icc_from_nclx(nclx: object) -> bytes | None:
    """An ICC v4 profile for pillow-heif's ``info["nclx_profile"]`` (a dict with ``color_primaries`` and
    ``transfer_characteristics``), or None when the values name no SDR colour space it knows."""
    if not isinstance(nclx, dict):
        return None
    primaries = PRIMARIES.get(_int(nclx.get("color_primaries")))
    curve = TRANSFERS.get(_int(nclx.get("transfer_characteristics")))
    if primaries is None or curve is None:
        return None
    name = f"{NAMES[_int(nclx.get('color_primaries'))]} (from HEIF nclx)"
    return build_profile(primaries, curve, name)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def build_profile(
    primaries: Sequence[tuple[float, float]], curve: tuple[int, tuple[float, ...]], description: str
) -> bytes:
    """A matrix/TRC RGB display profile (ICC.1:2010, version 4.3) for these primaries and curve."""
    red, green, blue, white = primaries
    to_xyz = _rgb_to_xyz(red, green, blue, white)
    chad = _bradford(_xyz(white), D50_XYZ)
    adapted = _multiply(chad, to_xyz)
    columns = [(adapted[0][i], adapted[1][i], adapted[2][i]) for i in range(3)]
    trc = _para(*curve)
    tags: list[tuple[bytes, bytes]] = [
        (b"desc", _mluc(description)),
        (b"cprt", _mluc("No copyright, use freely")),
        (b"wtpt", _xyz_type(D50_XYZ)),
        (b"chad", b"sf32" + bytes(4) + b"".join(_s15(v) for row in chad for v in row)),
        (b"rXYZ", _xyz_type(columns[0])),
        (b"gXYZ", _xyz_type(columns[1])),
        (b"bXYZ", _xyz_type(columns[2])),
        (b"rTRC", trc),
        (b"gTRC", trc),
        (b"bTRC", trc),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    entries, data = [], b""
    for signature, body in tags:
        entries.append(signature + struct.pack(">II", offset + len(data), len(body)))
        data += body + bytes(-len(body) % 4)
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + bytes(4)  # preferred CMM
        + bytes([4, 0x30, 0, 0])  # version 4.3
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8)  # platform, flags, manufacturer, model, attributes
        + struct.pack(">I", 0)  # perceptual intent
        + _xyz_values(D50_XYZ)
        + bytes(4 + 16 + 28)  # creator, profile id (none), reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(entries) + data


def _xyz(xy: tuple[float, float]) -> Vector:
    x, y = xy
    return (x / y, 1.0, (1 - x - y) / y)


def _rgb_to_xyz(*points: tuple[float, float]) -> Matrix:
    red, green, blue, white = (_xyz(point) for point in points)
    primaries: Matrix = (
        (red[0], green[0], blue[0]),
        (red[1], green[1], blue[1]),
        (red[2], green[2], blue[2]),
    )
    scale = _apply(_inverse(primaries), white)
    return (
        (primaries[0][0] * scale[0], primaries[0][1] * scale[1], primaries[0][2] * scale[2]),
        (primaries[1][0] * scale[0], primaries[1][1] * scale[1], primaries[1][2] * scale[2]),
        (primaries[2][0] * scale[0], primaries[2][1] * scale[1], primaries[2][2] * scale[2]),
    )


def _bradford(source: Vector, dest: Vector) -> Matrix:
    cone_source, cone_dest = _apply(_BRADFORD, source), _apply(_BRADFORD, dest)
    gains = tuple(d / s for d, s in zip(cone_dest, cone_source, strict=True))
    diagonal: Matrix = ((gains[0], 0.0, 0.0), (0.0, gains[1], 0.0), (0.0, 0.0, gains[2]))
    return _multiply(_inverse(_BRADFORD), _multiply(diagonal, _BRADFORD))


def _apply(matrix: Matrix, vector: Vector) -> Vector:
    row0, row1, row2 = (sum(m * v for m, v in zip(row, vector, strict=True)) for row in matrix)
    return (row0, row1, row2)


def _multiply(a: Matrix, b: Matrix) -> Matrix:
    rows = [tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)) for i in range(3)]
    return (
        (rows[0][0], rows[0][1], rows[0][2]),
        (rows[1][0], rows[1][1], rows[1][2]),
        (rows[2][0], rows[2][1], rows[2][2]),
    )


def _inverse(m: Matrix) -> Matrix:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return (
        ((e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det),
        ((f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det),
        ((d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det),
    )


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_values(xyz: Vector) -> bytes:
    return b"".join(_s15(v) for v in xyz)


def _xyz_type(xyz: Vector) -> bytes:
    return b"XYZ " + bytes(4) + _xyz_values(xyz)


def _para(function: int, parameters: tuple[float, ...]) -> bytes:
    return b"para" + bytes(4) + struct.pack(">HH", function, 0) + b"".join(_s15(p) for p in parameters)


def _mluc(text: str) -> bytes:
    encoded = text.encode("utf-16-be")
    return (
        b"mluc"
        + bytes(4)
        + struct.pack(">II", 1, 12)
        + b"enUS"
        + struct.pack(">II", len(encoded), 28)
        + encoded
    )
