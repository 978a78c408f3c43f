"""The simulated world the PandA, motor and detector share.

Pure and clock-free: positions are functions of the FPGA tick count, so the
same world drives the real-time simulator and deterministic unit tests. An axis
moves in segments of constant velocity or, for the simulated motor's
trapezoidal moves (:func:`trapezoid`, :func:`stopping`), constant acceleration.

An axis also carries the fault injected on the motor that drives it
(:class:`MotorFault`, set by ``*SIM.MOTOR_FAULT``): a stall stops it at once,
a limit switch stops it (:meth:`Axis.set_fault`) and cuts short the motor's
later moves into the switch (:func:`limit_stop`). What the motor record shows
of it is :mod:`sim_ioc.motor`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

TICKS_PER_SECOND = 125_000_000


@dataclass(frozen=True)
class Segment:
    """Motion from tick ``t0`` (position ``p0``) to ``t1``: constant velocity, or
    constant acceleration when ``acceleration`` is set.

    An accelerating segment must not reverse within itself (the velocity keeps
    one sign between ``t0`` and ``t1``) and must end (``t1`` finite): the
    trapezoidal profiles below are built that way.
    """

    t0: int
    p0: float
    velocity: float  # units per tick, at t0
    t1: float  # math.inf for an open-ended move
    acceleration: float = 0.0  # units per tick squared

    def position(self, ts: int) -> float:
        dt = min(ts, self.t1) - self.t0
        if self.acceleration:
            return self.p0 + dt * (self.velocity + 0.5 * self.acceleration * dt)
        return self.p0 + self.velocity * dt

    def velocity_at(self, ts: int) -> float:
        """Velocity (units per tick) at tick ``ts``: zero once the segment ended."""
        if ts >= self.t1:
            return 0.0
        return self.velocity + self.acceleration * (ts - self.t0)


class FaultKind(StrEnum):
    """The faults ``*SIM.MOTOR_FAULT.<axis>=<kind>`` injects on an axis's motor."""

    #: No fault: the motor works.
    NONE = "none"
    #: Stuck where it is, and never reports done (a stuck amplifier).
    STALL = "stall"
    #: Stuck where it is; the controller detects it and reports done.
    STALL_REPORTED = "stall_reported"
    #: On the limit switch at the axis's positive (counts increasing) end.
    HIGH_LIMIT = "high_limit"
    #: On the limit switch at the negative end.
    LOW_LIMIT = "low_limit"


@dataclass(frozen=True)
class MotorFault:
    """The fault on the motor that drives an axis.

    For a limit switch, ``trip`` is where it is, in axis units: the switch is
    on at positions at or beyond it (``>= trip`` for the high one, ``<=`` for
    the low one), so the motor leaves it by moving back past ``trip``, and
    runs into it again if it comes back.
    """

    kind: FaultKind = FaultKind.NONE
    trip: float = 0.0

    @property
    def stalled(self) -> bool:
        """Whether the motor cannot move at all."""
        return self.kind in (FaultKind.STALL, FaultKind.STALL_REPORTED)

    @property
    def limit_sign(self) -> int:
        """+1 for the high limit switch, -1 for the low one, 0 without one."""
        if self.kind is FaultKind.HIGH_LIMIT:
            return 1
        return -1 if self.kind is FaultKind.LOW_LIMIT else 0

    def switch_on(self, position: float) -> bool:
        """Whether the limit switch (if any) is on at ``position``."""
        sign = self.limit_sign
        return sign != 0 and (position - self.trip) * sign >= 0


