"""Figure 6: a 2-D snake map flown by ``spec_scan`` in one run, against the
same grid as a stock ``bp.grid_scan``.

The map is ``Fly(frame @ (Line(y, 0, 1, 20) * ~Line(x, 0, 5, 500)))`` with
the detector ``det`` (``--quick``: 4 x 50 points, the same steps). Its wall
time is compared with :meth:`MapTiming.ideal`, what the motors themselves
need: the frames plus each line's turnaround, from the motors' VELO and
ACCL (the motor record reaches VELO in ACCL seconds, a trapezoid; a move too
short to reach VELO is a triangle, :func:`move_time`). What ``spec_scan``
does per line (``spec_based._Driver``): send x to the line's run-down end
(its run-up, ACCL_x, then the line, points x frame); once the line's frames
are over (PCAP's rows or x's readback), start y's step to the next line,
during x's run-down (ACCL_x); after the run-down, x to the next run-up start
at VMAX (for a snake at one speed, where the run-down ended: no move); when
y and x are both there, the next line starts. So the period between
consecutive line starts is ideally::

    between     = max(ACCL_x + x's repositioning (0 here),
                      move_time(dy, VELO_y, ACCL_y))
    line period = ACCL_x + points x frame + between
    ideal       = lines x (points x frame + 2 x ACCL_x)
                  + (lines - 1) x (between - ACCL_x)

(the first line has no step before it, the last one no step after it). The
plan's added overhead per line is the measured start-to-start period minus
the ideal line period.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from panda_flyscan.app.bench.plans_bench import reset_motors, step_plan
from panda_flyscan.app.bench.stats import format_count, format_rate, pairwise_ratio

if TYPE_CHECKING:
    from panda_flyscan.app.bench.suite import Suite

__all__ = [
    "ISSUE_GRID",
    "X_STEP",
    "Y_STEP",
    "MapRun",
    "MapTiming",
    "map_scan",
    "move_time",
]

#: The issue's map: 20 lines (y 0..1 mm) x 500 points (x 0..5 mm).
ISSUE_GRID = (20, 500)
#: Its steps (mm); smaller grids keep them, so their turnarounds are the same.
X_STEP = 5.0 / 499
Y_STEP = 1.0 / 19


def move_time(distance: float, velocity: float, acceleration_time: float) -> float:
    """Seconds of a motor record move of ``distance`` from rest to rest: a
    trapezoid reaching ``velocity`` in ``acceleration_time`` (ACCL), or a
    triangle if the move is too short to reach it (as the simulator moves)."""
    distance = abs(distance)
    if distance == 0:
        return 0.0
    if acceleration_time <= 0:
        return distance / velocity
    if distance >= velocity * acceleration_time:  # ramps cover v x ACCL
        return distance / velocity + acceleration_time
    # Half the distance accelerating at v / ACCL, half decelerating.
    return 2 * math.sqrt(distance * acceleration_time / velocity)


@dataclass(frozen=True)
class MapTiming:
    """The ideal timing of a snake map flown line by line (see the module)."""

    lines: int
    points: int
    #: Seconds per frame.
    frame: float
    #: ACCL of the flown axis x (s): its run-up and its run-down each.
    fast_acceleration_time: float
    #: The stepped axis y between lines: distance, VELO, ACCL.
    slow_step: float
    slow_velocity: float
    slow_acceleration_time: float
    #: x's move from one run-down end to the next run-up start (s): 0 for a
    #: snake flown at one speed.
    fast_reposition: float = 0.0

    @property
    def line_time(self) -> float:
        """The frames of one line (s)."""
        return self.points * self.frame

    @property
    def slow_step_time(self) -> float:
        """y's move between two lines (s)."""
        return move_time(
            self.slow_step, self.slow_velocity, self.slow_acceleration_time
        )

    @property
    def between_lines(self) -> float:
        """From a line's last frame to the next run-up: x's run-down (and any
        repositioning), with y's step in parallel (s)."""
        return max(
            self.fast_acceleration_time + self.fast_reposition, self.slow_step_time
        )

    @property
    def turnaround(self) -> float:
        """Per line, beside its frames: that, and x's run-up (s)."""
        return self.fast_acceleration_time + self.between_lines

    @property
    def line_period(self) -> float:
        """Ideal time from one line start (x sent to its run-down end) to the
        next (s)."""
        return self.line_time + self.turnaround

    @property
    def ideal(self) -> float:
        """Ideal wall time of the map: every line with its run-up and
        run-down, and what the moves between lines add beyond a run-down (s)."""
        return self.lines * (self.line_time + 2 * self.fast_acceleration_time) + (
            self.lines - 1
        ) * (self.between_lines - self.fast_acceleration_time)


