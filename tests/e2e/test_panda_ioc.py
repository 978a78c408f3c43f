"""The real PandABlocks-ioc against the simulated PandA, driven by ophyd-async."""

from __future__ import annotations

import asyncio
from pathlib import Path

import h5py
import numpy as np
import pytest
from ophyd_async.core import (
    StaticFilenameProvider,
    StaticPathProvider,
    init_devices,
)
from ophyd_async.fastcs.panda import HDFPanda
from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import CommandException, Get, Put, Raw
from seq_capture import capture_seq_triggered

from panda_flyscan.storage.hdf5 import read_datasets

pytestmark = pytest.mark.ioc


async def test_hdfpanda_connects_with_typed_blocks(beamline, tmp_path: Path) -> None:
    provider = StaticPathProvider(StaticFilenameProvider("x"), tmp_path)
    async with init_devices():
        panda = HDFPanda(beamline.panda_prefix, provider)
    # DeviceVectors sized from the real firmware counts.
    assert sorted(panda.seq) == [1, 2]
    assert sorted(panda.pulse) == [1, 2, 3, 4]
    assert sorted(panda.pcomp) == [1, 2]
    assert sorted(panda.inenc) == [1, 2, 3, 4]  # type: ignore[attr-defined]
    assert sorted(panda.counter) == list(range(1, 9))  # type: ignore[attr-defined]
    assert await panda.pcap.active.get_value() is False
    # A write through the IOC reaches the simulator and reads back.
    await panda.pulse[2].width.set(0.25)
    assert await panda.pulse[2].width.get_value() == pytest.approx(0.25)


async def test_seq_triggered_capture_writes_exact_timestamps(
    beamline, tmp_path: Path
) -> None:
    frames, period_us = 500, 1000
    result = await capture_seq_triggered(
        beamline.panda_prefix, tmp_path, frames, period_us, 200
    )
    assert len(result.ts_trig) == frames
    # Timestamps are whole ticks and exactly one programmed period apart.
    ticks = np.rint(result.ts_trig / 8e-9).astype(np.int64)
    np.testing.assert_allclose(result.ts_trig, ticks * 8e-9, atol=1e-12)
    np.testing.assert_array_equal(np.diff(ticks), period_us * 125)
    # COUNTER1 counted the same edges PCAP captured on.
    np.testing.assert_array_equal(np.diff(result.counter), np.ones(frames - 1))
    assert result.counter[0] in (0, 1)
    with h5py.File(result.path) as f:
        assert set(f) >= {"ts_trig", "counter"}


async def test_pcomp_capture_during_constant_velocity_move(
    beamline, tmp_path: Path
) -> None:
    """PCOMP on INENC1 fires at START + i*STEP while the axis moves at constant
    speed; PCAP captures INENC1.VAL (scaled) at each pulse."""
    start, step, pulses, scale = 1000, 250, 40, 0.001
    async with AsyncioClient(beamline.panda_host) as client:
        for line in [
            "*SIM.POSITION.INENC1=0",
            "INENC1.VAL.SCALE=0.001",
            "INENC1.VAL.UNITS=mm",
            "PCOMP1.INP=INENC1.VAL",
            f"PCOMP1.START={start}",
            f"PCOMP1.STEP={step}",
            "PCOMP1.WIDTH=10",
            f"PCOMP1.PULSES={pulses}",
            "PCOMP1.DIR=Positive",
            "PCOMP1.PRE_START=0",
            "PCOMP1.ENABLE=PCAP.ACTIVE",
            "PCAP.ENABLE=ONE",
            "PCAP.GATE=ONE",
            "PCAP.TRIG=PCOMP1.OUT",
            "PCAP.TRIG_EDGE=Rising",
        ]:
            await client.send(Raw([line]))
    provider = StaticPathProvider(StaticFilenameProvider("pcomp"), tmp_path)
    async with init_devices():
        panda = HDFPanda(beamline.panda_prefix, provider)
    inenc = panda.inenc[1]  # type: ignore[attr-defined]
    await inenc.val_capture.set("Value")
    await inenc.val_dataset.set("angle")
    from ophyd_async.core import DetectorTrigger, TriggerInfo

    await panda.stage()
    try:
        await panda.prepare(
            TriggerInfo(number_of_events=pulses, trigger=DetectorTrigger.EXTERNAL_LEVEL)
        )
        await panda.kickoff()
        async with AsyncioClient(beamline.panda_host) as client:
            end = start + step * (pulses + 2)
            # 20000 counts/s: the whole pass takes about half a second.
            await client.send(Raw([f"*SIM.MOVE.INENC1={end} 20000"]))
        await asyncio.wait_for(panda.complete(), timeout=30)
    finally:
        await panda.unstage()
    [angle] = read_datasets(tmp_path / "pcomp.h5", "angle")
    expected = (start + step * np.arange(pulses)) * scale
    np.testing.assert_allclose(angle, expected, atol=scale * 1.0001)


async def test_bad_requests_get_err_and_the_simulator_keeps_serving(beamline) -> None:
    async with AsyncioClient(beamline.panda_host) as client:
        with pytest.raises(CommandException, match="Invalid bit bus selection"):
            await client.send(Put("PCAP.TRIG", "NOT_A_SIGNAL"))
        with pytest.raises(CommandException, match="No such field"):
            await client.send(Get("PCAP.NOT_A_FIELD"))
        too_long = ["1 0 1 1"] * 4097
        with pytest.raises(CommandException, match="Too many points for table"):
            await client.send(Put("SEQ2.TABLE", too_long))
        # Still serving, and the refused writes changed nothing.
        assert str(await client.send(Get("*IDN"))).startswith("PandA SW")
        assert await client.send(Get("SEQ2.TABLE.LENGTH")) == "0"