@dataclass
class Axis:
    """A motion axis whose position is a piecewise-linear function of time."""

    name: str
    segments: list[Segment] = field(default_factory=list)
    #: Bumped whenever the motion is replanned, so readers can notice.
    generation: int = 0
    #: The fault injected on its motor (:meth:`set_fault`).
    fault: MotorFault = MotorFault()
    #: How hard a limit switch stops it (units/s², ``math.inf``: at once):
    #: its motor sets it to the deceleration of each move it plans, so a
    #: switch injected mid-move stops it as its motor would.
    limit_deceleration: float = math.inf

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

    def set_fault(self, ts: int, kind: FaultKind) -> None:
        """Inject ``kind`` on the axis's motor from tick ``ts``.

        A stall stops the axis at once, where it is. A limit switch
        decelerates it at :attr:`limit_deceleration`, and is placed so that
        the axis comes to rest on it: at the position of tick ``ts`` or, if
        the axis was moving away from that end, where it comes to rest. None
        clears the fault and leaves the motion as it is (at rest, unless a
        ``*SIM`` move moves it).
        """
        if kind is FaultKind.NONE:
            self.fault = MotorFault()
            return
        if kind in (FaultKind.STALL, FaultKind.STALL_REPORTED):
            self.fault = MotorFault(kind)
            self.set_motion(ts, stopping(self, ts, math.inf))
            return
        segments = stopping(self, ts, self.limit_deceleration)
        here, rest = self.position(ts), segments[-1].p0
        trip = min(here, rest) if kind is FaultKind.HIGH_LIMIT else max(here, rest)
        self.fault = MotorFault(kind, trip)
        self.set_motion(ts, segments)

    def velocity(self, ts: int) -> float:
        """Velocity at tick ``ts``, in units per tick."""
        seg = self.segment_at(ts)
        return 0.0 if seg is None else seg.velocity_at(ts)

    def end_of_motion(self) -> int | None:
        """The tick from which the axis rests; None while it moves for ever."""
        if not self.segments:
            return 0
        last = self.segments[-1]
        if last.velocity == 0 and not last.acceleration:
            return last.t0
        return None if math.isinf(last.t1) else math.ceil(last.t1)


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
        if seg is not None and seg.acceleration and ts < seg.t1:
            return self._next_change_accelerating(ts, seg)
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
        found = self._first_differing(ts, now, math.ceil(t), seg.t1)
        if found is not None:
            return found
        later = [s.t0 for s in self.axis.segments if s.t0 > ts]
        return later[0] if later else None

    def _first_differing(
        self, ts: int, now: int, estimate: int, end: float
    ) -> int | None:
        """The first tick after ``ts`` whose count differs from ``now``, near
        ``estimate`` (computed in floats, so possibly a tick or two off either
        way), or None if there is none up to ``end``."""
        tick = max(ts + 1, estimate)
        # Float rounding: step until the count really differs (at most a few)...
        for _ in range(4):
            if tick > end:
                return None
            if self.count(tick) != now:
                # ...and back while it already differed (a crossing that
                # falls exactly on a tick can be estimated one tick late).
                while tick - 1 > ts and self.count(tick - 1) != now:
                    tick -= 1
                return tick
            tick += 1
        return None

    def _next_change_accelerating(self, ts: int, seg: Segment) -> int | None:
        """:meth:`next_change` within a constant-acceleration segment."""
        now = self.count(ts)
        # Which way the segment goes (it never reverses within itself).
        direction = 1.0 if seg.position(int(seg.t1)) >= seg.p0 else -1.0
        boundary = now + 1 if direction > 0 else now
        target = (boundary - self.offset - 1e-9) / self.resolution
        # Solve p0 + v*dt + a*dt^2/2 = target for the first dt, in the form
        # that does not cancel when the acceleration is tiny.
        dist = target - seg.p0
        disc = seg.velocity * seg.velocity + 2.0 * seg.acceleration * dist
        later = [s.t0 for s in self.axis.segments if s.t0 > ts]
        if disc < 0:
            return later[0] if later else None
        denominator = seg.velocity + direction * math.sqrt(disc)
        dt = 0.0 if denominator == 0 else 2.0 * dist / denominator
        found = self._first_differing(ts, now, math.ceil(seg.t0 + dt), seg.t1)
        if found is not None:
            return found
        return later[0] if later else None


# -- trapezoidal velocity profiles ------------------------------------------------


