"""The streamed table's lines (plans.seq_lines), pure: no devices."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scanspec.specs import Fly, Line

from panda_flyscan.plans.errors import PlanArgumentError
from panda_flyscan.plans.scan_path import scan_path
from panda_flyscan.plans.seq_lines import (
    TABLE_LINE_MODULO,
    encode_lines,
    streamed_program,
)
from panda_flyscan.plans.seq_program import AxisFacts, seq_program


class _Axis:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


X, Y = _Axis("x"), _Axis("y")


def _facts(axis: Any, inenc: int) -> AxisFacts:
    return AxisFacts(
        name=axis.name,
        inenc=inenc,
        scale=0.001,
        offset=0.0,
        units="mm",
        max_velocity=50.0,
        acceleration_time=0.1,
        limits=None,
        velocity=5.0,
    )


FACTS = {X: _facts(X, 1), Y: _facts(Y, 2)}


def _decode(words: np.ndarray) -> dict[str, np.ndarray]:
    w0 = words[:, 0]
    return {
        "repeats": w0 & 0xFFFF,
        "trigger": (w0 >> 16) & 0xF,
        "outa1": (w0 >> 20) & 1,
        "position": words[:, 1].view(np.int32),
        "time1": words[:, 2],
        "time2": words[:, 3],
    }


def test_encoding_matches_the_firmware_layout() -> None:
    words = encode_lines(
        np.array([3]), np.array([7]), np.array([-5]), np.array([10]), np.array([20])
    )
    assert words.dtype == np.uint32 and words.shape == (1, 4)
    assert int(words[0, 0]) == 3 | 7 << 16 | 1 << 20
    assert int(words[0, 1]) == (1 << 32) - 5
    assert list(words[0, 2:]) == [10, 20]


def test_snake_lines_gate_and_position_trigger_every_frame() -> None:
    spec = Fly(0.001 @ (Line(Y, 0, 1, 3) * ~Line(X, 0.001, 1.999, 1000)))
    path = scan_path(spec)
    program = streamed_program(path, FACTS)
    chunks = list(program.chunks(chunk_lines=1000))
    assert all(len(c) == 1000 for c in chunks[:-1])
    lines = _decode(np.concatenate(chunks))
    assert len(lines["repeats"]) == program.lines == 3 * (1 + 2 * 1000)
    assert set(lines["repeats"]) == {1}
    # The fixed table holds the same scan in 6 rows; its frames' timing.
    fixed = seq_program(path, FACTS)
    live, dead = fixed.phases[0.001]
    for n, direction in enumerate((1, -1, 1)):
        first = n * 2001
        guard, body = first, slice(first + 1, first + 2001)
        gate, frame = lines["trigger"][body][0::2], lines["trigger"][body][1::2]
        assert set(gate) == {2}  # BITA=1
        # Up: guard POSA<=, frames POSA>=; down the other way round.
        assert lines["trigger"][guard] == (8 if direction > 0 else 7)
        assert set(frame) == {7 if direction > 0 else 8}
        assert set(lines["time1"][body][0::2]) == {0}
        assert set(lines["time2"][body][0::2]) == {1}
        assert set(lines["time1"][body][1::2]) == {live}
        # The frame ends before the next frame's position is reached.
        assert set(lines["time2"][body][1::2]) == {dead - 1 - dead // 4}
        positions = lines["position"][body][1::2]
        steps = np.diff(positions) * direction
        # 2 um frames on a 1 um encoder: two counts each, every frame its own.
        assert set(steps) == {2}
        # The first frame's trigger is the fixed table's.
        assert positions[0] == fixed.table.position[2 * n + 1]


def test_frames_before_line_maps_the_table_back_to_frames() -> None:
    path = scan_path(Fly(0.001 @ (Line(Y, 0, 1, 2) * ~Line(X, 0, 0.09, 10))))
    program = streamed_program(path, FACTS)
    # Line 0 is the guard; lines 1, 2 are frame 0's gate and frame.
    assert program.frames_before_line(0) == 0
    assert program.frames_before_line(1) == 0
    assert program.frames_before_line(2) == 0
    assert program.frames_before_line(3) == 1
    assert program.frames_before_line(20) == 9
    # The second line's guard, then its frames from 10.
    assert program.frames_before_line(21) == 10
    assert program.frames_before_line(24) == 11


def test_between_frames_only_at_gates_guards_and_points() -> None:
    """Where a pause may stop the motors: the SEQ waiting at a gate (BITS.A
    low holds it), a guard or a point; not in a frame's phases, nor waiting
    at a frame line whose gate has passed."""
    path = scan_path(Fly(0.001 @ (Line(Y, 0, 1, 2) * ~Line(X, 0, 0.09, 10))))
    program = streamed_program(path, FACTS)
    wait = "WAIT_TRIGGER"
    assert program.between_frames(wait, 0)  # the guard
    assert program.between_frames(wait, 1)  # frame 0's gate
    assert not program.between_frames(wait, 2)  # frame 0's line
    assert program.between_frames(wait, 3)
    assert not program.between_frames(wait, 20)  # frame 9's line
    assert program.between_frames(wait, 21)  # the second line's guard
    for phase in ("PHASE1", "PHASE2"):
        assert not program.between_frames(phase, 1)
        assert not program.between_frames(phase, 21)
    # Not running: nothing fires.
    assert program.between_frames("WAIT_ENABLE", 2)
    assert program.between_frames("UNREADY", 2)
    assert program.between_frames(wait, program.lines)


def test_a_frame_awaited_is_stoppable_only_far_enough_ahead() -> None:
    """Waiting at a frame line, the SEQ fires when the encoder gets there:
    the motors may stop then only if they stop short of it (deceleration at
    the line's velocity over half its acceleration time, the readback's lag,
    a frame of margin)."""
    path = scan_path(Fly(0.001 @ (Line(Y, 0, 1, 2) * ~Line(X, 0, 0.99, 100))))
    program = streamed_program(path, FACTS)
    wait = "WAIT_TRIGGER"
    assert program.awaited_trigger(wait, 1) is None  # a gate
    assert program.awaited_trigger("PHASE1", 2) is None
    up = program.awaited_trigger(wait, 2 + 2 * 40)  # frame 40's line
    assert up is not None and up.axis is X and up.frame == 40
    assert up.direction == 1
    # The table's own trigger for that frame (half a count on, in counts).
    words = np.concatenate(list(program.chunks()))
    assert _decode(words)["position"][2 + 2 * 40] == round(up.position / 0.001 + 0.5)
    velocity = 0.01 / 0.001  # a 10 um frame per ms
    assert up.stopping == pytest.approx(velocity * (0.1 / 2 + 0.1) + 0.01)
    assert up.stoppable(up.position - up.stopping - 0.001)
    assert not up.stoppable(up.position - up.stopping + 0.001)
    assert not up.stoppable(up.position + 0.5)  # past it: it fires
    # The snake's second line, flown the other way: frame 100 + 40.
    down = program.awaited_trigger(wait, 201 + 2 + 2 * 40)
    assert down is not None and down.frame == 140 and down.direction == -1
    assert down.stoppable(down.position + down.stopping + 0.001)
    assert not down.stoppable(down.position - 0.001)


def test_table_line_unwrapped_near_the_segment_driven() -> None:
    """TABLE_LINE counts from 1 and wraps at 2**19: read back near the
    segment the plan drives, a little behind it or far beyond the wrap."""
    path = scan_path(Fly(0.0001 @ (Line(Y, 0, 1, 3) * ~Line(X, 0, 400, 200_000))))
    program = streamed_program(path, FACTS)
    span = 1 + 2 * 200_000
    assert program.line_of(1, 0) == 0
    assert program.line_of(span + 1, 1) == span
    # Still in the first line while the plan has moved on to the second.
    assert program.line_of(span - 5, 1) == span - 6
    # The third line starts past the wrap: 800,002 reads 800,003 - 2**19.
    third = 2 * span
    assert program.line_of(third + 1 - TABLE_LINE_MODULO, 2) == third
    assert program.line_of(third + 11 - TABLE_LINE_MODULO, 2) == third + 10
    assert program.between_frames("WAIT_TRIGGER", third + 1)
    assert not program.between_frames("WAIT_TRIGGER", third + 2)


def test_memory_does_not_follow_the_length() -> None:
    """A million frames in chunks: only one chunk is ever built."""
    path = scan_path(Fly(0.0001 @ (Line(Y, 0, 1, 100) * ~Line(X, 0, 20, 10_000))))
    program = streamed_program(path, FACTS)
    assert program.lines == 100 * (1 + 2 * 10_000)
    it = program.chunks(chunk_lines=4096)
    first = next(it)
    assert first.nbytes == 4096 * 16


def test_too_little_dead_time_refused() -> None:
    path = scan_path(Fly(1e-7 @ Line(X, 0, 0.1, 10)))
    with pytest.raises(PlanArgumentError, match="dead time"):
        streamed_program(path, FACTS, exposure=0.98e-7)
