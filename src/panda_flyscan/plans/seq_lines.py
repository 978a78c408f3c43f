"""SEQ table lines for a path of any length, generated as they are needed.

Pure (no devices, no I/O). :class:`StreamedProgram` is :func:`.seq_program`'s
counterpart for the firmware's *streamed* tables (``SEQ1.TABLE<<``, see
:mod:`panda_flyscan.devices.table_stream`): the table is not built whole but
yielded in chunks of encoded lines (:meth:`StreamedProgram.chunks`), so
memory does not grow with the number of frames and no 4096-line limit
applies.

Every frame of a flown line is two lines, so that any frame can be the first
one after a pause:

* a *gate* line waits for ``BITA=1`` (the plan's "run" bit, BITS.A) and lasts
  one prescaled unit with every output low. Lowering BITS.A stops the scan at
  the next frame boundary: the frame in progress finishes, the next one does
  not start.
* a *frame* line waits for the flown axis' encoder to reach the frame's own
  trigger position (``POSx>=``/``POSx<=``), then OUTA is high for the
  exposure and low for a little less than the rest of the frame, so the next
  gate and frame lines are waiting before the encoder gets there. Each frame
  is triggered at its own position, whatever the speed was before: after a
  pause the motor runs up again and the SEQ, still waiting on the next frame
  line, fires it where it belongs.

A line starts with the same *guard* line as :func:`.seq_program`'s (the
encoder on the run-up side). A point is, as there, a line waiting for
``BITA=0`` then its frames, each waiting for ``BITA=1`` (the trigger is tested
on every repeat, so BITS.A low pauses between a point's frames too).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from ophyd_async.fastcs.panda import SeqTrigger

from ._flyers import MAX_ROW_REPEATS, TICK
from .errors import PlanArgumentError
from .scan_path import FlyLine, Point, ScanPath
from .seq_program import (
    _POS_TRIGGERS,
    AxisFacts,
    LineMotion,
    _check_line,
    _check_positions,
    _phases,
    _pos_inputs,
)

__all__ = [
    "LINE_WORDS",
    "TABLE_LINE_MODULO",
    "AwaitedTrigger",
    "StreamedProgram",
    "encode_lines",
    "streamed_program",
]

#: 32-bit words per SEQ table line.
LINE_WORDS = 4
#: TRIGGER codes as the firmware numbers them (seq.block.ini), in enum order.
_TRIGGER_CODE = {t: i for i, t in enumerate(SeqTrigger)}
#: Lines per chunk :meth:`StreamedProgram.chunks` yields by default: one
#: buffer of a streamed table, a ring's worth (fewer, larger appends cost the
#: feeder less per line).
CHUNK_LINES = 4096
#: ``SEQ.TABLE_LINE`` is a 19-bit count (from 1) that, for a streamed table,
#: goes on across buffers and wraps.
TABLE_LINE_MODULO = 1 << 19
#: SEQ states in which it waits for its line's trigger (seq.block.ini).
WAIT_TRIGGER = "WAIT_TRIGGER"
#: ... and in which it is running a line's phases.
_PHASES = ("PHASE1", "PHASE2")


def encode_lines(
    repeats: np.ndarray,
    trigger: np.ndarray,
    position: np.ndarray,
    time1: np.ndarray,
    time2: np.ndarray,
) -> np.ndarray:
    """Lines as the firmware reads them: an ``(n, 4)`` uint32 array.

    ``trigger`` holds firmware codes (0-12); OUTA is high in phase 1 when
    ``time1`` is non-zero, every other output low. Word 0: REPEATS (bits
    0-15), TRIGGER (16-19), OUTA1 (20); word 1: POSITION; words 2, 3: TIME1,
    TIME2.
    """
    n = len(repeats)
    words = np.empty((n, LINE_WORDS), np.uint32)
    outa1 = (np.asarray(time1) > 0).astype(np.uint32)
    words[:, 0] = (
        np.asarray(repeats, np.uint32)
        | (np.asarray(trigger, np.uint32) << 16)
        | (outa1 << 20)
    )
    words[:, 1] = np.asarray(position, np.int64).astype(np.int32).view(np.uint32)
    words[:, 2] = time1
    words[:, 3] = time2
    return words


#: How far behind the motor's readback may be (s): a motor record polls its
#: controller every 50-100 ms.
READBACK_LAG = 0.1


@dataclass(frozen=True)
class AwaitedTrigger:
    """A frame the SEQ waits for the encoder to reach (its gate passed)."""

    axis: Any
    #: The frame (from 0 in the path).
    frame: int
    #: Where it triggers (user units), and the direction of flight (+1/-1).
    position: float
    direction: int
    #: How far short of it the axis' readback must be for a stop now to
    #: leave it short (user units): deceleration at the line's velocity,
    #: the readback's lag, and a frame's width of margin.
    stopping: float

    def stoppable(self, readback: float) -> bool:
        """Whether the axis, read at ``readback``, stops short of the frame."""
        return (self.position - readback) * self.direction > self.stopping


@dataclass(frozen=True)
class _Span:
    """The table lines of one segment: from ``first_line``, ``lines`` long."""

    first_line: int
    lines: int


@dataclass(frozen=True)
class StreamedProgram:
    """A whole path's SEQ lines, generated on demand, and how they map back
    to frames."""

    path: ScanPath
    facts: Mapping[Any, AxisFacts]
    prescale_ticks: int
    #: POS input -> axis (``{"posa": x}``).
    pos_inputs: dict[str, Any]
    #: Each line's motion, in scan order.
    motions: list[LineMotion]
    #: Per distinct frame duration (s): (live, dead) in prescaled units.
    phases: dict[float, tuple[int, int]]
    spans: tuple[_Span, ...]

    @property
    def lines(self) -> int:
        """Table lines of the whole path."""
        last = self.spans[-1]
        return last.first_line + last.lines

    @property
    def rows(self) -> int:
        """Table lines (rows) of the whole path, as :class:`.SeqProgram`'s."""
        return self.lines

    @cached_property
    def _motions(self) -> dict[int, LineMotion]:
        return {m.line.first: m for m in self.motions}

    @cached_property
    def _first_lines(self) -> np.ndarray:
        return np.array([s.first_line for s in self.spans])

    def _span_index(self, line: int) -> int:
        """The segment whose lines hold ``line`` (the first for a line before)."""
        return max(int(np.searchsorted(self._first_lines, line, "right")) - 1, 0)

    def exposure(self, duration: float) -> float:
        """Seconds OUTA is high in a frame of ``duration`` seconds."""
        return self.phases[duration][0] * self.prescale_ticks * TICK

    def frames_before_line(self, line: int) -> int:
        """Frames completed when the SEQ waits at table line ``line`` (from
        0) of a flown line's gate or frame line, or a point's first line."""
        index = self._span_index(line)
        segment, span = self.path.segments[index], self.spans[index]
        if isinstance(segment, Point):
            return segment.first
        done = max(line - span.first_line - 1, 0) // 2
        return segment.first + min(done, segment.num)

    def line_of(self, table_line: int, segment: int) -> int:
        """The line (from 0) of the whole table that the SEQ's ``TABLE_LINE``
        readback (from 1, wrapping at :data:`TABLE_LINE_MODULO`) names, the SEQ
        being at or near segment ``segment`` (the one the plan is driving:
        the SEQ may be a little behind or ahead of it)."""
        near = self.spans[segment].first_line
        ahead = (table_line - 1 - near) % TABLE_LINE_MODULO
        if ahead > TABLE_LINE_MODULO // 2:
            ahead -= TABLE_LINE_MODULO
        return near + ahead

    def between_frames(self, state: str, line: int) -> bool:
        """Whether a SEQ in ``state`` at table line ``line`` (from 0) will
        fire no frame before BITS.A rises again, or before the next flown
        line's run-up: it waits at a flown frame's gate line, at a line's
        guard line or in a point, or it is not running at all. Not so while
        it runs a line's phases (a frame's exposure or the rest of it), nor
        while it waits at a frame line (its gate passed: the frame fires
        when the encoder gets there)."""
        if state in _PHASES:
            return False
        if state != WAIT_TRIGGER or not 0 <= line < self.lines:
            return True
        index = self._span_index(line)
        if isinstance(self.path.segments[index], Point):
            return True
        span = self.spans[index]
        offset = line - span.first_line
        return offset == 0 or offset % 2 == 1

    def awaited_trigger(self, state: str, line: int) -> AwaitedTrigger | None:
        """The frame a SEQ in ``state`` at table line ``line`` waits for the
        encoder to reach, its gate passed (None where it waits for no
        position: between frames, in a frame's phases)."""
        if state != WAIT_TRIGGER or not 0 <= line < self.lines:
            return None
        index = self._span_index(line)
        segment, offset = self.path.segments[index], line - self.spans[index].first_line
        if isinstance(segment, Point) or offset == 0 or offset % 2 == 1:
            return None
        motion = self._motions[segment.first]
        frame = (offset - 2) // 2
        return AwaitedTrigger(
            axis=segment.axis,
            frame=segment.first + frame,
            position=float(self._trigger_at(segment, np.array([frame]))[0]),
            direction=segment.direction,
            stopping=abs(motion.velocity)
            * (self.facts[segment.axis].acceleration_time / 2 + READBACK_LAG)
            + abs(segment.end - segment.start) / segment.num,
        )

    def _trigger_at(self, line: FlyLine, frames: np.ndarray) -> np.ndarray:
        """Where (user units) the frame lines of ``frames`` (from 0 in
        ``line``) trigger: the frame's start, plus half the dead time's
        travel so the exposure is centred on the frame."""
        _live, dead = self.phases[line.duration]
        velocity = self._motions[line.first].velocity
        half_dead = dead * self.prescale_ticks * TICK / 2 * velocity
        step = (line.end - line.start) / line.num
        return line.start + step * frames + line.direction * half_dead

    def chunks(self, chunk_lines: int = CHUNK_LINES) -> Iterator[np.ndarray]:
        """The table, in ``(n, 4)`` uint32 chunks of about ``chunk_lines``
        lines (a segment's frames are cut into chunks, never held whole)."""
        pending: list[np.ndarray] = []
        held = 0
        for segment in self.path.segments:
            for part in self._segment_lines(segment, chunk_lines):
                pending.append(part)
                held += len(part)
                if held >= chunk_lines:
                    joined = np.concatenate(pending)
                    while len(joined) >= chunk_lines:
                        yield joined[:chunk_lines]
                        joined = joined[chunk_lines:]
                    pending, held = ([joined], len(joined)) if len(joined) else ([], 0)
        if held:
            yield np.concatenate(pending)

    def _segment_lines(self, segment: Any, chunk: int) -> Iterator[np.ndarray]:
        live, dead = self.phases[segment.duration]
        if isinstance(segment, Point):
            yield encode_lines(
                np.array([1]),
                np.array([_TRIGGER_CODE[SeqTrigger.BITA_0]]),
                np.zeros(1),
                np.zeros(1),
                np.ones(1),
            )
            left = segment.num
            while left > 0:
                n = min(left, MAX_ROW_REPEATS)
                yield encode_lines(
                    np.array([n]),
                    np.array([_TRIGGER_CODE[SeqTrigger.BITA_1]]),
                    np.zeros(1),
                    np.array([live]),
                    np.array([max(dead, 1)]),
                )
                left -= n
            return
        line: FlyLine = segment
        f = self.facts[line.axis]
        motion = self._motions[line.first]
        up = (line.direction > 0) == (f.scale > 0)
        ge, le = _POS_TRIGGERS[_input_of(self.pos_inputs, line.axis)]
        guard_at = round((f.counts(motion.run_up) + f.counts(line.start)) / 2)
        yield encode_lines(
            np.array([1]),
            np.array([_TRIGGER_CODE[le if up else ge]]),
            np.array([guard_at]),
            np.zeros(1),
            np.ones(1),
        )
        # The rest of the frame, less a margin, so that the next gate and
        # frame lines wait for the encoder rather than fire late.
        rest = max(1, dead - 1 - max(1, dead // 4))
        code = _TRIGGER_CODE[ge if up else le]
        per = max(chunk // 2, 1)
        for first in range(0, line.num, per):
            k = np.arange(first, min(first + per, line.num), dtype=np.float64)
            at = self._trigger_at(line, k)
            # As seq_program: the encoder reads floor(counts), so aim half a
            # count on; POSx<=P fires as the position passes P + 1.
            aim = np.round((at - f.offset) / f.scale + 0.5).astype(np.int64)
            trig = aim if up else aim - 1
            n = len(k)
            lines = np.empty((2 * n, LINE_WORDS), np.uint32)
            lines[0::2] = encode_lines(
                np.ones(n),
                np.full(n, _TRIGGER_CODE[SeqTrigger.BITA_1]),
                np.zeros(n),
                np.zeros(n),
                np.ones(n),
            )
            lines[1::2] = encode_lines(
                np.ones(n), np.full(n, code), trig, np.full(n, live), np.full(n, rest)
            )
            yield lines


def _input_of(pos_inputs: Mapping[str, Any], axis: Any) -> str:
    return next(pos for pos, a in pos_inputs.items() if a is axis)


def _span_lines(segment: Any) -> int:
    if isinstance(segment, Point):
        return 1 + math.ceil(segment.num / MAX_ROW_REPEATS)
    return 1 + 2 * segment.num


def streamed_program(
    path: ScanPath,
    facts: Mapping[Any, AxisFacts],
    *,
    exposure: float | None = None,
) -> StreamedProgram:
    """Check the motion of ``path`` (as :func:`.seq_program` does) and
    describe its streamed table; no line is generated yet.

    Raises :class:`PlanArgumentError` naming the line or point and the fix.
    """
    pos_inputs = _pos_inputs(path, facts)
    prescale, phases = _phases({s.duration for s in path.segments}, exposure)
    for _live, dead in phases.values():
        if dead < 3:
            raise PlanArgumentError(
                f"dead time of {dead} prescaled units ({dead * prescale * TICK:g} s)"
                " between frames: a streamed table needs at least 3 (24 ns); "
                "shorten exposure= or lengthen the frames"
            )
    motions: list[LineMotion] = []
    spans: list[_Span] = []
    line_at = 0
    for segment in path.segments:
        if isinstance(segment, Point):
            _check_positions(
                f"point at frame {segment.first}", segment.positions, facts
            )
        else:
            motions.append(_check_line(segment, facts[segment.axis]))
            _check_positions(f"line at frame {segment.first}", segment.fixed, facts)
        n = _span_lines(segment)
        spans.append(_Span(line_at, n))
        line_at += n
    return StreamedProgram(
        path, facts, prescale, pos_inputs, motions, phases, tuple(spans)
    )
