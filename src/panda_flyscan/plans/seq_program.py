"""The SEQ table that times a whole :class:`~.scan_path.ScanPath`, armed once.

Pure: given the path, each axis' encoder and motion facts (:class:`AxisFacts`)
and the exposure, :func:`seq_program` checks the motion and returns the table
(:class:`SeqProgram`). One table runs the whole scan; lines and points follow
each other without re-arming:

* a :class:`~.scan_path.FlyLine` is two rows. A *guard* row waits until the
  flown axis' encoder is on the run-up side of the line (half-way into the
  run-up), so a line cannot fire on the tail of the previous one (a snake
  turns round where the next line starts, a raster passes back over it).
  Then the *frames* row waits for the encoder to reach the first frame
  (``POSx>=`` or ``POSx<=``, the flown axis on POSA/POSB/POSC) and repeats
  its time-based frame: OUTA high for the exposure, low for the rest. Each
  repeat re-tests the position, which stays past the trigger point.
* a :class:`~.scan_path.Point` is two rows: wait for ``BITA=0``, then
  repeat the frame once ``BITA=1``. The plan raises BITS.A when the motors
  have arrived and lowers it when the point's frames are captured.

The exposure is centred in each frame: the first frame is triggered half a
dead time after the line's first bound, so OUTA is high over the middle of
each frame, and the encoders averaged over OUTA (PCAP ``Mean``) read the
frame's midpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from ophyd_async.fastcs.panda import SeqTable, SeqTableInfo, SeqTrigger

from ._flyers import MAX_ROW_REPEATS, MAX_SEQ_ROWS, MAX_SEQ_TIME, TICK
from .errors import PlanArgumentError
from .scan_path import FlyLine, Point, ScanPath

__all__ = [
    "POS_INPUTS",
    "AxisFacts",
    "LineMotion",
    "SeqProgram",
    "rows_needed",
    "seq_program",
]

#: The SEQ's position inputs, in the order flown axes are given them.
POS_INPUTS: tuple[str, ...] = ("posa", "posb", "posc")
_POS_TRIGGERS = {
    "posa": (SeqTrigger.POSA_GT, SeqTrigger.POSA_LT),
    "posb": (SeqTrigger.POSB_GT, SeqTrigger.POSB_LT),
    "posc": (SeqTrigger.POSC_GT, SeqTrigger.POSC_LT),
}
#: The guard needs room between the run-up start and the first frame.
MIN_RUN_UP_COUNTS = 4


@dataclass(frozen=True)
class AxisFacts:
    """What the table needs to know about one axis (read from the devices).

    ``scale``/``offset`` are the encoder's (``position = counts * scale +
    offset``, the PandA's INENC.VAL.SCALE/OFFSET); ``limits`` the motor's
    soft limits in its user units, or None if it has none.
    """

    name: str
    inenc: int
    scale: float
    offset: float
    units: str
    max_velocity: float
    acceleration_time: float
    limits: tuple[float, float] | None
    #: The motor's VELO when the scan starts (its own speed for steps).
    velocity: float = 0.0

    def counts(self, position: float) -> float:
        """Encoder counts at ``position`` (not rounded)."""
        return (position - self.offset) / self.scale


@dataclass(frozen=True)
class LineMotion:
    """How the flown axis moves for a line: from :attr:`run_up` to
    :attr:`run_down` through the line's bounds at :attr:`velocity`."""

    line: FlyLine
    velocity: float
    run_up: float
    run_down: float


@dataclass(frozen=True)
class SeqProgram:
    """The table for a whole scan, and how it was built."""

    table: SeqTable
    #: SEQ.PRESCALE in ticks (times in the table are in these units).
    prescale_ticks: int
    #: POS input -> axis (``{"posa": x}``), to wire to the axes' encoders.
    pos_inputs: dict[str, Any]
    #: Each line's motion, in scan order.
    motions: list[LineMotion]
    #: Per distinct frame duration (s): (live, dead) in prescaled units.
    phases: dict[float, tuple[int, int]]

    @property
    def rows(self) -> int:
        return len(self.table.repeats)

    def info(self) -> SeqTableInfo:
        """The ophyd-async SEQ flyer's prepare argument (table run once)."""
        return SeqTableInfo(
            sequence_table=self.table,
            repeats=1,
            prescale_as_us=self.prescale_ticks * TICK * 1e6,
        )

    def exposure(self, duration: float) -> float:
        """Seconds OUTA is high in a frame of ``duration`` seconds."""
        return self.phases[duration][0] * self.prescale_ticks * TICK