def trapezoid(
    t0: int, p0: float, target: float, speed: float, acceleration: float
) -> list[Segment]:
    """Segments of a move from rest at ``p0`` (tick ``t0``) to rest at ``target``.

    The axis accelerates at ``acceleration`` (units/s², ``math.inf`` for an
    instant start) to ``speed`` (units/s), cruises, and decelerates as hard;
    a move too short to reach ``speed`` is a triangle. Every phase lasts a
    whole number of ticks, so the speed and acceleration are adjusted (by
    about a tick's worth) to land exactly on ``target`` at a whole tick. The
    last segment rests at ``target`` for ever.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    if acceleration <= 0:
        raise ValueError("acceleration must be positive")
    distance = abs(target - p0)
    if distance == 0:
        return [Segment(t0, target, 0.0, math.inf)]
    sign = 1.0 if target > p0 else -1.0
    if math.isinf(acceleration):
        # Constant velocity, as Axis.move.
        ticks = max(1, math.ceil(distance / speed * TICKS_PER_SECOND))
        return [
            Segment(t0, p0, sign * distance / ticks, t0 + ticks),
            Segment(t0 + ticks, target, 0.0, math.inf),
        ]
    ramp_s = speed / acceleration  # seconds to reach speed
    if distance >= speed * ramp_s:  # room to cruise
        ramp = max(1, round(ramp_s * TICKS_PER_SECOND))
        cruise = round((distance / speed - ramp_s) * TICKS_PER_SECOND)
    else:  # triangle: half the distance accelerating, half decelerating
        ramp = max(1, round(math.sqrt(distance / acceleration) * TICKS_PER_SECOND))
        cruise = 0
    # Accelerating and decelerating cover v*ramp between them, cruising v*cruise.
    v = distance / (ramp + cruise)  # units per tick
    a = v / ramp  # units per tick squared
    p1 = p0 + sign * 0.5 * v * ramp
    p2 = p1 + sign * v * cruise
    t1, t2, t3 = t0 + ramp, t0 + ramp + cruise, t0 + 2 * ramp + cruise
    segments = [Segment(t0, p0, 0.0, t1, sign * a)]
    if cruise:
        segments.append(Segment(t1, p1, sign * v, t2))
    segments.append(Segment(t2, p2, sign * v, t3, -sign * a))
    segments.append(Segment(t3, target, 0.0, math.inf))
    return segments


def stopping(axis: Axis, ts: int, acceleration: float) -> list[Segment]:
    """Segments that bring ``axis`` to rest from its motion at tick ``ts``,
    decelerating at ``acceleration`` (units/s², ``math.inf``: at once)."""
    return _stop_from(ts, axis.position(ts), axis.velocity(ts), acceleration)


def _stop_from(ts: int, p: float, v: float, acceleration: float) -> list[Segment]:
    """:func:`stopping` from position ``p`` and velocity ``v`` (per tick)."""
    if v == 0 or math.isinf(acceleration):
        return [Segment(ts, p, 0.0, math.inf)]
    a = acceleration / TICKS_PER_SECOND**2
    ticks = max(1, round(abs(v) / a))
    stop = p + 0.5 * v * ticks
    return [
        Segment(ts, p, v, ts + ticks, -v / ticks),
        Segment(ts + ticks, stop, 0.0, math.inf),
    ]


def limit_stop(
    segments: list[Segment], fault: MotorFault, acceleration: float
) -> list[Segment]:
    """``segments``, a planned motion, stopped by ``fault``'s limit switch.

    From the first tick the motion goes further into the switch while it is
    on (crossing ``trip`` towards the switch's end, or moving that way from
    on it), it decelerates at ``acceleration`` (units/s², ``math.inf``: at
    once) instead, as the controller stops a motor at a limit switch: a move
    that starts on the switch and heads further in does not move at all.
    Moving away is left alone. Without a limit switch, ``segments`` as they
    are. Every segment the motor plans keeps one direction and all but the
    last (at rest) end, which is what this relies on.
    """
    sign = fault.limit_sign
    if not sign:
        return segments
    for i, seg in enumerate(segments):
        end = min(seg.t1, segments[i + 1].t0) if i + 1 < len(segments) else seg.t1
        if math.isinf(end):
            continue  # the plan's final rest (or an endless drift, not planned)
        t_end = math.ceil(end)
        if (seg.position(t_end) - seg.p0) * sign <= 0:
            continue  # at rest or moving away from the switch
        if fault.switch_on(seg.p0):
            hit = seg.t0
        elif fault.switch_on(seg.position(t_end)):
            # The position is monotonic within the segment: bisect for the
            # first tick on the switch.
            lo, hit = seg.t0, t_end
            while hit - lo > 1:
                mid = (lo + hit) // 2
                if fault.switch_on(seg.position(mid)):
                    hit = mid
                else:
                    lo = mid
        else:
            continue
        plan = Axis("plan", segments)
        kept = segments[:i]
        if hit > seg.t0:
            kept.append(Segment(seg.t0, seg.p0, seg.velocity, hit, seg.acceleration))
        return kept + _stop_from(
            hit, plan.position(hit), plan.velocity(hit), acceleration
        )
    return segments


@dataclass
class World:
    """Everything outside the PandA that its inputs observe."""

    axes: dict[str, Axis] = field(default_factory=dict)

    def axis(self, name: str) -> Axis:
        if name not in self.axes:
            self.axes[name] = Axis(name, [Segment(0, 0.0, 0.0, math.inf)])
        return self.axes[name]
