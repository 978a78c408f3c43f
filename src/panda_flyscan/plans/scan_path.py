"""A scanspec path cut into what the hardware does: flown lines and points.

Pure (no devices, no I/O): :func:`scan_path` takes any scanspec ``Spec`` and
returns a :class:`ScanPath`, the frames in order, cut into segments:

* :class:`FlyLine`: consecutive frames with no gap between them on which
  exactly one axis moves, at constant velocity (equal frame widths and
  durations): the axis flies through the frames' bounds, the other axes stand
  still where the spec puts them. The first frame is position-triggered, the
  rest follow in time.
* :class:`Point`: frames taken standing still. Dimensions outside ``Fly``
  (every frame has a gap before it) are points; so is each frame of a
  segment on which two or more axes move at once (a ``Spiral``, a ``Zip`` of
  two lines): stock motor records cannot follow a curve together, so such a
  path is run point by point, each frame time-triggered once the motors
  have arrived.

A segment on which the flown axis changes direction or step (a snake with
``gap=False``, a ``Concat`` of lines of different spacing) is split there
into several lines, each with its own run-up.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from scanspec.core import Path, SnakedDimension
from scanspec.specs import Spec

from .errors import PlanArgumentError

__all__ = ["FlyLine", "Point", "ScanPath", "Segment", "scan_path"]

#: Relative tolerance for "the same width/duration" (floats from linspace).
_RTOL = 1e-9


@dataclass(frozen=True)
class FlyLine:
    """Frames ``first .. first + num - 1`` flown by ``axis`` from ``start``
    (lower bound of the first frame) to ``end`` (upper bound of the last), each
    ``duration`` seconds; ``fixed`` are the other axes' positions."""

    first: int
    num: int
    axis: Hashable
    start: float
    end: float
    duration: float
    fixed: dict[Any, float]

    @property
    def velocity(self) -> float:
        """Speed of the flown axis, units/s (positive)."""
        return abs(self.end - self.start) / (self.num * self.duration)

    @property
    def direction(self) -> int:
        """+1 if the axis moves to larger positions, -1 otherwise."""
        return 1 if self.end > self.start else -1

    @property
    def time_for_move(self) -> float:
        return self.num * self.duration


@dataclass(frozen=True)
class Point:
    """Frames ``first .. first + num - 1`` taken standing still at
    ``positions``, each ``duration`` seconds."""

    first: int
    num: int
    positions: dict[Any, float]
    duration: float


Segment = FlyLine | Point


@dataclass(frozen=True)
class ScanPath:
    """A spec's frames, in order, as segments; plus what a consumer needs to
    put them back on the spec's grid."""

    spec: Spec[Any]
    #: Axes, slowest to fastest (the spec's order).
    axes: list[Any]
    segments: list[Segment]
    #: Frame midpoints per axis, in scan order.
    midpoints: dict[Any, np.ndarray]
    durations: np.ndarray
    #: The spec's dimensions' lengths, slowest first (``Spec.shape()``).
    shape: tuple[int, ...]
    #: Whether each dimension of :attr:`shape` is snaked.
    snaking: tuple[bool, ...]

    @property
    def frames(self) -> int:
        return len(self.durations)

    @property
    def lines(self) -> list[FlyLine]:
        return [s for s in self.segments if isinstance(s, FlyLine)]

    @property
    def points(self) -> list[Point]:
        return [s for s in self.segments if isinstance(s, Point)]

    @property
    def flown_axes(self) -> list[Any]:
        """Axes that fly in some line, in order of first flight."""
        seen: list[Any] = []
        for line in self.lines:
            if line.axis not in seen:
                seen.append(line.axis)
        return seen


