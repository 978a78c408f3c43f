"""The simulated area detector: ophyd-async's stock areaDetector classes over
real Channel Access, triggered by the simulated PandA, writing real HDF5."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import h5py
import numpy as np
import pytest
from aioca import CANothing, caput
from beamline_helpers import fire, kinetix, panda_send, pulse_train, sim_detector
from ophyd_async.core import (
    DetectorTrigger,
    StandardDetector,
    TriggerInfo,
    observe_value,
)
from ophyd_async.epics.adcore import (
    ADState,
    NDAttributeDataType,
    NDAttributeParam,
    NDAttributePv,
    NDAttributePvDbrType,
    NDFileHDF5IO,
    ndattributes_to_xml,
)
from ophyd_async.epics.adkinetix import KinetixTriggerMode
from ophyd_async.epics.core import epics_signal_r
from ophyd_async.epics.motor import Motor

from panda_flyscan.app.simulated.launcher import SimulatedBeamline
from sim_ioc.detector import Stamp, decode, render
from sim_ioc.world import TICKS_PER_SECOND

pytestmark = pytest.mark.ioc

MS = TICKS_PER_SECOND // 1000


async def _asset_docs(
    det: StandardDetector,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The StreamResources (by data key) and StreamDatums, as plain dicts."""
    resources: dict[str, dict[str, Any]] = {}
    data: list[dict[str, Any]] = []
    async for name, doc in det.collect_asset_docs():
        plain: dict[str, Any] = dict(doc)
        if name == "stream_resource":
            resources[plain["data_key"]] = plain
        else:
            data.append(plain)
    return resources, data


def _frames(path: Path) -> np.ndarray:
    with h5py.File(path, "r", swmr=True) as f:
        data = f["/entry/data/data"]
        assert isinstance(data, h5py.Dataset)
        return data[()]


def _stamps(frames: np.ndarray) -> list[Stamp]:
    stamps = [decode(frame) for frame in frames]
    for frame, stamp in zip(frames, stamps, strict=True):
        np.testing.assert_array_equal(frame, render(stamp, frame.shape))
    return stamps


async def test_stock_sim_detector_writes_frames_h5py_and_stream_resource_agree(
    motor: Motor, beamline: SimulatedBeamline, tmp_path: Path
) -> None:
    await motor.set(0.25)
    det = await sim_detector(beamline, tmp_path)
    # Two NDAttributes, as ophyd-async's setup_ndattributes writes them: a
    # driver parameter and a PV (the motor's readback, served alongside).
    await det.driver.nd_attributes_file.set(
        ndattributes_to_xml(
            [
                NDAttributeParam(
                    "exposure", "ACQ_TIME", NDAttributeDataType.DOUBLE, description=""
                ),
                NDAttributePv(
                    "sample_x", motor.user_readback, NDAttributePvDbrType.DBR_DOUBLE
                ),
            ]
        )
    )
    await det.stage()
    try:
        info = TriggerInfo(number_of_events=5, livetime=0.01, deadtime=0.005)
        await det.prepare(info)
        description = await det.describe()
        described_dtypes = {k: v.get("dtype_numpy") for k, v in description.items()}
        described = description["det"]
        assert described["shape"] == [1, 64, 64]
        assert described.get("dtype_numpy") == "<u2"
        await det.kickoff()
        await det.complete()
        resources, data = await _asset_docs(det)
    finally:
        await det.unstage()
        await det.driver.nd_attributes_file.set("")
    assert {d["indices"]["stop"] for d in data} == {5}
    assert set(resources) == {"det", "exposure", "sample_x"}
    resource = resources["det"]
    assert resource["parameters"]["dataset"] == "/entry/data/data"
    path = Path(urlparse(resource["uri"]).path)
    assert path == tmp_path / "sim.h5"
    with h5py.File(path, "r", swmr=True) as f:
        images = f[resource["parameters"]["dataset"]]
        assert isinstance(images, h5py.Dataset)
        assert images.shape == (5, 64, 64) and images.dtype == np.dtype("<u2")
        assert images.chunks == tuple(resource["parameters"]["chunk_shape"])
        frames = images[()]
        attributes = {}
        for key in ("exposure", "sample_x"):
            dset = f[resources[key]["parameters"]["dataset"]]
            assert isinstance(dset, h5py.Dataset)
            assert dset.chunks == tuple(resources[key]["parameters"]["chunk_shape"])
            assert dset.dtype == np.dtype(described_dtypes[key])
            attributes[key] = dset[()].tolist()
    assert attributes == {"exposure": [0.01] * 5, "sample_x": [0.25] * 5}
    stamps = _stamps(frames)
    assert [s.index for s in stamps] == [0, 1, 2, 3, 4]
    assert {s.position for s in stamps} == {0.25}
    assert {s.exposure for s in stamps} == {10 * MS}
    # Internally triggered every AcquirePeriod = livetime + deadtime, exactly.
    assert set(np.diff([s.tick for s in stamps])) == {15 * MS}


