"""spec_scan's pure parts: a scanspec path cut into lines and points
(scan_path) and the one SEQ table that times it (seq_program). No devices."""

from __future__ import annotations

import tracemalloc
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from ophyd_async.fastcs.panda import SeqTrigger
from scanspec.core import Path
from scanspec.specs import Concat, Fly, Line, Spiral, Static, Zip

from panda_flyscan.plans import PlanArgumentError
from panda_flyscan.plans.scan_path import FlyLine, Point, _Chunk, _Cutter, scan_path
from panda_flyscan.plans.seq_program import AxisFacts, rows_needed, seq_program

TICK = 8e-9


def facts(**over: object) -> dict[str, AxisFacts]:
    base = {
        "scale": 0.001,
        "offset": 0.0,
        "units": "mm",
        "max_velocity": 50.0,
        "acceleration_time": 0.1,
        "limits": (-100.0, 100.0),
    }
    base.update(over)
    return {
        a: AxisFacts(name=a, inenc=i + 1, **base)  # type: ignore[arg-type]
        for i, a in enumerate("xyz")
    }


def test_snake_grid_is_one_line_per_row_alternating() -> None:
    path = scan_path(Fly(0.01 @ (Line("y", 0, 1, 3) * ~Line("x", 0, 1, 11))))
    assert path.frames == 33 and path.shape == (3, 11)
    assert path.snaking == (False, True)
    assert all(isinstance(s, FlyLine) for s in path.segments)
    lines = path.lines
    assert [(ln.first, ln.num) for ln in lines] == [(0, 11), (11, 11), (22, 11)]
    assert [ln.direction for ln in lines] == [1, -1, 1]
    assert [ln.fixed for ln in lines] == [{"y": 0.0}, {"y": 0.5}, {"y": 1.0}]
    # Flown through the frames' bounds: half a step beyond the end points.
    assert lines[0].start == pytest.approx(-0.05) and lines[0].end == pytest.approx(
        1.05
    )
    assert lines[1].start == pytest.approx(1.05) and lines[1].end == pytest.approx(
        -0.05
    )
    assert lines[0].velocity == pytest.approx(0.1 / 0.01)
    assert path.ranges == {"y": (0.0, 1.0), "x": (0.0, 1.0)}
    assert path.duration == pytest.approx(0.33)
    assert path.shortest == path.longest == 0.01


def test_outer_step_over_inner_fly_keeps_the_stepped_axis_fixed_per_line() -> None:
    path = scan_path(Line("z", 0, 2, 3) * Fly(0.01 @ ~Line("x", 0, 1, 5)))
    assert path.shape == (3, 5) and path.snaking == (False, True)
    assert [ln.fixed["z"] for ln in path.lines] == [0.0, 1.0, 2.0]
    # The inner snake carries on across the outer steps.
    assert [ln.direction for ln in path.lines] == [1, -1, 1]


def test_spiral_and_step_specs_run_point_by_point() -> None:
    spec = Fly(0.01 @ Spiral("x", 0, 1, 0.3, "y", 0, 1))
    spiral = scan_path(spec)
    midpoints = Path(spec.calculate()).consume().midpoints
    assert spiral.segments and all(isinstance(s, Point) for s in spiral.segments)
    assert [s.first for s in spiral.segments] == list(range(spiral.frames))
    for p in spiral.points:
        assert p.positions == {
            "x": midpoints["x"][p.first],
            "y": midpoints["y"][p.first],
        }
    step = scan_path(0.1 @ Line("x", 0, 1, 3))
    assert [(type(s), s.num) for s in step.segments] == [(Point, 1)] * 3
    # Frames at one place merge into one point of several frames.
    still = scan_path(0.1 @ Static("x", 2.0, 4))
    assert [(s.first, s.num) for s in still.segments] == [(0, 4)]


def test_a_change_of_spacing_without_a_gap_is_two_lines() -> None:
    spec = Fly(0.01 @ Concat(Line("x", 0, 1, 11), Line("x", 1.1, 3.1, 11)))
    path = scan_path(spec)
    assert [(ln.first, ln.num) for ln in path.lines] == [(0, 11), (11, 11)]
    assert path.lines[0].velocity != pytest.approx(path.lines[1].velocity)


def _greedy_runs(widths: np.ndarray, durations: np.ndarray) -> list[int]:
    """The reference cut: frame by frame, a line goes on while the frame has
    its first frame's width and duration (rtol 1e-9)."""
    firsts, i = [], 0
    while i < len(widths):
        firsts.append(i)
        j = i + 1
        while (
            j < len(widths)
            and np.isclose(widths[j], widths[i], rtol=1e-9, atol=0)
            and np.isclose(durations[j], durations[i], rtol=1e-9, atol=0)
        ):
            j += 1
        i = j
    return firsts


