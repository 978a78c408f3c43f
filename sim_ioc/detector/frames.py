"""What the simulated detector sees: a deterministic function of the motors.

A frame is a ``uint16`` image of a **sample on the x and y motors**: a crossed
grating, of period :data:`GRATING_PERIOD` along x and :data:`Y_GRATING_PERIOD`
along y (user units, mm by default), that the motors carry across a Gaussian
beam. Pixel ``(row, col)`` looks at sample coordinates::

    sx = position + (col - width / 2) * PIXEL_SIZE
    sy = y + (row - height / 2) * PIXEL_SIZE

and counts::

    BACKGROUND + PEAK * exposure / (10 ms) * beam(row, col) * grating(sx, sy)
    grating(sx, sy) = (1 + cos(2 pi sx / GRATING_PERIOD)) / 2
                      * (1 - Y_DEPTH * (1 - cos(2 pi sy / Y_GRATING_PERIOD)) / 2)

rounded to an integer and saturating at 65535, where ``beam`` is a Gaussian of
sigma ``width / 4`` (and ``height / 4``) centred on the image. So the image
shifts with either motor and brightens with the exposure, and two frames are
equal only if they were taken at the same (x, y) for as long. The y grating
is shallow (it dims by :data:`Y_DEPTH` at most), so the x grating stays the
one that dominates the image, as before there was a y.

Like the binary time stamps some cameras burn into their first pixels, the
first :data:`STAMP_PIXELS` pixels of row 0 carry the exact values the image was
made from, little-endian 16-bit words:

=========  =======================================================
pixels     value
=========  =======================================================
0-3        motor position at the trigger, float64 (user units)
4-7        trigger tick (8 ns since the simulator started), uint64
8-9        frame index within its acquisition, uint32
10-13      exposure, ticks, uint64 (a gate's length when gated)
14-17      y motor position at the trigger, float64 (user units)
=========  =======================================================

:func:`decode` reads them back; :func:`render` with the decoded values gives
the same image bit for bit, which is how a test checks a frame's content
against the position the PandA captured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

__all__ = [
    "GRATING_PERIOD",
    "PIXEL_SIZE",
    "STAMP_PIXELS",
    "Y_DEPTH",
    "Y_GRATING_PERIOD",
    "Stamp",
    "decode",
    "render",
]

#: Grating period on the sample along x, in the motor's user units.
GRATING_PERIOD = 0.2
#: Grating period along y (unlike x's, so the two are told apart).
Y_GRATING_PERIOD = 0.5
#: How much the y grating dims at its darkest (0: no y dependence).
Y_DEPTH = 0.5
#: Sample distance one pixel spans, in the motor's user units.
PIXEL_SIZE = 0.01
BACKGROUND = 100
PEAK = 4000
#: Exposure giving PEAK counts at the brightest pixel, in ticks (10 ms).
REFERENCE_EXPOSURE = 1_250_000
#: Pixels of row 0 holding the :class:`Stamp`.
STAMP_PIXELS = 18

Image = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class Stamp:
    """What a frame was made from."""

    position: float  # x motor user position at the trigger
    tick: int  # trigger tick
    index: int  # frame index within its acquisition
    exposure: int = REFERENCE_EXPOSURE  # ticks
    y: float = 0.0  # y motor user position at the trigger


@cache
def _beam(height: int, width: int) -> tuple[npt.NDArray[np.float64], ...]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    sy, sx = max(height / 4, 1.0), max(width / 4, 1.0)
    beam = np.exp(
        -((x - width / 2) ** 2) / (2 * sx**2) - ((y - height / 2) ** 2) / (2 * sy**2)
    )
    offsets = (np.arange(width, dtype=np.float64) - width / 2) * PIXEL_SIZE
    row_offsets = (np.arange(height, dtype=np.float64) - height / 2) * PIXEL_SIZE
    return beam, offsets, row_offsets[:, np.newaxis]


def render(stamp: Stamp, shape: tuple[int, int] = (64, 64)) -> Image:
    """The frame taken at ``stamp`` (``shape`` is (height, width))."""
    height, width = shape
    if width < STAMP_PIXELS or height < 1:
        raise ValueError(f"a frame needs at least {STAMP_PIXELS} columns and a row")
    beam, offsets, row_offsets = _beam(height, width)
    phase = (stamp.position + offsets) * (2 * math.pi / GRATING_PERIOD)
    y_phase = (stamp.y + row_offsets) * (2 * math.pi / Y_GRATING_PERIOD)
    transmission = (0.5 * (1.0 + np.cos(phase))) * (
        1.0 - Y_DEPTH * 0.5 * (1.0 - np.cos(y_phase))
    )
    peak = PEAK * stamp.exposure / REFERENCE_EXPOSURE
    counts = np.rint(BACKGROUND + peak * beam * transmission)
    image = np.minimum(counts, np.iinfo(np.uint16).max).astype(np.uint16)
    header = np.frombuffer(
        np.array([stamp.position], "<f8").tobytes()
        + np.array([stamp.tick], "<u8").tobytes()
        + np.array([stamp.index], "<u4").tobytes()
        + np.array([stamp.exposure], "<u8").tobytes()
        + np.array([stamp.y], "<f8").tobytes(),
        "<u2",
    )
    image[0, :STAMP_PIXELS] = header
    return image


def decode(image: npt.ArrayLike) -> Stamp:
    """The :class:`Stamp` in a frame's first pixels, the y position included."""
    words = np.asarray(image)[0, :STAMP_PIXELS].astype("<u2").tobytes()
    position = float(np.frombuffer(words[0:8], "<f8")[0])
    tick = int(np.frombuffer(words[8:16], "<u8")[0])
    index = int(np.frombuffer(words[16:20], "<u4")[0])
    exposure = int(np.frombuffer(words[20:28], "<u8")[0])
    y = float(np.frombuffer(words[28:36], "<f8")[0])
    return Stamp(position, tick, index, exposure, y)