def rows_needed(path: ScanPath) -> int:
    """Table rows for ``path`` (two per line and per point, more for
    segments of over :data:`MAX_ROW_REPEATS` frames)."""
    return sum(1 + math.ceil(s.num / MAX_ROW_REPEATS) for s in path.segments)


def _phases(
    durations: set[float], exposure: float | None
) -> tuple[int, dict[float, tuple[int, int]]]:
    """Prescale (ticks) and each duration's (live, dead) in prescaled units."""
    ticks: dict[float, tuple[int, int]] = {}
    for d in sorted(durations):
        frame = round(d / TICK)
        live = round((d / 2 if exposure is None else exposure) / TICK)
        if live < 1:
            raise PlanArgumentError(
                f"exposure {live * TICK:g} s is shorter than the PandA's 8 ns tick"
            )
        if frame - live < 1:
            raise PlanArgumentError(
                f"frame time {d:g} s is not longer than the exposure "
                f"{live * TICK:g} s: the PandA needs dead time between frames; "
                "shorten exposure= or lengthen the frames (the spec's @ duration)"
            )
        ticks[d] = (live, frame - live)
    prescale = max(1, *(math.ceil(max(v) / MAX_SEQ_TIME) for v in ticks.values()))
    return prescale, {
        d: (max(1, round(live / prescale)), max(1, round(dead / prescale)))
        for d, (live, dead) in ticks.items()
    }


def _check_line(line: FlyLine, facts: AxisFacts) -> LineMotion:
    v = line.velocity
    name, units = facts.name, facts.units
    where = f"line at frame {line.first}"
    if v > facts.max_velocity * (1 + 1e-9):
        raise PlanArgumentError(
            f"{where}: {name} would fly at {v:g} {units}/s, above its maximum "
            f"{facts.max_velocity:g} {units}/s: lengthen the frame time (the @ "
            "duration) or use fewer, closer frames"
        )
    step = abs(line.end - line.start) / line.num
    step_counts = step / abs(facts.scale)
    if step_counts < 1:
        raise PlanArgumentError(
            f"{where}: {name}'s frames are {step:g} {units} wide, "
            f"{step_counts:.3g} encoder counts at {abs(facts.scale):g} {units}/count:"
            " frames must be at least one count apart; use fewer frames"
        )
    ramp = facts.acceleration_time * v / 2 * line.direction
    run_up, run_down = line.start - ramp, line.end + ramp
    if abs(ramp) / abs(facts.scale) < MIN_RUN_UP_COUNTS:
        raise PlanArgumentError(
            f"{where}: {name}'s run-up is {abs(ramp) / abs(facts.scale):.3g} encoder "
            f"counts (acceleration time {facts.acceleration_time:g} s at {v:g} "
            f"{units}/s): the PandA needs at least {MIN_RUN_UP_COUNTS}; fly faster "
            "or set a longer acceleration time"
        )
    if facts.limits is not None:
        low, high = facts.limits
        for what, p in (("run-up start", run_up), ("run-down end", run_down)):
            if not low <= p <= high:
                raise PlanArgumentError(
                    f"{where}: {name}'s {what} {p:g} {units} is outside its limits "
                    f"{low:g}..{high:g} {units}: move the line inside by the run-up "
                    f"({abs(ramp):g} {units}) or fly slower"
                )
    return LineMotion(line, v, run_up, run_down)


def _check_positions(
    where: str, positions: Mapping[Any, float], facts: Mapping[Any, AxisFacts]
) -> None:
    for axis, p in positions.items():
        f = facts[axis]
        if f.limits is not None and not f.limits[0] <= p <= f.limits[1]:
            raise PlanArgumentError(
                f"{where}: {f.name} {p:g} {f.units} is outside its limits "
                f"{f.limits[0]:g}..{f.limits[1]:g} {f.units}"
            )


def _pos_inputs(path: ScanPath, facts: Mapping[Any, AxisFacts]) -> dict[str, Any]:
    """POS input -> flown axis (``{"posa": x}``); more than three refused."""
    flown = path.flown_axes
    if len(flown) > len(POS_INPUTS):
        raise PlanArgumentError(
            f"{len(flown)} axes fly ({', '.join(facts[a].name for a in flown)}): the "
            f"SEQ compares at most {len(POS_INPUTS)} positions (POSA/B/C); fly at "
            "most three axes in one scan"
        )
    return dict(zip(POS_INPUTS, flown, strict=False))


