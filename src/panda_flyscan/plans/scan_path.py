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

import math
from collections.abc import Hashable, Iterator, Sequence
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
    put them back on the spec's grid. Holds no per-frame array: its size
    follows the number of segments, not of frames."""

    spec: Spec[Any]
    #: Axes, slowest to fastest (the spec's order).
    axes: list[Any]
    segments: list[Segment]
    frames: int
    #: Per axis, the lowest and highest frame midpoint.
    ranges: dict[Any, tuple[float, float]]
    #: The shortest and the longest frame (s), and all frames together.
    shortest: float
    longest: float
    duration: float
    #: The spec's dimensions' lengths, slowest first (``Spec.shape()``).
    shape: tuple[int, ...]
    #: Whether each dimension of :attr:`shape` is snaked.
    snaking: tuple[bool, ...]

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


#: Frames read from scanspec at a time: scan_path's memory follows this, not
#: the length of the path.
CHUNK_FRAMES = 65_536


def scan_path(spec: Spec[Any], *, chunk_frames: int = CHUNK_FRAMES) -> ScanPath:
    """Cut ``spec``'s frames into :class:`FlyLine` and :class:`Point` segments.

    The frames are read from scanspec ``chunk_frames`` at a time, twice: once
    to check them and find which axes move between each two gaps, once to
    cut them. Raises :class:`PlanArgumentError` if the spec has no frames or
    no duration (``Fly(0.01 @ spec)`` gives every frame 10 ms).
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
    survey = _Survey()
    for chunk in _chunks(dims, chunk_frames):
        survey.add(chunk)
    survey.check(spec)
    cutter = _Cutter(survey.axes, survey.moving)
    for chunk in _chunks(dims, chunk_frames):
        cutter.add(chunk)
    return ScanPath(
        spec=spec,
        axes=survey.axes,
        segments=cutter.finish(),
        frames=survey.frames,
        ranges={a: (lo, hi) for a, (lo, hi) in survey.ranges.items()},
        shortest=survey.shortest,
        longest=survey.longest,
        duration=survey.duration,
        shape=tuple(len(d) for d in dims),
        snaking=tuple(isinstance(d, SnakedDimension) for d in dims),
    )


@dataclass(frozen=True)
class _Chunk:
    """Frames ``first .. first + len - 1`` of the path, as arrays."""

    first: int
    lower: dict[Any, np.ndarray]
    upper: dict[Any, np.ndarray]
    mid: dict[Any, np.ndarray]
    durations: np.ndarray | None
    #: True where a frame does not follow on from the one before (the path's
    #: first frame included).
    gap: np.ndarray

    def __len__(self) -> int:
        return len(self.gap)

    def pieces(self) -> Iterator[tuple[int, int, bool]]:
        """``(i, j, new)``: frames ``i..j-1`` lie between two gaps; ``new``
        if frame ``i`` starts a block (else it goes on from the last chunk)."""
        starts = np.flatnonzero(self.gap).tolist()
        for i, j in pairwise([0, *starts, len(self)]):
            if i < j:
                yield i, j, bool(self.gap[i])


def _chunks(dims: list[Any], size: int) -> Iterator[_Chunk]:
    path = Path(dims)
    first = 0
    while len(path):
        frames = path.consume(size)
        axes = list(frames.axes())
        gap = np.asarray(frames.gap, dtype=np.bool_).copy()
        if first == 0:
            gap[0] = True
        yield _Chunk(
            first=first,
            lower={a: np.asarray(frames.lower[a], np.float64) for a in axes},
            upper={a: np.asarray(frames.upper[a], np.float64) for a in axes},
            mid={a: np.asarray(frames.midpoints[a], np.float64) for a in axes},
            durations=None
            if frames.duration is None
            else np.asarray(frames.duration, np.float64),
            gap=gap,
        )
        first += len(gap)