@pytest.mark.parametrize("seed", range(5))
def test_lines_cut_as_the_frame_by_frame_reference(seed: int) -> None:
    """The vectorised cut equals the frame-by-frame one, for widths that
    drift within the tolerance (each close to the line's first, not always
    to its neighbour), jump, or change every frame."""
    rng = np.random.default_rng(seed)
    n = 3000
    widths = 1e-3 * (1 + rng.choice([0.0, 0.6e-9, -0.6e-9], n))
    widths[rng.choice(n, 40)] *= 1.5  # a few frames of another width
    widths[2000:2300] = 1e-3 * (1 + np.arange(300) * 1e-6)  # every frame its own
    durations = np.full(n, 0.01)
    durations[rng.choice(n, 10)] = 0.02
    upper = np.cumsum(widths)
    lower = np.concatenate([[0.0], upper[:-1]])  # each frame where the last ended
    # Fed in uneven chunks: a line goes on across a chunk's end.
    cutter = _Cutter(["x"], {0: ["x"]})
    for first, stop in pairwise([0, 1, 700, 701, 1500, 2999, n]):
        part = slice(first, stop)
        gap = np.zeros(stop - first, np.bool_)
        gap[0] = first == 0
        cutter.add(
            _Chunk(
                first=first,
                lower={"x": lower[part]},
                upper={"x": upper[part]},
                mid={"x": lower[part]},
                durations=durations[part],
                gap=gap,
            )
        )
    segments = cutter.finish()
    assert all(isinstance(s, FlyLine) for s in segments)
    assert [s.first for s in segments] == _greedy_runs(widths, durations)
    assert sum(s.num for s in segments) == n


SPECS: dict[str, Any] = {
    "grid": Fly(0.01 @ (Line("y", 0, 1, 5) * Line("x", 0, 1, 7))),
    "snake": Fly(0.01 @ (Line("y", 0, 1, 5) * ~Line("x", 0, 1, 7))),
    "spiral": Fly(0.01 @ Spiral("x", 0, 2, 0.1, "y", 0, 2)),
    "concat": Fly(0.01 @ Concat(Line("x", 0, 1, 10), Line("x", 1, 2, 5))),
    "durations": Fly(Concat(0.01 @ Line("x", 0, 1, 10), 0.02 @ Line("x", 1, 2, 10))),
    "static": Fly(0.01 @ (Line("y", 0, 1, 3) * Static("x", 1.0, 4))),
    "zip": Fly(0.01 @ Zip(Line("x", 0, 1, 10), Line("y", 0, 2, 10))),
    "outer": Line("z", 0, 1, 3) * Fly(0.01 @ ~Line("x", 0, 1, 10)),
    "steps": 0.01 @ (Line("y", 0, 1, 3) * Line("x", 0, 1, 4)),
}


@pytest.mark.parametrize("name", SPECS)
def test_the_cut_does_not_depend_on_the_chunks_read(name: str) -> None:
    """Read one frame at a time, or a few, the segments are those of the
    whole path read at once."""
    whole = scan_path(SPECS[name], chunk_frames=1_000_000)
    for chunk in (1, 2, 3, 7):
        path = scan_path(SPECS[name], chunk_frames=chunk)
        assert path.segments == whole.segments, chunk
        assert (path.frames, path.ranges, path.duration) == (
            whole.frames,
            whole.ranges,
            pytest.approx(whole.duration),
        )


def test_memory_does_not_grow_with_the_frames() -> None:
    """The path is read in chunks: cutting 2e6 frames takes no more memory
    at its peak than cutting 5e5 (and less than one float64 per frame)."""
    peaks = []
    for lines in (50, 200):
        tracemalloc.start()
        try:
            path = scan_path(
                Fly(1e-4 @ (Line("y", 0, 1, lines) * ~Line("x", 0, 20, 10_000)))
            )
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert len(path.lines) == lines
    assert peaks[1] <= 1.1 * peaks[0], peaks
    assert peaks[1] < 8 * 2_000_000, peaks


def test_a_spec_without_a_duration_is_refused() -> None:
    with pytest.raises(PlanArgumentError, match=r"no time per frame.*Fly\(0.01 @"):
        scan_path(Fly(Line("x", 0, 1, 11)))
    with pytest.raises(PlanArgumentError, match="scanspec Spec"):
        scan_path("Line(x, 0, 1, 11)")  # type: ignore[arg-type]


