"""A position-based flyscan of the whole simulated beamline: the motor carries
the sample, PCOMP on the motor's encoder fires at fixed positions, each pulse
captures a PandA row and triggers a detector frame, and frame i must show the
sample at the position captured in row i. Driven with the stock ophyd-async
devices directly, then as a bluesky run read back through Tiled."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import h5py
import numpy as np
import pytest
from beamline_helpers import connect_motor, counts, kinetix, panda_send, path_provider
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.core import (
    DetectorTrigger,
    FlyMotorInfo,
    StandardDetector,
    TriggerInfo,
    init_devices,
)
from ophyd_async.epics.motor import Motor
from ophyd_async.fastcs.panda import HDFPanda

from panda_flyscan.app.simulated.launcher import SimulatedBeamline
from panda_flyscan.storage import TiledService, read_stream, subscribe_tiled_writer
from panda_flyscan.storage.hdf5 import read_datasets
from sim_ioc.detector import Stamp, decode, render

pytestmark = pytest.mark.ioc

#: N points, the first at 1.000 mm, every 0.050 mm (encoder: 1000 counts/mm).
POINTS, FIRST, STEP = 20, 1000, 50
#: The motor flies 0.95 -> 2.05 mm at 2 mm/s: a point every 25 ms.
FLY = FlyMotorInfo(start_position=0.95, end_position=2.05, time_for_move=0.55)
#: Each pulse exposes 5 ms (+1 ms readout), well inside the 25 ms period.
LIVETIME = 0.005
#: The PandA captures INENC1.VAL (raw counts) on every PCOMP1 pulse, which
#: also goes out on TTLOUT1, the detector's trigger cable.
PANDA_SETUP = [
    "INENC1.VAL.SCALE=1",
    "INENC1.VAL.OFFSET=0",
    "PCOMP1.INP=INENC1.VAL",
    f"PCOMP1.START={FIRST}",
    f"PCOMP1.STEP={STEP}",
    "PCOMP1.WIDTH=10",
    f"PCOMP1.PULSES={POINTS}",
    "PCOMP1.DIR=Positive",
    "PCOMP1.PRE_START=0",
    "PCOMP1.ENABLE=PCAP.ACTIVE",
    "PCAP.ENABLE=ONE",
    "PCAP.GATE=ONE",
    "PCAP.TRIG=PCOMP1.OUT",
    "PCAP.TRIG_EDGE=Rising",
    "TTLOUT1.VAL=PCOMP1.OUT",
]
PANDA_INFO = TriggerInfo(
    number_of_events=POINTS, trigger=DetectorTrigger.EXTERNAL_LEVEL
)
DETECTOR_INFO = TriggerInfo(
    number_of_events=POINTS, trigger=DetectorTrigger.EXTERNAL_EDGE, livetime=LIVETIME
)


async def _panda(beamline: SimulatedBeamline, directory: Path) -> HDFPanda:
    async with init_devices():
        panda = HDFPanda(beamline.panda_prefix, path_provider(directory, "panda"))
    inenc = panda.inenc[1]  # type: ignore[attr-defined]
    await inenc.val_capture.set("Value")
    await inenc.val_dataset.set("inenc1")
    return panda


def _check_frames_match_positions(captured: np.ndarray, frames: np.ndarray) -> None:
    """Row i of the PandA and frame i of the detector were taken at the same
    place: the frame shows the sample at the position the encoder counted."""
    assert len(captured) == len(frames) == POINTS
    # PCOMP fired exactly on its positions.
    np.testing.assert_array_equal(captured, FIRST + STEP * np.arange(POINTS))
    for i, (row, frame) in enumerate(zip(captured, frames, strict=True)):
        stamp = decode(frame)
        assert stamp.index == i
        np.testing.assert_array_equal(frame, render(stamp, frame.shape))
        # The motor position at the trigger, in counts, is the captured count
        # (the trigger comes a few 8 ns ticks after the count changed).
        assert counts(stamp.position) == row
        assert 0 <= stamp.position * 1000 - row < 0.01


def _detector_frames(path: Path) -> np.ndarray:
    with h5py.File(path, "r", swmr=True) as f:
        data = f["/entry/data/data"]
        assert isinstance(data, h5py.Dataset)
        return data[()]


async def test_position_based_flyscan_frames_match_captured_positions(
    beamline: SimulatedBeamline, tmp_path: Path, quiet_ttl: None
) -> None:
    await panda_send(beamline, *PANDA_SETUP)
    motor = await connect_motor(beamline)
    panda = await _panda(beamline, tmp_path)
    det = await kinetix(beamline, tmp_path, "det")
    await asyncio.gather(panda.stage(), det.stage())
    try:
        await panda.prepare(PANDA_INFO)
        await det.prepare(DETECTOR_INFO)
        await motor.prepare(FLY)  # to the run-up start
        await panda.kickoff()
        await det.kickoff()
        await motor.kickoff()
        await asyncio.wait_for(
            asyncio.gather(motor.complete(), panda.complete(), det.complete()), 30
        )
    finally:
        await asyncio.gather(panda.unstage(), det.unstage())
    [captured] = read_datasets(tmp_path / "panda.h5", "inenc1")
    frames = _detector_frames(tmp_path / "det.h5")
    _check_frames_match_positions(captured.astype(np.int64), frames)


# -- the same run through bluesky and Tiled ----------------------------------------


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TiledService]:
    base = tmp_path_factory.mktemp("tiled")
    (base / "data").mkdir()  # where the PandA and the detector write
    with TiledService(base / "tiled", readable=[base / "data"]) as service:
        yield service


def _fly_plan(
    motor: Motor, panda: StandardDetector, det: StandardDetector
) -> Iterator[Any]:
    yield from bps.stage_all(panda, det)
    uid = yield from bps.open_run()
    yield from bps.prepare(panda, PANDA_INFO, wait=True)
    yield from bps.prepare(det, DETECTOR_INFO, wait=True)
    yield from bps.prepare(motor, FLY, wait=True)
    yield from bps.declare_stream(panda, det, name="primary")
    yield from bps.kickoff_all(panda, det, wait=True)
    yield from bps.kickoff(motor, wait=True)
    yield from bps.collect_while_completing(
        flyers=[motor, panda, det], dets=[panda, det], flush_period=0.2
    )
    yield from bps.close_run()
    yield from bps.unstage_all(panda, det)
    return uid


def test_flyscan_read_back_through_tiled(
    beamline: SimulatedBeamline, tiled: TiledService, tmp_path: Path
) -> None:
    data_dir = tiled.readable[0]
    RE = RunEngine({})
    try:
        writer = subscribe_tiled_writer(
            RE,
            tiled.uri,
            tiled.api_key,
            external_dirs=[data_dir],
            journal_dir=tmp_path / "journal",
        )

        async def setup() -> tuple[Motor, HDFPanda, StandardDetector]:
            await panda_send(beamline, *PANDA_SETUP)
            return (
                await connect_motor(beamline),
                await _panda(beamline, data_dir),
                await kinetix(beamline, data_dir, "det"),
            )

        motor, panda, det = call_in_bluesky_event_loop(setup(), timeout=60)
        try:
            result: Any = RE(_fly_plan(motor, panda, det))
            (uid,) = result
        finally:
            call_in_bluesky_event_loop(panda_send(beamline, "TTLOUT1.VAL=ZERO"))
            RE.unsubscribe(writer.token)
            writer.close()
    finally:
        RE.loop.call_soon_threadsafe(RE.loop.stop)
    stream = read_stream(tiled.client(), uid, "primary")
    # One collection per event: (POINTS, 1, 64, 64) images, POINTS counts.
    images = np.asarray(stream["det"].values).reshape(POINTS, 64, 64)
    captured = np.asarray(stream["inenc1"].values).astype(np.int64)
    _check_frames_match_positions(captured, images)
    # Tiled serves exactly what the files hold.
    np.testing.assert_array_equal(images, _detector_frames(data_dir / "det.h5"))
    assert all(isinstance(decode(i), Stamp) for i in images)
