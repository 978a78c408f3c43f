"""time_scan end to end: simulator + real IOC + real Tiled."""

from __future__ import annotations

import numpy as np
import pytest
from plan_helpers import assert_tiled_matches_file, panda_idle, ticks

from panda_flyscan.plans import time_scan

pytestmark = pytest.mark.ioc


def test_time_scan_rows_and_exact_period(flyscan) -> None:
    """N rows in Tiled, TRIGGER_TIME exactly one period (to the 8 ns tick) apart,
    each at the end of its exposure; Tiled serves the PandA's own file."""
    frames, period, exposure = 500, 1e-3, 0.25e-3
    (uid,) = flyscan.RE(
        time_scan(flyscan.beamline.panda, frames, period, exposure, md={"sample": "Si"})
    )
    data = assert_tiled_matches_file(flyscan, uid, ["trigger_time", "x"])
    t = ticks(data["trigger_time"])
    assert len(t) == frames
    np.testing.assert_array_equal(np.diff(t), round(period / 8e-9))
    # Row k is captured as frame k's exposure ends (PCAP time 0: SEQ start).
    assert t[0] == pytest.approx(round(exposure / 8e-9), abs=2)
    [start] = flyscan.of("start")
    assert start["plan_name"] == "time_scan"
    assert start["sample"] == "Si"
    assert start["num_points"] == frames
    [stop] = flyscan.of("stop")
    assert stop["exit_status"] == "success"
    assert stop["num_events"] == {"primary": frames}
    run = flyscan.client()[uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    assert panda_idle(flyscan) == (False, False)


def test_time_scan_shorter_than_the_ioc_polls(flyscan) -> None:
    """A 20 ms scan (SEQ1.ACTIVE high for less than the IOC's 0.1 s poll): the
    plan does not rely on seeing ACTIVE, and still gets every frame, with a
    period that is not a whole number of microseconds."""
    frames, period = 40, 123.456e-6  # 15432 ticks
    (uid,) = flyscan.RE(time_scan(flyscan.beamline.panda, frames, period))
    data = assert_tiled_matches_file(flyscan, uid, ["trigger_time"])
    t = ticks(data["trigger_time"])
    assert len(t) == frames
    np.testing.assert_array_equal(np.diff(t), 15432)
    assert flyscan.of("stop")[0]["num_events"] == {"primary": frames}
