"""The devices against the simulator and the real IOC: captures applied as
declared, a file per run, the simulated axis moving."""

from __future__ import annotations

import asyncio

import pytest
from ophyd_async.core import wait_for_value
from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Get
from plan_helpers import panda_file

from panda_flyscan.devices import Capture, apply_captures
from panda_flyscan.plans import time_scan
from panda_flyscan.storage import external_assets, read_stream

pytestmark = pytest.mark.ioc


def test_apply_captures_captures_exactly_what_is_declared(flyscan, beamline) -> None:
    """Checked on the PandA itself (its control port): the IOC's records may
    lag behind it by a poll."""
    panda = flyscan.beamline.panda
    flyscan.set(panda.counter[1].out_capture, "Value")  # left over from elsewhere
    captures = [
        Capture("INENC1.VAL", "angle", "Mean"),
        Capture("PCAP.TS_TRIG", "trigger_time"),
    ]
    flyscan.RE(apply_captures(panda, captures))
    assert asyncio.run(_panda_get(beamline.panda_host, "*CAPTURE")) == [
        "INENC1.VAL Mean",
        "PCAP.TS_TRIG Value",
    ]
    assert flyscan.run(panda.inenc[1].val_dataset.get_value()) == "angle"


async def _panda_get(host: str, what: str) -> list[str]:
    async with AsyncioClient(host) as client:
        return sorted(await client.send(Get(what)))


def test_each_run_gets_its_own_file(flyscan) -> None:
    panda = flyscan.beamline.panda
    (first,) = flyscan.RE(time_scan(panda, 5, 1e-3))
    first_file = panda_file(flyscan)
    (second,) = flyscan.RE(time_scan(panda, 7, 1e-3))
    second_file = panda_file(flyscan)
    assert first_file != second_file
    assert first_file.parent == second_file.parent  # <data>/<YYYY-MM-DD>
    assert first_file.parent.parent == flyscan.data_dir
    client = flyscan.client()
    assert len(read_stream(client, first)["trigger_time"]) == 5
    assert len(read_stream(client, second)["trigger_time"]) == 7
    [asset] = external_assets(client, first, "primary", "trigger_time")
    assert asset.path == first_file


def test_motor_moves_the_simulated_encoder(flyscan) -> None:
    x = flyscan.beamline.motor("x")
    panda = flyscan.beamline.panda
    flyscan.RE(_mv(x, 1.234))
    assert flyscan.run(x.locate())["readback"] == pytest.approx(1.234, abs=0.001)
    # The PandA (through the IOC) reads the same position on INENC1, in
    # counts, and scales captures to mm (the IOC polls: let it catch up).
    scale = flyscan.run(panda.inenc[1].val_scale.get_value())
    assert scale == pytest.approx(0.001)
    flyscan.run(wait_for_value(panda.inenc[1].val, 1234, timeout=5))


def test_simulated_beamline_is_built_as_documented(flyscan) -> None:
    """The builder's motor is the motor record, its detector the simulated
    area detector wired to TTLOUT1 with its trigger source set to match."""
    from ophyd_async.epics.motor import Motor

    from panda_flyscan.app.simulated import SIM_MOTOR, SimulatedDetector

    bl = flyscan.beamline
    x = bl.motor("x")
    assert isinstance(x, Motor)
    det = bl.detectors["det"]
    assert isinstance(det, SimulatedDetector)
    assert bl.wiring.ttlout_for("det") == 1
    assert bl.wiring.encoder_for("x") == 1
    assert flyscan.run(det.driver.trigger_source.get_value()) == "TTLOUT1"
    assert flyscan.run(x.max_velocity.get_value()) == SIM_MOTOR.max_velocity
    # Its dead time is the detector's own readout time, not a constant.
    _, deadtime = flyscan.run(det.get_trigger_deadtime())
    assert deadtime == flyscan.run(det.driver.readout_time.get_value()) > 0


def _mv(motor, position):
    import bluesky.plan_stubs as bps

    yield from bps.mv(motor, position)
