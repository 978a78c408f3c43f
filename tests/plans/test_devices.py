"""The devices against the simulator and the real IOC: captures applied as
declared, a file per run, the simulated axis moving."""

from __future__ import annotations

import asyncio

import pytest
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


def test_sim_axis_moves_the_simulated_encoder(flyscan) -> None:
    x = flyscan.beamline.motor("x")
    panda = flyscan.beamline.panda
    flyscan.RE(_mv(x, 1.234))
    assert flyscan.run(x.locate())["readback"] == pytest.approx(1.234, abs=0.001)
    # The PandA (through the IOC) reads the same position on INENC1.
    counts = flyscan.run(x.movable_logic.read_counts())
    assert counts == 1234
    scale = flyscan.run(panda.inenc[1].val_scale.get_value())
    assert scale == pytest.approx(0.001)


def _mv(motor, position):
    import bluesky.plan_stubs as bps

    yield from bps.mv(motor, position)
