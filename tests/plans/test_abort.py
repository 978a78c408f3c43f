"""Ctrl-C (twice, as a user would) during a long flyscan: the PandA is
disarmed, the HDF5 file closed and readable, the motor stopped, and the run is
closed (exit status "abort") with what was captured, readable in Tiled."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted
from ophyd_async.core import wait_for_value
from plan_helpers import (
    panda_file,
    panda_idle,
    ticks,
    tiled_primary,
)

from panda_flyscan.plans import position_scan, time_scan
from panda_flyscan.storage.hdf5 import read_datasets

pytestmark = pytest.mark.ioc


def _ctrl_c_twice_once_data_flows(env: Any) -> threading.Thread:
    """Press Ctrl-C twice (SIGINT, 0.3 s apart: bluesky ignores faster repeats)
    as soon as the first data has been collected."""
    flowing = threading.Event()

    def watch(name: str, doc: dict) -> None:
        if name == "stream_datum":
            flowing.set()

    token = env.RE.subscribe(watch)

    def press() -> None:
        try:
            if flowing.wait(30):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.3)
                os.kill(os.getpid(), signal.SIGINT)
        finally:
            env.RE.unsubscribe(token)

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


def _check_partial_run(env: Any, uid: str, names: list[str], full: int) -> dict:
    [stop] = env.of("stop")
    assert stop["exit_status"] == "abort"
    assert "Ctrl-C" in stop["reason"]
    assert panda_idle(env) == (False, False)
    # The IOC's writer is stopped, and the file gets closed and is readable.
    assert env.run(env.beamline.panda.data.capture.get_value()) is False
    rows = dict(zip(names, read_datasets(panda_file(env), *names), strict=True))
    captured = len(rows[names[0]])
    assert 0 < captured < full
    assert stop["num_events"] == {"primary": captured}
    data = tiled_primary(env, uid)
    for name in names:
        np.testing.assert_array_equal(data[name], rows[name])
    assert env.client()[uid].metadata["stop"]["exit_status"] == "abort"
    return data


def test_ctrl_c_during_time_scan(flyscan) -> None:
    frames, period = 100_000, 1e-3  # 100 s if left alone
    presser = _ctrl_c_twice_once_data_flows(flyscan)
    started = time.monotonic()
    with pytest.raises(RunEngineInterrupted):
        flyscan.RE(time_scan(flyscan.beamline.panda, frames, period))
    presser.join(5)
    assert time.monotonic() - started < 20
    assert flyscan.RE.state == "idle"
    [start] = flyscan.of("start")
    data = _check_partial_run(flyscan, start["uid"], ["trigger_time"], frames)
    # What was kept is good data: exact period to the last row.
    np.testing.assert_array_equal(np.diff(ticks(data["trigger_time"])), 125_000)
    assert flyscan.run(flyscan.beamline.panda.seq[1].enable.get_value()) == "ZERO"


def test_ctrl_c_during_position_scan_stops_the_motor(flyscan) -> None:
    x = flyscan.beamline.motor("x")
    num = 401  # 0..40 mm at 2 mm/s: 20 s if left alone
    presser = _ctrl_c_twice_once_data_flows(flyscan)
    with pytest.raises(RunEngineInterrupted):
        flyscan.RE(position_scan(flyscan.beamline.panda, x, 0.0, 40.0, num, velocity=2))
    presser.join(5)
    [start] = flyscan.of("start")
    data = _check_partial_run(flyscan, start["uid"], ["x"], num)
    np.testing.assert_allclose(data["x"], np.arange(len(data["x"])) * 0.1, atol=0.001)
    # Stopped (done moving) short of the end, where the encoder says it is.
    assert flyscan.run(x.motor_done_move.get_value()) == 1
    here = flyscan.run(x.user_readback.get_value())
    assert here < 40.0
    # The IOC polls the PandA: wait for INENC1 (counts) to catch up.
    flyscan.run(
        wait_for_value(
            flyscan.beamline.panda.inenc[1].val,
            lambda v: abs(v * 0.001 - here) <= 0.001,
            timeout=5,
        )
    )
    assert flyscan.run(flyscan.beamline.panda.pcomp[1].enable.get_value()) == "ZERO"


def test_ctrl_c_during_a_spec_scan_map_stops_both_motors(flyscan) -> None:
    from scanspec.specs import Fly, Line

    from panda_flyscan.plans import spec_scan

    bl = flyscan.beamline
    x, y = bl.motor("x"), bl.motor("y")
    spec = Fly(0.01 @ (Line(y, 0, 1, 40) * ~Line(x, 0, 2, 101)))  # about 80 s
    presser = _ctrl_c_twice_once_data_flows(flyscan)
    with pytest.raises(RunEngineInterrupted):
        flyscan.RE(spec_scan(bl.panda, spec))
    presser.join(5)
    [start] = flyscan.of("start")
    data = _check_partial_run(flyscan, start["uid"], ["x", "y"], 40 * 101)
    # What was kept is the map's first rows, in snake order, to one count.
    frames = len(data["x"])
    grid_x = np.tile(np.r_[np.linspace(0, 2, 101), np.linspace(2, 0, 101)], 20)
    np.testing.assert_allclose(data["x"], grid_x[:frames], atol=0.001 + 1e-9)
    for motor in (x, y):
        assert flyscan.run(motor.motor_done_move.get_value()) == 1
    assert flyscan.run(bl.panda.seq[1].enable.get_value()) == "ZERO"