@dataclass
class MapRun:
    """One spec_scan map, timed from its messages (seconds from the call)."""

    uid: str
    wall: float
    #: Each line's start: x sent to its run-down end.
    starts: list[float]
    #: The first message after the last line's run-down was waited for.
    line_end: float
    #: The close_run message (after the PandA's and det's complete and the
    #: last collect); from there the writer waits for the run to be in Tiled.
    close_run: float = 0.0

    def overheads(self, timing: MapTiming) -> list[float]:
        """Per line: measured start-to-start period - ideal line period (s)."""
        periods = [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]
        return [p - timing.line_period for p in periods]


def _grid(lines: int, points: int) -> str:
    text = f"{lines} x {format_count(points)}"
    return (
        text if (lines, points) == ISSUE_GRID else f"{text} (not the issue's 20 x 500)"
    )


def _spec(bl: Any, lines: int, points: int, frame: float) -> Any:
    from scanspec.specs import Fly, Line

    x, y = bl.motor("x"), bl.motor("y")
    return Fly(
        frame
        @ (
            Line(y, 0.0, (lines - 1) * Y_STEP, lines)
            * ~Line(x, 0.0, (points - 1) * X_STEP, points)
        )
    )


def fly_map(s: Suite, lines: int, points: int, frame: float) -> MapRun:
    """``spec_scan`` of the snake map with det into Tiled, timed by a
    message hook; the rows are checked in Tiled."""
    from panda_flyscan.plans import spec_scan
    from panda_flyscan.storage import read_field

    ctx = s.ctx
    bl = ctx.beamline
    RE: Any = ctx.RE  # plain calls: its result is the uid tuple
    reset_motors(RE, bl, {"x": 0.0, "y": 0.0})
    spec = _spec(bl, lines, points, frame)
    marks: list[tuple[float, str, str, str | None]] = []

    def hook(msg: Any) -> None:
        obj = getattr(msg.obj, "name", "") if msg.obj is not None else ""
        marks.append((time.perf_counter(), msg.command, obj, msg.kwargs.get("group")))

    with ctx.writing():
        RE.msg_hook = hook
        try:
            started = time.perf_counter()
            (uid,) = RE(spec_scan(bl.panda, spec, detectors=[bl.detectors["det"]]))
            wall = time.perf_counter() - started
        finally:
            RE.msg_hook = None
    # A line starts with x's move to its run-down end: the last x setpoint
    # write in its segment's group (an earlier one is a repositioning).
    starts: dict[str, float] = {}
    for t, cmd, name, group in marks:
        if (cmd, name) == ("set", "x-user_setpoint") and group:
            starts[group] = t - started
    line_starts = list(starts.values())
    last_group = list(starts)[-1]
    last = max(
        i
        for i, (_, cmd, _, group) in enumerate(marks)
        if cmd == "wait" and group == last_group
    )
    line_end = next(t for t, cmd, _, _ in marks[last + 1 :] if cmd != "wait") - started
    assert len(line_starts) == lines, f"{len(line_starts)} line starts, {lines} lines"
    for axis in ("x", "y"):
        rows = len(read_field(ctx.client, uid, "primary", axis))
        assert rows == lines * points, (
            f"{rows} {axis} rows in Tiled for {lines * points}"
        )
    close = next(t for t, cmd, _, _ in marks if cmd == "close_run") - started
    return MapRun(
        uid=uid, wall=wall, starts=line_starts, line_end=line_end, close_run=close
    )


