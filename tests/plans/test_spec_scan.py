"""spec_scan end to end: scanspec paths flown on the simulated beamline (three
motor records on INENC1..3, two area detectors) through the real IOC into a
real Tiled server, read back and compared with what the spec asked for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from bluesky.utils import Msg
from plan_helpers import assert_tiled_matches_file, panda_idle, ticks
from scanspec.core import Path as ScanPath
from scanspec.specs import Fly, Line, Spec, Spiral

from panda_flyscan.plans import spec_scan
from panda_flyscan.storage import read_stream
from sim_ioc.detector import decode

pytestmark = pytest.mark.ioc

COUNT = 0.001  # mm: one encoder count on every simulated axis


def _frames(env: Any, name: str) -> np.ndarray:
    info = env.beamline.path_provider.last[name]
    path = Path(info.directory_path) / f"{info.filename}.h5"
    with h5py.File(path, "r", swmr=True) as f:
        data = f["/entry/data/data"]
        assert isinstance(data, h5py.Dataset)
        return data[()]


def _midpoints(spec: Spec[Any]) -> dict[str, np.ndarray]:
    frames = ScanPath(spec.calculate()).consume()
    return {a.name: np.asarray(frames.midpoints[a]) for a in frames.axes()}


@pytest.fixture
def messages(flyscan: Any) -> Iterator[list[Msg]]:
    """Every message the RunEngine processes during the test."""
    seen: list[Msg] = []
    flyscan.RE.msg_hook = seen.append
    yield seen
    flyscan.RE.msg_hook = None


def _positions(env: Any, *names: str) -> dict[str, float]:
    return {n: env.run(env.beamline.motor(n).user_readback.get_value()) for n in names}


def test_snake_map_rows_are_the_spec_midpoints_and_frames_follow(
    flyscan: Any, messages: list[Msg]
) -> None:
    bl = flyscan.beamline
    x, y = bl.motor("x"), bl.motor("y")
    det = bl.detectors["det"]
    spec = Fly(0.01 @ (Line(y, 0, 0.3, 4) * ~Line(x, 0, 1, 21)))
    (uid,) = flyscan.RE(spec_scan(bl.panda, spec, detectors=[det]))
    rows = assert_tiled_matches_file(flyscan, uid, ["x", "y", "trigger_time"])
    mid = _midpoints(spec)
    assert len(rows["x"]) == len(mid["x"]) == 84
    # Captured: each encoder averaged over the exposure, centred in the frame.
    np.testing.assert_allclose(rows["x"], mid["x"], rtol=0, atol=COUNT + 1e-9)
    np.testing.assert_allclose(rows["y"], mid["y"], rtol=0, atol=COUNT + 1e-9)
    # Snake order: the second line runs backwards.
    assert np.all(np.diff(rows["x"][21:42]) < 0) and np.all(np.diff(rows["x"][:21]) > 0)
    # Within a line, frames 10 ms apart exactly (SEQ-timed after the first).
    t = ticks(rows["trigger_time"])
    for line in range(4):
        assert set(np.diff(t[line * 21 : (line + 1) * 21])) == {1_250_000}
    # Frame i was taken where row i was: the stamp is the position at the
    # trigger, half an exposure (2.5 ms at 5 mm/s = 12.5 um) before the midpoint.
    images = _frames(flyscan, "det")
    tiled = np.asarray(read_stream(flyscan.client(), uid, "primary")["det"])
    np.testing.assert_array_equal(tiled.reshape(images.shape), images)
    stamps = [decode(frame) for frame in images]
    assert [s.index for s in stamps] == list(range(84))
    direction = np.repeat([1, -1, 1, -1], 21)
    np.testing.assert_allclose(
        [s.position for s in stamps],
        mid["x"] - direction * 0.0125,
        rtol=0,
        atol=2 * COUNT,
    )
    np.testing.assert_allclose([s.y for s in stamps], mid["y"], rtol=0, atol=COUNT)
    # One run, the PandA and detector prepared and kicked off once.
    [start] = flyscan.of("start")
    assert start["shape"] == [4, 21] and start["snaking"] == [False, True]
    assert Spec.deserialize(start["scanspec"]).shape() == (4, 21)
    assert start["scanspec"] == spec.serialize()
    for verb in ("prepare", "kickoff"):
        assert [m.obj.name for m in messages if m.command == verb].count("panda") == 1
        assert [m.obj.name for m in messages if m.command == verb].count("det") == 1
    assert sum(m.command == "open_run" for m in messages) == 1
    [stop] = flyscan.of("stop")
    assert stop["exit_status"] == "success"
    assert stop["num_events"] == {"primary": 84}
    assert panda_idle(flyscan) == (False, False)


def test_outer_step_over_inner_fly_in_one_run(flyscan: Any) -> None:
    bl = flyscan.beamline
    x, z = bl.motor("x"), bl.motor("z")
    spec = Line(z, 0.5, 1.5, 3) * Fly(0.005 @ ~Line(x, 0.2, 0.7, 11))
    speeds = [flyscan.run(m.velocity.get_value()) for m in (x, z)]
    (uid,) = flyscan.RE(spec_scan(bl.panda, spec))
    # x flew at 10 mm/s and returned at its maximum; its VELO is put back.
    assert [flyscan.run(m.velocity.get_value()) for m in (x, z)] == speeds
    rows = assert_tiled_matches_file(flyscan, uid, ["x", "z"])
    mid = _midpoints(spec)
    np.testing.assert_allclose(rows["x"], mid["x"], rtol=0, atol=COUNT + 1e-9)
    np.testing.assert_allclose(rows["z"], np.repeat([0.5, 1.0, 1.5], 11), atol=1e-9)
    assert flyscan.of("start")[0]["shape"] == [3, 11]
    assert flyscan.of("stop")[0]["num_events"] == {"primary": 33}
    assert _positions(flyscan, "z")["z"] == pytest.approx(1.5)


def test_spiral_runs_point_by_point_with_both_encoders(flyscan: Any) -> None:
    bl = flyscan.beamline
    x, y = bl.motor("x"), bl.motor("y")
    det = bl.detectors["det"]
    spec = Fly(0.004 @ Spiral(x, 0.5, 0.4, 0.1, y, -0.2))
    mid = _midpoints(spec)
    (uid,) = flyscan.RE(spec_scan(bl.panda, spec, detectors=[det]))
    rows = assert_tiled_matches_file(flyscan, uid, ["x", "y"])
    n = len(mid["x"])
    assert n >= 10 and len(rows["x"]) == n
    # Standing still at each point: the encoders read the set point exactly.
    np.testing.assert_allclose(rows["x"], np.floor(mid["x"] / COUNT + 1e-9) * COUNT)
    np.testing.assert_allclose(rows["y"], np.floor(mid["y"] / COUNT + 1e-9) * COUNT)
    stamps = [decode(frame) for frame in _frames(flyscan, "det")]
    np.testing.assert_allclose([s.position for s in stamps], mid["x"], atol=1e-9)
    np.testing.assert_allclose([s.y for s in stamps], mid["y"], atol=1e-9)
    assert flyscan.of("start")[0]["panda_flyscan"]["points"] == n


def test_two_detectors_at_their_own_rates(flyscan: Any) -> None:
    bl = flyscan.beamline
    x, y = bl.motor("x"), bl.motor("y")
    det, det2 = bl.detectors["det"], bl.detectors["det2"]
    spec = Fly(0.01 @ (Line(y, 0, 0.1, 2) * ~Line(x, 0, 0.95, 20)))
    (uid,) = flyscan.RE(
        spec_scan(bl.panda, spec, detectors=[det, det2], divisors={"det2": 5})
    )
    rows = assert_tiled_matches_file(flyscan, uid, ["x", "trigger_time"])
    fast = [decode(f) for f in _frames(flyscan, "det")]
    slow = [decode(f) for f in _frames(flyscan, "det2")]
    assert len(rows["x"]) == len(fast) == 40 and len(slow) == 8
    # det2 fired on frames 0, 5, 10...: det's trigger ticks, plus the one
    # tick the DIV block takes (firmware pipeline).
    fast_ticks = np.array([s.tick for s in fast])
    slow_ticks = np.array([s.tick for s in slow])
    np.testing.assert_array_equal(slow_ticks, fast_ticks[::5] + 1)
    # And det's triggers are PCAP's rows, tick for tick (clocks differ by zero).
    np.testing.assert_array_equal(
        np.diff(fast_ticks), np.diff(ticks(rows["trigger_time"]))
    )
    # ...so det2 saw the sample where det did, one tick's travel (40 nm) on.
    np.testing.assert_allclose(
        [s.position for s in slow], [s.position for s in fast[::5]], atol=1e-7
    )
    assert np.asarray(read_stream(flyscan.client(), uid, "det2")["det2"]).shape[0] == 8
    [stop] = flyscan.of("stop")
    assert stop["num_events"] == {"primary": 40, "det2": 8}
    [start] = flyscan.of("start")
    assert start["panda_flyscan"]["streams"] == {"det": "primary", "det2": "det2"}


def _bad_cases(bl: Any) -> list[tuple[str, Any, dict[str, Any], str]]:
    x, y = bl.motor("x"), bl.motor("y")
    det = bl.detectors["det"]
    from scanspec.specs import ConstantDuration

    from panda_flyscan.devices import EncoderWiring, PandaWiring

    only_x = PandaWiring(encoders=(EncoderWiring("x", inenc=1),))
    return [
        ("not a motor", Fly(0.01 @ Line(det, 0, 1, 11)), {}, "det has no velocity"),
        (
            "a name, not a motor",
            Fly(0.01 @ Line("x", 0, 1, 11)),
            {},
            r"axis 'x' is a name: build the spec over the motors",
        ),
        (
            "no encoder",
            Fly(0.01 @ (Line(y, 0, 1, 2) * Line(x, 0, 1, 11))),
            {"wiring": only_x},
            r"motor 'y' has no encoder in the PandA wiring",
        ),
        (
            "too fast",
            Fly(0.001 @ Line(x, 0, 10, 11)),
            {},
            r"x would fly at 1000 mm/s, above its maximum 50 mm/s",
        ),
        (
            "run-up outside the limits",
            Fly(0.01 @ Line(x, 99, 99.9, 10)),
            {},
            r"x's run-down end 100.45 mm is outside its limits -100..100 mm",
        ),
        (
            "frames closer than a count",
            Fly(0.01 @ Line(x, 0, 0.005, 11)),
            {},
            "frames must be at least one count apart",
        ),
        (
            "frame shorter than exposure + dead time",
            Fly(0.0015 @ Line(x, 0, 0.05, 11)),
            {"detectors": [det]},
            r"shorter than exposure 0.00075 s \+ detector det dead time 0.001 s",
        ),
        ("no duration", Fly(Line(x, 0, 1, 11)), {}, "gives no time per frame"),
        (
            "divisor not dividing the line",
            Fly(0.01 @ (Line(y, 0, 0.1, 2) * Line(x, 0, 1, 20))),
            {"detectors": [det, bl.detectors["det2"]], "divisors": {"det2": 3}},
            r"divisor 3 of det2 does not divide",
        ),
        ("no axis", ConstantDuration(0.01), {}, "moves no axis: use time_scan"),
        (
            "more rows than one table",
            Fly(0.01 @ (Line(y, 0, 2.1, 2100) * Line(x, 0, 0.1, 2))),
            {},
            r"4200 SEQ rows; one SEQ table holds 4096 \(at most 2048 lines",
        ),
    ]


BAD_CASES = [
    "not a motor",
    "a name, not a motor",
    "no encoder",
    "too fast",
    "run-up outside the limits",
    "frames closer than a count",
    "frame shorter than exposure + dead time",
    "no duration",
    "divisor not dividing the line",
    "no axis",
    "more rows than one table",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_arguments_refused_before_anything_moves_or_arms(
    flyscan: Any, case: str
) -> None:
    from panda_flyscan.plans import PlanArgumentError

    bl = flyscan.beamline
    [(_, spec, kwargs, message)] = [c for c in _bad_cases(bl) if c[0] == case]
    x = bl.motor("x")
    # Limits of our own (an earlier test may have left x with none).
    limits = [
        flyscan.run(s.get_value()) for s in (x.low_limit_travel, x.high_limit_travel)
    ]
    flyscan.set(x.low_limit_travel, -100.0)
    flyscan.set(x.high_limit_travel, 100.0)
    before = _positions(flyscan, "x", "y", "z")
    try:
        with pytest.raises(PlanArgumentError, match=message):
            flyscan.RE(spec_scan(bl.panda, spec, **kwargs))
    finally:
        flyscan.set(x.low_limit_travel, limits[0])
        flyscan.set(x.high_limit_travel, limits[1])
    assert flyscan.of("start") == []
    assert panda_idle(flyscan) == (False, False)
    assert _positions(flyscan, "x", "y", "z") == before
