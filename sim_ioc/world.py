"""The simulated world the PandA, motor and detector share.

Pure and clock-free: positions are functions of the FPGA tick count, so the
same world drives the real-time simulator and deterministic unit tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TICKS_PER_SECOND = 125_000_000


@dataclass(frozen=True)
class Segment:
    """Constant-velocity motion from tick ``t0`` (position ``p0``) to ``t1``."""

    t0: int
    p0: float
    velocity: float  # units per tick
    t1: float  # math.inf for an open-ended move

    def position(self, ts: int) -> float:
        return self.p0 + self.velocity * (min(ts, self.t1) - self.t0)


@dataclass
class Axis:
    """A motion axis whose position is a piecewise-linear function of time."""

    name: str
    segments: list[Segment] = field(default_factory=list)
    #: Bumped whenever the motion is replanned, so readers can notice.
    generation: int = 0

    def position(self, ts: int) -> float:
        seg = self.segment_at(ts)
        return 0.0 if seg is None else seg.position(ts)

    def segment_at(self, ts: int) -> Segment | None:
        found = None
        for seg in self.segments:
            if seg.t0 <= ts:
                found = seg
            else:
                break
        return found

    def set_motion(self, ts: int, segments: list[Segment]) -> None:
        """Replace the motion from tick ``ts`` on."""
        keep = [s for s in self.segments if s.t0 < ts]
        if keep:
            last = keep[-1]
            if last.t1 > ts:
                keep[-1] = Segment(last.t0, last.p0, last.velocity, ts)
        self.segments = keep + segments
        # Forget history older than the segment in force: it will never be read.
        while len(self.segments) > 1 and self.segments[1].t0 <= ts:
            self.segments.pop(0)
        self.generation += 1

    def move(self, ts: int, target: float, speed: float) -> int:
        """Move at constant ``speed`` (units/s) to ``target``; returns the
        tick the move ends."""
        start = self.position(ts)
        if speed <= 0:
            raise ValueError("speed must be positive")
        duration = abs(target - start) / speed * TICKS_PER_SECOND
        t1 = ts + math.ceil(duration)
        velocity = 0.0 if t1 == ts else (target - start) / (t1 - ts)
        self.set_motion(ts, [Segment(ts, start, velocity, t1)])
        return t1

    def set_position(self, ts: int, position: float) -> None:
        self.set_motion(ts, [Segment(ts, position, 0.0, math.inf)])


@dataclass
class Encoder:
    """Quantises an axis into encoder counts: ``floor(pos * resolution + offset)``.

    ``resolution`` is counts per axis unit.
    """

    axis: Axis
    resolution: float = 1.0
    offset: float = 0.0

    def count(self, ts: int) -> int:
        return math.floor(self.axis.position(ts) * self.resolution + self.offset + 1e-9)

    def next_change(self, ts: int) -> int | None:
        """The first tick after ``ts`` at which :meth:`count` differs, if any."""
        seg = self.axis.segment_at(ts)
        if seg is None or seg.velocity == 0 or ts >= seg.t1:
            nxt = [s.t0 for s in self.axis.segments if s.t0 > ts]
            return nxt[0] if nxt else None
        now = self.count(ts)
        boundary = now + 1 if seg.velocity > 0 else now
        # Position where the count becomes `boundary` (rising) or drops below
        # `now` (falling), then the tick at which the segment reaches it.
        target = (boundary - self.offset) / self.resolution
        rate = seg.velocity
        t = seg.t0 + (target - seg.p0) / rate
        tick = max(ts + 1, math.ceil(t))
        # Float rounding: step until the count really differs (at most a few).
        for _ in range(4):
            if tick > seg.t1:
                break
            if self.count(tick) != now:
                return tick
            tick += 1
        later = [s.t0 for s in self.axis.segments if s.t0 > ts]
        return later[0] if later else None


@dataclass
class World:
    """Everything outside the PandA that its inputs observe."""

    axes: dict[str, Axis] = field(default_factory=dict)

    def axis(self, name: str) -> Axis:
        if name not in self.axes:
            self.axes[name] = Axis(name, [Segment(0, 0.0, 0.0, math.inf)])
        return self.axes[name]