def scan_path(spec: Spec[Any]) -> ScanPath:
    """Cut ``spec``'s frames into :class:`FlyLine` and :class:`Point` segments.

    Raises :class:`PlanArgumentError` if the spec has no frames or no duration
    (``Fly(0.01 @ spec)`` gives every frame 10 ms).
    """
    if not isinstance(spec, Spec):
        raise PlanArgumentError(
            f"spec must be a scanspec Spec (e.g. Fly(0.01 @ Line(x, 0, 1, 11))), "
            f"got {spec!r}"
        )
    try:
        dims = spec.calculate()
    except Exception as err:  # scanspec's own checks, e.g. a bad Zip
        raise PlanArgumentError(f"scanspec cannot calculate {spec!r}: {err}") from err
    frames = Path(dims).consume()
    if len(frames) == 0:
        raise PlanArgumentError(f"{spec!r} has no frames")
    if frames.duration is None:
        raise PlanArgumentError(
            "the spec gives no time per frame: write it with a duration, e.g. "
            "Fly(0.01 @ spec) for 10 ms frames (the PandA times every frame)"
        )
    durations = np.asarray(frames.duration, dtype=np.float64)
    if not np.all(np.isfinite(durations)) or np.any(durations <= 0):
        raise PlanArgumentError(
            f"frame durations must be positive and finite, got {durations.min()!r}"
        )
    axes = list(frames.axes())
    if not axes:
        raise PlanArgumentError(
            "the spec moves no axis: use time_scan to take frames in one place"
        )
    lower = {a: np.asarray(frames.lower[a], dtype=np.float64) for a in axes}
    upper = {a: np.asarray(frames.upper[a], dtype=np.float64) for a in axes}
    mid = {a: np.asarray(frames.midpoints[a], dtype=np.float64) for a in axes}
    gap = np.asarray(frames.gap, dtype=np.bool_).copy()
    gap[0] = True
    starts = np.flatnonzero(gap)
    ends = np.append(starts[1:], len(gap))
    cutter = _Frames(axes, lower, upper, mid, durations)
    segments: list[Segment] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        segments.extend(cutter.cut(s, e))
    return ScanPath(
        spec=spec,
        axes=axes,
        segments=segments,
        midpoints=mid,
        durations=durations,
        shape=tuple(len(d) for d in dims),
        snaking=tuple(isinstance(d, SnakedDimension) for d in dims),
    )


@dataclass(frozen=True)
class _Frames:
    """The path's frames as arrays, per axis, with the cutting helpers."""

    axes: Sequence[Any]
    lower: dict[Any, np.ndarray]
    upper: dict[Any, np.ndarray]
    mid: dict[Any, np.ndarray]
    durations: np.ndarray

    def point(self, i: int, j: int) -> Point:
        """Frames ``i..j-1``, standing still at frame ``i``'s midpoints."""
        return Point(
            first=i,
            num=j - i,
            positions={a: float(self.mid[a][i]) for a in self.axes},
            duration=float(self.durations[i]),
        )

    def cut(self, s: int, e: int) -> list[Segment]:
        """Frames ``s..e-1`` (no gap between them) as segments."""
        lower, upper, mid = self.lower, self.upper, self.mid
        moving = [
            a
            for a in self.axes
            if np.any(lower[a][s:e] != upper[a][s:e]) or np.ptp(mid[a][s:e]) > 0
        ]
        if len(moving) == 1:
            return self._fly_runs(s, e, moving[0])
        # Standing still (a step dimension), or several axes at once: points,
        # consecutive frames at the same place (and duration) merged.
        same = self.durations[s + 1 : e] == self.durations[s : e - 1]
        for a in self.axes:
            same &= mid[a][s + 1 : e] == mid[a][s : e - 1]
        firsts = [s, *(np.flatnonzero(~same) + s + 1).tolist(), e]
        return [self.point(i, j) for i, j in pairwise(firsts)]

    def _fly_runs(self, s: int, e: int, axis: Any) -> list[Segment]:
        """Frames ``s..e-1`` on which only ``axis`` moves, as lines of constant
        velocity: a line goes on while each frame starts where the one before
        ended, with the width and duration of the line's first frame (to
        :data:`_RTOL`). Vectorised: a loop per line, not per frame."""
        lower, upper, durations = self.lower[axis], self.upper[axis], self.durations
        width = upper - lower
        # Where a frame does not start where the one before ended.
        apart = np.flatnonzero(lower[s + 1 : e] != upper[s : e - 1]) + s + 1
        runs: list[Segment] = []
        for first, stop in pairwise([s, *apart.tolist(), e]):
            i = first
            while i < stop:
                j = _end_of_run(width, durations, i, stop)
                runs.append(self._run(i, j, axis, width[i]))
                i = j
        return runs

    def _run(self, i: int, j: int, axis: Any, width: float) -> Segment:
        """Frames ``i..j-1`` of one velocity: a line (a point if standing)."""
        if width == 0:  # frames standing still within a flown segment
            return self.point(i, j)
        return FlyLine(
            first=i,
            num=j - i,
            axis=axis,
            start=float(self.lower[axis][i]),
            end=float(self.upper[axis][j - 1]),
            duration=float(self.durations[i]),
            fixed={a: float(self.mid[a][i]) for a in self.axes if a is not axis},
        )


def _end_of_run(width: np.ndarray, durations: np.ndarray, i: int, stop: int) -> int:
    """The first frame from ``i`` (before ``stop``) whose width or duration is
    not frame ``i``'s to :data:`_RTOL`, else ``stop``. Looked for in windows
    that double, so a path of one-frame lines costs no more than a long
    line."""
    k, window = i + 1, 64
    while k < stop:
        end = min(k + window, stop)
        off = ~(
            np.isclose(width[k:end], width[i], rtol=_RTOL, atol=0)
            & np.isclose(durations[k:end], durations[i], rtol=_RTOL, atol=0)
        )
        if off.any():
            return k + int(np.argmax(off))
        k, window = end, window * 2
    return stop