def grid_map(s: Suite, lines: int, points: int, frame: float) -> float:
    """Wall time of ``bp.grid_scan([det], y, ..., x, ..., snake_axes=True)``
    over the map's points into Tiled: at each point the motor moves and
    stops, det is triggered internally (exposure frame / 2, as spec_scan's)
    and read; the Events are checked in Tiled."""
    import bluesky.plans as bp

    from panda_flyscan.storage import read_events

    ctx = s.ctx
    bl = ctx.beamline
    RE: Any = ctx.RE  # plain calls: its result is the uid tuple
    x, y, det = bl.motor("x"), bl.motor("y"), bl.detectors["det"]
    reset_motors(RE, bl, {"x": 0.0, "y": 0.0})
    plan = bp.grid_scan(
        [det],
        y,
        0.0,
        (lines - 1) * Y_STEP,
        lines,
        x,
        0.0,
        (points - 1) * X_STEP,
        points,
        snake_axes=True,
    )
    with ctx.writing():
        started = time.perf_counter()
        (uid,) = RE(step_plan(det, frame / 2, plan))
        wall = time.perf_counter() - started
    rows = len(read_events(ctx.client, uid))
    assert rows == lines * points, f"{rows} events in Tiled for {lines * points}"
    return wall


def timing_of(s: Suite, lines: int, points: int, frame: float) -> MapTiming:
    """The map's ideal timing from the motors' own VELO and ACCL (as the
    bench resets them before each scan)."""
    import asyncio

    from panda_flyscan.app.simulated.beamline import SIM_MOTORS

    bl = s.ctx.beamline
    x, y = bl.motor("x"), bl.motor("y")

    async def accl() -> tuple[float, float]:
        return await asyncio.gather(
            x.acceleration_time.get_value(), y.acceleration_time.get_value()
        )

    accl_x, accl_y = s.ctx.in_loop(accl(), timeout=10)
    # VELO as reset_motors leaves it (a flyscan changes x's).
    velo_y = next(m.velocity for m in SIM_MOTORS if m.name == "y")
    return MapTiming(
        lines=lines,
        points=points,
        frame=frame,
        fast_acceleration_time=float(accl_x),
        slow_step=Y_STEP,
        slow_velocity=velo_y,
        slow_acceleration_time=float(accl_y),
    )