async def test_kinetix_class_takes_edge_and_gate_triggers_from_a_ttlout(
    beamline: SimulatedBeamline, motor: Motor, tmp_path: Path, quiet_ttl: None
) -> None:
    await motor.set(0.5)
    det = await kinetix(beamline, tmp_path, "edge")
    await panda_send(beamline, *pulse_train(pulses=4, step_ms=20, width_ms=5))
    await det.stage()
    try:
        edge = TriggerInfo(
            number_of_events=4, trigger=DetectorTrigger.EXTERNAL_EDGE, livetime=0.01
        )
        await det.prepare(edge)  # arms: the detector now waits for TTLOUT1
        assert await det.driver.trigger_mode.get_value() == KinetixTriggerMode.EDGE
        await det.kickoff()
        await fire(beamline)
        await det.complete()
    finally:
        await det.unstage()
    stamps = _stamps(_frames(tmp_path / "edge.h5"))
    assert set(np.diff([s.tick for s in stamps])) == {20 * MS}
    assert {(s.position, s.exposure) for s in stamps} == {(0.5, 10 * MS)}

    # Gated: each exposure lasts as long as the pulse on TTLOUT1 is high.
    det = await kinetix(beamline, tmp_path, "gate")
    await panda_send(beamline, *pulse_train(pulses=3, step_ms=20, width_ms=7))
    await det.stage()
    try:
        gate = TriggerInfo(number_of_events=3, trigger=DetectorTrigger.EXTERNAL_LEVEL)
        await det.prepare(gate)
        await det.kickoff()
        await fire(beamline)
        await det.complete()
    finally:
        await det.unstage()
    stamps = _stamps(_frames(tmp_path / "gate.h5"))
    assert [s.exposure for s in stamps] == [7 * MS] * 3


async def test_triggers_faster_than_exposure_and_readout_are_dropped_and_reported(
    beamline: SimulatedBeamline, motor: Motor, tmp_path: Path, quiet_ttl: None
) -> None:
    cam = beamline.detector_prefix + "cam1:"
    dropped = epics_signal_r(int, cam + "DroppedTriggers_RBV")
    message = epics_signal_r(str, cam + "StatusMessage_RBV")
    await dropped.connect()
    await message.connect()
    det = await kinetix(beamline, tmp_path, "fast")
    # Six triggers 5 ms apart for 10 ms exposures + 1 ms readout: the 1st and
    # 4th are taken (0 and 15 ms), the other four arrive while busy.
    await panda_send(beamline, *pulse_train(pulses=6, step_ms=5, width_ms=1))
    await det.stage()
    try:
        await det.prepare(
            TriggerInfo(
                number_of_events=6,
                trigger=DetectorTrigger.EXTERNAL_EDGE,
                livetime=0.01,
                exposure_timeout=0.5,
            )
        )
        await det.kickoff()
        await fire(beamline)
        async for count in observe_value(dropped, done_timeout=5):
            if count == 4:
                break
        assert "4 trigger(s) dropped" in await message.get_value()
        # Without looking at the count, a plan only sees frames stop coming.
        with pytest.raises(TimeoutError):
            await det.complete()
        hdf = det.get_plugin("hdf", NDFileHDF5IO)
        assert await hdf.num_captured.get_value() == 2
    finally:
        await det.unstage()
    stamps = _stamps(_frames(tmp_path / "fast.h5"))
    assert np.diff([s.tick for s in stamps]).tolist() == [15 * MS]
    assert await dropped.get_value() == 4  # kept until the next acquisition


