"""position_scan end to end: the simulator's axis flies, PCOMP fires, PCAP
captures the encoder; read back through Tiled."""

from __future__ import annotations

import numpy as np
import pytest
from plan_helpers import assert_tiled_matches_file, panda_idle

from panda_flyscan.plans import position_scan

pytestmark = pytest.mark.ioc

COUNT = 0.001  # mm per encoder count of the simulated axis


@pytest.mark.parametrize(
    ("start", "stop", "num", "velocity"),
    [(0.0, 10.0, 101, 20.0), (6.0, 1.0, 51, 25.0)],
    ids=["positive", "negative"],
)
def test_positions_equal_requested(flyscan, start, stop, num, velocity) -> None:
    """Captured positions are the requested ones to one encoder count, in
    either direction, one row per point, spaced in time by step/velocity."""
    x = flyscan.beamline.motor("x")
    (uid,) = flyscan.RE(
        position_scan(flyscan.beamline.panda, x, start, stop, num, velocity=velocity)
    )
    data = assert_tiled_matches_file(flyscan, uid, ["x", "trigger_time"])
    requested = np.linspace(start, stop, num)
    assert len(data["x"]) == num
    np.testing.assert_allclose(data["x"], requested, rtol=0, atol=COUNT * 1.0001)
    # Constant velocity between points: each step takes step/velocity, to the
    # time the axis takes to cross one count.
    dt = np.diff(data["trigger_time"])
    step = abs(stop - start) / (num - 1)
    np.testing.assert_allclose(dt, step / velocity, rtol=0, atol=COUNT / velocity)
    [stop_doc] = flyscan.of("stop")
    assert stop_doc["exit_status"] == "success"
    assert stop_doc["num_events"] == {"primary": num}
    start_doc = flyscan.of("start")[0]
    assert start_doc["motors"] == ["x"]
    assert start_doc["panda_flyscan"]["pcomp"]["direction"] == (
        "Positive" if stop > start else "Negative"
    )
    # The motor ended past the last point by its run-down, and stands still.
    readback = flyscan.run(x.locate())["readback"]
    run_down = 0.1 * velocity / 2
    assert readback == pytest.approx(stop + np.sign(stop - start) * run_down, abs=COUNT)
    assert panda_idle(flyscan) == (False, False)