class _Survey:
    """The first reading: the frames' checks and sums, and, between each two
    gaps (a *block*), which axes move."""

    def __init__(self) -> None:
        self.axes: list[Any] = []
        self.frames = 0
        self.shortest, self.longest, self.duration = math.inf, 0.0, 0.0
        self.has_duration = True
        self.ranges: dict[Any, list[float]] = {}
        #: Per block, from its first frame: the axes that move in it.
        self.moving: dict[int, list[Any]] = {}
        self._block = -1
        self._still: dict[Any, bool] = {}
        self._span: dict[Any, list[float]] = {}

    def add(self, chunk: _Chunk) -> None:
        if not self.axes:
            self.axes = list(chunk.mid)
            self.ranges = {a: [math.inf, -math.inf] for a in self.axes}
        self.frames += len(chunk)
        if chunk.durations is None:
            self.has_duration = False
        else:
            d = chunk.durations
            if not np.all(np.isfinite(d)) or np.any(d <= 0):
                raise PlanArgumentError(
                    f"frame durations must be positive and finite, got {d.min()!r}"
                )
            self.shortest = min(self.shortest, float(d.min()))
            self.longest = max(self.longest, float(d.max()))
            self.duration += float(d.sum())
        for a in self.axes:
            r = self.ranges[a]
            r[0] = min(r[0], float(chunk.mid[a].min()))
            r[1] = max(r[1], float(chunk.mid[a].max()))
        for i, j, new in chunk.pieces():
            if new:
                self._close()
                self._block = chunk.first + i
                self._still = dict.fromkeys(self.axes, True)
                self._span = {a: [math.inf, -math.inf] for a in self.axes}
            for a in self.axes:
                lower, upper, mid = (
                    chunk.lower[a][i:j],
                    chunk.upper[a][i:j],
                    chunk.mid[a][i:j],
                )
                self._still[a] &= bool(np.all(lower == upper))
                span = self._span[a]
                span[0] = min(span[0], float(mid.min()))
                span[1] = max(span[1], float(mid.max()))

    def _close(self) -> None:
        if self._block >= 0:
            self.moving[self._block] = [
                a
                for a in self.axes
                if not self._still[a] or self._span[a][1] > self._span[a][0]
            ]

    def check(self, spec: Spec[Any]) -> None:
        """Close the last block; raise what the whole path shows wrong."""
        self._close()
        if self.frames == 0:
            raise PlanArgumentError(f"{spec!r} has no frames")
        if not self.has_duration:
            raise PlanArgumentError(
                "the spec gives no time per frame: write it with a duration, e.g. "
                "Fly(0.01 @ spec) for 10 ms frames (the PandA times every frame)"
            )
        if not self.axes:
            raise PlanArgumentError(
                "the spec moves no axis: use time_scan to take frames in one place"
            )


@dataclass
class _Open:
    """The segment being cut, still open at the end of a chunk."""

    first: int
    num: int
    #: Flown: the axis, its first frame's width, and where its last frame ends.
    axis: Any | None
    width: float
    end: float
    start: float
    duration: float
    #: Every axis' midpoint at the first frame.
    positions: dict[Any, float]

    def segment(self) -> Segment:
        if self.axis is None or self.width == 0:
            # Standing: a point (so is a standing frame within a flown block).
            return Point(self.first, self.num, self.positions, self.duration)
        return FlyLine(
            first=self.first,
            num=self.num,
            axis=self.axis,
            start=self.start,
            end=self.end,
            duration=self.duration,
            fixed={a: p for a, p in self.positions.items() if a is not self.axis},
        )