def _unwritable_directory(tmp_path: Path) -> Path | None:
    """A directory no file can be created in, even by root, if there is one."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    for candidate in (locked, Path("/sys"), Path("/proc")):
        try:
            fd, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(fd)
        os.unlink(probe)
    return None


async def test_missing_or_unwritable_directories_fail_before_the_scan(
    beamline: SimulatedBeamline, tmp_path: Path
) -> None:
    hdf = beamline.detector_prefix + "HDF1:"
    write_message = epics_signal_r(str, hdf + "WriteMessage")
    await write_message.connect()
    bad = [(tmp_path / "missing" / "deeper", "does not exist")]
    if (unwritable := _unwritable_directory(tmp_path)) is not None:
        bad.append((unwritable, "not writable"))
    for directory, why in bad:
        det = await sim_detector(beamline, directory)
        await det.stage()
        try:
            with pytest.raises(
                FileNotFoundError, match="doesn't exist or not writable"
            ):
                await det.prepare(TriggerInfo(number_of_events=1, livetime=0.01))
            plugin = det.get_plugin("hdf", NDFileHDF5IO)
            assert await plugin.file_path_exists.get_value() is False
            assert why in await write_message.get_value()
            # Capturing anyway is refused too (a put-callback failure).
            with pytest.raises(CANothing):
                await caput(hdf + "Capture", 1, wait=True, timeout=5)
            assert await plugin.capture.get_value() is False
        finally:
            await det.unstage()
    # As ADCore's CreateDirectory: -1 creates the last level of the path.
    det = await sim_detector(beamline, tmp_path / "made")
    plugin = det.get_plugin("hdf", NDFileHDF5IO)
    await plugin.create_directory.set(-1)
    await plugin.file_path.set(f"{tmp_path / 'made'}/")
    assert await plugin.file_path_exists.get_value() is True
    assert (tmp_path / "made").is_dir()


async def test_acquire_time_longer_than_the_trigger_period_is_refused(
    beamline: SimulatedBeamline, tmp_path: Path
) -> None:
    det = await kinetix(beamline, tmp_path, "slow")
    driver = det.driver
    status = epics_signal_r(str, beamline.detector_prefix + "cam1:StatusMessage_RBV")
    await status.connect()
    await driver.trigger_mode.set(KinetixTriggerMode.EDGE)
    await driver.acquire_time.set(0.01)
    # The plan tells the cam the trigger period it will get: 5 ms.
    await driver.acquire_period.set(0.005)
    # Arming is refused: the put-callback fails (as caput -c reports it)...
    with pytest.raises(CANothing):
        await caput(beamline.detector_prefix + "cam1:Acquire", 1, wait=True, timeout=5)
    # ...and the cam says why (what an ophyd-async client must look at: its
    # Signal.set does not raise on a failed put, see docs/simulated-beamline.md).
    assert await driver.detector_state.get_value() == ADState.ERROR
    assert "longer than the trigger period" in await status.get_value()
    assert await driver.acquire.get_value() is False
    # Consistent settings arm as usual.
    await driver.acquire_period.set(0.02)
    armed = driver.acquire.set(True)  # completes when acquisition ends
    async for acquiring in observe_value(driver.acquire, done_timeout=5):
        if acquiring:
            break
    assert await driver.detector_state.get_value() == ADState.ACQUIRE
    await driver.acquire.set(False)
    await armed
    await driver.trigger_mode.set(KinetixTriggerMode.INTERNAL)
    await driver.acquire_period.set(0.0)