def test_snake_table_guards_each_line_and_centres_the_exposure() -> None:
    path = scan_path(Fly(0.01 @ (Line("y", 0, 1, 3) * ~Line("x", 0, 1, 11))))
    program = seq_program(path, facts())
    table = program.table
    assert program.rows == rows_needed(path) == 6
    assert program.pos_inputs == {"posa": "x"}
    assert program.prescale_ticks == 1
    # Exposure: half of 10 ms, centred: trigger half the 5 ms dead time in.
    live, dead = program.phases[0.01]
    assert (live, dead) == (625_000, 625_000)
    v = 10.0  # mm/s: 0.1 mm frames in 10 ms
    run_up = 0.1 * v / 2
    trig_up = (-0.05 + v * dead * TICK / 2) * 1000
    trig_down = (1.05 - v * dead * TICK / 2) * 1000
    guard_up = ((-0.05 - run_up) * 1000 + -50) / 2
    guard_down = ((1.05 + run_up) * 1000 + 1050) / 2
    assert list(table.trigger) == [
        SeqTrigger.POSA_LT,
        SeqTrigger.POSA_GT,
        SeqTrigger.POSA_GT,
        SeqTrigger.POSA_LT,
        SeqTrigger.POSA_LT,
        SeqTrigger.POSA_GT,
    ]
    # Aimed half a count on (the floor of a moving encoder averages half a
    # count low); POSA<= fires as the count falls to P: aimed one lower.
    assert list(table.position) == [
        round(guard_up),
        round(trig_up + 0.5),
        round(guard_down),
        round(trig_down + 0.5) - 1,
        round(guard_up),
        round(trig_up + 0.5),
    ]
    assert list(table.repeats) == [1, 11, 1, 11, 1, 11]
    assert list(table.outa1) == [False, True] * 3
    assert list(table.time1) == [0, live] * 3
    assert list(table.time2) == [1, dead] * 3
    motion = program.motions[1]
    assert motion.run_up == pytest.approx(1.05 + run_up)
    assert motion.run_down == pytest.approx(-0.05 - run_up)


def test_points_wait_for_the_handshake_bit() -> None:
    path = scan_path(0.1 @ Line("x", 0, 1, 3))
    program = seq_program(path, facts(), exposure=0.02)
    assert list(program.table.trigger) == [SeqTrigger.BITA_0, SeqTrigger.BITA_1] * 3
    assert list(program.table.repeats) == [1, 1] * 3
    assert program.exposure(0.1) == pytest.approx(0.02)
    assert program.pos_inputs == {}


def test_long_lines_split_into_rows_of_65535() -> None:
    path = scan_path(Fly(1e-4 @ Line("x", 0, 10, 100_000)))
    program = seq_program(path, facts(scale=1e-5))
    assert list(program.table.repeats) == [1, 65535, 100_000 - 65535]
    assert program.table.trigger[2] == SeqTrigger.IMMEDIATE


@pytest.mark.parametrize(
    ("spec", "axis_facts", "kwargs", "message"),
    [
        (
            Fly(0.001 @ Line("x", 0, 100, 11)),
            facts(),
            {},
            r"x would fly at 10000 mm/s, above its maximum 50 mm/s",
        ),
        (
            Fly(0.1 @ Line("x", 90, 99.5, 11)),
            facts(),
            {},
            r"x's run-down end 100.45 mm is outside its limits -100..100 mm",
        ),
        (
            Fly(0.01 @ Line("x", 0, 0.001, 11)),
            facts(),
            {},
            "frames must be at least one count apart",
        ),
        (
            Fly(0.01 @ Line("x", 0, 1, 11)),
            facts(acceleration_time=0.0001),
            {},
            "the PandA needs at least 4",
        ),
        (
            Fly(0.01 @ Line("x", 0, 1, 11)),
            facts(),
            {"exposure": 0.01},
            "frame time 0.01 s is not longer than the exposure",
        ),
        (
            0.01 @ Line("x", 200, 300, 3),
            facts(),
            {},
            r"point at frame 0: x 200 mm is outside its limits",
        ),
        (
            Fly(0.01 @ Line("x", 0, 1, 11)),
            facts(),
            {"max_rows": 1},
            r"2 SEQ rows; one SEQ table holds 1",
        ),
    ],
)
def test_bad_motion_is_refused_naming_the_fix(
    spec: object, axis_facts: dict[str, AxisFacts], kwargs: dict, message: str
) -> None:
    with pytest.raises(PlanArgumentError, match=message):
        seq_program(scan_path(spec), axis_facts, **kwargs)  # type: ignore[arg-type]


def test_more_than_three_flown_axes_is_refused() -> None:
    def flying(moving: str) -> Any:
        spec: Any = None
        for a in "xyzw":
            part = Line(a, 0, 1, 5) if a == moving else Static(a, 0.0, 5)
            spec = part if spec is None else spec.zip(part)
        return spec

    lines = [flying(a) for a in "xyzw"]
    spec = Fly(
        0.01
        @ Concat(
            Concat(lines[0], lines[1], gap=True),
            Concat(lines[2], lines[3], gap=True),
            gap=True,
        )
    )
    four = {**facts(), "w": AxisFacts("w", 4, 0.001, 0, "mm", 50, 0.1, None)}
    with pytest.raises(PlanArgumentError, match="at most 3 positions"):
        seq_program(scan_path(spec), four)