class _Cutter:
    """The second reading: chunks in, segments out. In a block where one axis
    moves, lines of constant velocity: a line goes on while each frame
    starts where the one before ended, with the width and duration of the
    line's first frame (to :data:`_RTOL`). In a block where none or several
    move, points: consecutive frames at the same place and of the same
    duration merged. Vectorised: a loop per segment, not per frame."""

    def __init__(self, axes: Sequence[Any], moving: dict[int, list[Any]]) -> None:
        self.axes, self.moving = list(axes), moving
        self.segments: list[Segment] = []
        self._open: _Open | None = None
        self._axis: Any | None = None  # the block's flown axis, if one

    def add(self, chunk: _Chunk) -> None:
        for i, j, new in chunk.pieces():
            if new:
                self._close()
                moving = self.moving[chunk.first + i]
                self._axis = moving[0] if len(moving) == 1 else None
            if self._axis is None:
                self._points(chunk, i, j)
            else:
                self._line(chunk, i, j, self._axis)

    def finish(self) -> list[Segment]:
        self._close()
        return self.segments

    def _close(self) -> None:
        if self._open is not None:
            self.segments.append(self._open.segment())
            self._open = None

    def _start(self, chunk: _Chunk, k: int, axis: Any | None) -> _Open:
        assert chunk.durations is not None
        lower = chunk.lower[axis][k] if axis is not None else 0.0
        upper = chunk.upper[axis][k] if axis is not None else 0.0
        self._close()
        self._open = _Open(
            first=chunk.first + k,
            num=0,
            axis=axis,
            width=float(upper - lower),
            end=float(upper),
            start=float(lower),
            duration=float(chunk.durations[k]),
            positions={a: float(chunk.mid[a][k]) for a in self.axes},
        )
        return self._open

    def _points(self, chunk: _Chunk, i: int, j: int) -> None:
        assert chunk.durations is not None
        d = chunk.durations[i:j]
        # Frame k is frame k-1's place and duration (the first: the open
        # point's, which all its frames share).
        same = np.empty(j - i, np.bool_)
        same[1:] = d[1:] == d[:-1]
        same[0] = self._open is not None and d[0] == self._open.duration
        for a in self.axes:
            m = chunk.mid[a][i:j]
            same[1:] &= m[1:] == m[:-1]
            same[0] &= self._open is not None and m[0] == self._open.positions[a]
        on = bool(same[0])  # the first frames go on with the open point
        firsts: list[int] = np.flatnonzero(~same).tolist()
        bounds: list[int] = [*([0] if on else []), *firsts, j - i]
        for k, stop in pairwise(bounds):
            run = self._open if k == 0 and on else self._start(chunk, i + k, None)
            assert run is not None
            run.num += stop - k

    def _line(self, chunk: _Chunk, i: int, j: int, axis: Any) -> None:
        assert chunk.durations is not None
        lower, upper = chunk.lower[axis][i:j], chunk.upper[axis][i:j]
        durations = chunk.durations[i:j]
        width = upper - lower
        before = np.empty(j - i)
        before[1:] = upper[:-1]
        before[0] = self._open.end if self._open is not None else np.nan
        # Where a frame does not start where the one before ended.
        apart = np.flatnonzero(lower != before)
        n = j - i
        k = 0
        while k < n:
            run = self._open
            if run is None or (apart.size and apart[0] == k):
                run = self._start(chunk, i + k, axis)
                stop = k + 1
            else:
                stop = k
            # On, to the next frame apart or unlike the run's first.
            apart = apart[np.searchsorted(apart, stop) :]
            end = int(apart[0]) if apart.size else n
            stop = _end_of_run(width, durations, run.width, run.duration, stop, end)
            run.num += stop - k
            run.end = float(upper[stop - 1])
            if stop < n:
                self._close()
            k = stop


def _end_of_run(
    width: np.ndarray,
    durations: np.ndarray,
    run_width: float,
    run_duration: float,
    k: int,
    stop: int,
) -> int:
    """The first frame from ``k`` (before ``stop``) whose width or duration is
    not the run's to :data:`_RTOL`, else ``stop``. Looked for in windows that
    double, so a path of one-frame lines costs no more than a long line."""
    window = 64
    while k < stop:
        end = min(k + window, stop)
        off = ~(
            np.isclose(width[k:end], run_width, rtol=_RTOL, atol=0)
            & np.isclose(durations[k:end], run_duration, rtol=_RTOL, atol=0)
        )
        if off.any():
            return k + int(np.argmax(off))
        k, window = end, window * 2
    return stop