def map_scan(s: Suite) -> None:
    """Figure 6: the snake map by spec_scan (wall / ideal, overhead per
    line, fixed costs), then spec_scan and bp.grid_scan of the comparison
    grid alternately, and their ratio."""
    s.warm_up()
    frame = s.options.period
    lines, points = s.budget.map_grid
    timing = timing_of(s, lines, points, frame)
    grid = _grid(lines, points)
    at = format_rate(frame)
    formula = (
        f"ideal = lines x (points x frame + 2 ACCL_x) + (lines - 1) x "
        f"(max(ACCL_x, move_time(dy, VELO_y, ACCL_y)) - ACCL_x) = {lines} x "
        f"({points} x {frame:g} + 2 x {timing.fast_acceleration_time:g}) + "
        f"{lines - 1} x (max({timing.fast_acceleration_time:g}, "
        f"{timing.slow_step_time:.4f}) - {timing.fast_acceleration_time:g}) "
        f"= {timing.ideal:.3f} s"
    )
    eff = s.figure(
        "map.fly.efficiency",
        "map",
        f"spec_scan snake {grid} at {at}, det: wall / ideal",
        "x",
        note=formula,
        details={
            "ideal_s": timing.ideal,
            "line_period_s": timing.line_period,
            "turnaround_s": timing.turnaround,
            "y_step_s": timing.slow_step_time,
            "wall_s": [],
        },
    )
    per_frame = s.figure(
        "map.fly.frames", "map", "spec_scan map: wall / (points x frame)", "x"
    )
    median = s.figure(
        "map.line.overhead.median",
        "map",
        f"spec_scan map: added per line, median "
        f"(ideal period {timing.line_period * 1e3:.0f} ms)",
        "ms",
        note="line start to next line start - (points x frame + turnaround)",
    )
    worst = s.figure(
        "map.line.overhead.max", "map", "spec_scan map: added per line, max", "ms"
    )
    start = s.figure(
        "map.fixed.start", "map", "spec_scan map: call -> first line start", "ms"
    )
    end = s.figure(
        "map.fixed.end", "map", "spec_scan map: last line's end -> return", "ms"
    )
    for r in range(s.budget.map_repeats):
        run = fly_map(s, lines, points, frame)
        extra = [o * 1e3 for o in run.overheads(timing)]
        eff.add(run.wall / timing.ideal)
        eff.details["wall_s"].append(run.wall)
        per_frame.add(run.wall / (lines * points * frame))
        median.add(statistics.median(extra))
        worst.add(max(extra))
        start.add(run.starts[0] * 1e3)
        end.add((run.wall - run.line_end) * 1e3)
        # Where the end goes: to close_run (complete, collect), then the
        # writer's wait at the stop and unstaging.
        end.details.setdefault("to_close_run_ms", []).append(
            (run.close_run - run.line_end) * 1e3
        )
        end.details.setdefault("close_run_to_return_ms", []).append(
            (run.wall - run.close_run) * 1e3
        )
        median.details.setdefault("per_line_ms", []).append(
            [round(o, 2) for o in extra]
        )
        s.log(
            f"spec_scan map {grid} repeat {r + 1}/{s.budget.map_repeats}: "
            f"{run.wall:.2f} s (ideal {timing.ideal:.2f} s), added per line "
            f"{statistics.median(extra):.0f} ms median"
        )
    _compare(s, frame, eff.details["wall_s"])


def _compare(s: Suite, frame: float, map_walls: list[float]) -> None:
    """bp.grid_scan against spec_scan on the comparison grid, pairwise; and,
    if that grid is smaller than the map, the ratio extrapolated to the map
    from grid_scan's time per point."""
    lines, points = s.budget.map_step_grid
    n = lines * points
    grid = _grid(lines, points)
    fly = s.figure("map.step.fly", "map", f"spec_scan, {grid}", "s")
    step = s.figure(
        "map.step.grid",
        "map",
        f"bp.grid_scan([det], y, x, snake), {grid}",
        "s",
        details={"per_point_ms": []},
    )
    ratio = s.figure(
        "map.ratio",
        "map",
        f"bp.grid_scan / spec_scan wall time, {grid}",
        ratio=True,
    )
    for r in range(s.budget.map_step_repeats):
        fly_wall = fly_map(s, lines, points, frame).wall
        step_wall = grid_map(s, lines, points, frame)
        fly.add(fly_wall)
        step.add(step_wall)
        step.details["per_point_ms"].append(step_wall / n * 1e3)
        s.log(
            f"map {grid} repeat {r + 1}/{s.budget.map_step_repeats}: spec_scan "
            f"{fly_wall:.2f} s, bp.grid_scan {step_wall:.2f} s"
        )
    ratio.samples = pairwise_ratio(step.samples, fly.samples)
    big_lines, big_points = s.budget.map_grid
    if (lines, points) != (big_lines, big_points) and map_walls:
        big = big_lines * big_points
        estimate = s.figure(
            "map.ratio.estimate",
            "map",
            f"bp.grid_scan / spec_scan, {big_lines} x {format_count(big_points)} "
            "extrapolated (grid_scan's time per point)",
            note="an extrapolation, not a measurement: the step scan of the "
            "full map would take too long",
        )
        fly_big = statistics.median(map_walls)
        for wall in step.samples:
            estimate.add(wall / n * big / fly_big)