def seq_program(
    path: ScanPath,
    facts: Mapping[Any, AxisFacts],
    *,
    exposure: float | None = None,
    max_rows: int = MAX_SEQ_ROWS,
) -> SeqProgram:
    """Check the motion of ``path`` and build its SEQ table.

    ``facts`` has an entry per axis of the path. ``exposure`` (s) is OUTA's
    high time in every frame (default: half of each frame). Raises
    :class:`PlanArgumentError` naming the line or point and the fix.
    """
    pos_inputs = _pos_inputs(path, facts)
    rows = rows_needed(path)
    if rows > max_rows:
        most = max_rows // 2
        raise PlanArgumentError(
            f"the path has {len(path.lines)} lines and {len(path.points)} points, "
            f"{rows} SEQ rows; one SEQ table holds {max_rows} (at most {most} lines "
            "or points of up to 65535 frames each): split the scan into several "
            "runs or use fewer lines"
        )
    input_of = {axis: pos for pos, axis in pos_inputs.items()}
    prescale, phases = _phases({s.duration for s in path.segments}, exposure)
    motions: list[LineMotion] = []
    table = _TableBuilder(rows)
    for segment in path.segments:
        live, dead = phases[segment.duration]
        if isinstance(segment, Point):
            _check_positions(
                f"point at frame {segment.first}", segment.positions, facts
            )
            table.add(SeqTrigger.BITA_0, 0, 1, 0, 0)
            table.add_frames(segment.num, SeqTrigger.BITA_1, 0, live, dead)
            continue
        f = facts[segment.axis]
        motion = _check_line(segment, f)
        _check_positions(f"line at frame {segment.first}", segment.fixed, facts)
        motions.append(motion)
        # Counts increase with position when the scale is positive.
        up = (segment.direction > 0) == (f.scale > 0)
        half_dead = dead * prescale * TICK / 2 * motion.velocity
        trigger_at = f.counts(segment.start + segment.direction * half_dead)
        guard_at = (f.counts(motion.run_up) + f.counts(segment.start)) / 2
        ge, le = _POS_TRIGGERS[input_of[segment.axis]]
        # The encoder reads floor(counts): averaged over a moving exposure it
        # reads half a count low, so the window starts half a count on (in
        # counts) and the captured mean is the midpoint. POSx>=P fires when
        # the count reaches P; POSx<=P when it falls to P, i.e. as the
        # position passes P + 1.
        aim = round(trigger_at + 0.5)
        trigger = aim if up else aim - 1
        table.add(le if up else ge, round(guard_at), 1, 0, 0)
        table.add_frames(segment.num, ge if up else le, trigger, live, dead)
    return SeqProgram(table.build(), prescale, pos_inputs, motions, phases)


class _TableBuilder:
    """Rows as numpy columns (building SeqTable row by row is slow)."""

    def __init__(self, capacity: int) -> None:
        self.repeats = np.zeros(capacity, np.uint16)
        self.trigger: list[SeqTrigger] = []
        self.position = np.zeros(capacity, np.int32)
        self.time1 = np.zeros(capacity, np.uint32)
        self.outa1 = np.zeros(capacity, np.bool_)
        self.time2 = np.zeros(capacity, np.uint32)
        self.n = 0

    def add(
        self, trigger: SeqTrigger, position: int, repeats: int, live: int, dead: int
    ) -> None:
        i = self.n
        self.repeats[i] = repeats
        self.trigger.append(trigger)
        self.position[i] = position
        self.time1[i] = live
        self.outa1[i] = live > 0
        self.time2[i] = max(dead, 1)
        self.n += 1

    def add_frames(
        self, frames: int, trigger: SeqTrigger, position: int, live: int, dead: int
    ) -> None:
        """``frames`` frames; the first row waits for ``trigger``, any further
        rows (over 65535 frames) follow at once."""
        while frames > 0:
            n = min(frames, MAX_ROW_REPEATS)
            self.add(trigger, position, n, live, dead)
            frames -= n
            trigger, position = SeqTrigger.IMMEDIATE, 0

    def build(self) -> SeqTable:
        n = self.n
        zeros = np.zeros(n, np.bool_)
        return SeqTable(
            repeats=self.repeats[:n],
            trigger=self.trigger,
            position=self.position[:n],
            time1=self.time1[:n],
            outa1=self.outa1[:n],
            outb1=zeros,
            outc1=zeros,
            outd1=zeros,
            oute1=zeros,
            outf1=zeros,
            time2=self.time2[:n],
            outa2=zeros,
            outb2=zeros,
            outc2=zeros,
            outd2=zeros,
            oute2=zeros,
            outf2=zeros,
        )
