"""Our plans with the simulated area detector: frames line up one-to-one with
the PandA's rows (checked through the frame content, which encodes where and
when each was taken), dropped triggers stop the scan with a clear error, and
timing or paths a detector cannot honour are refused before anything runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

import h5py
import numpy as np
import pytest
from ophyd_async.core import SignalDict
from ophyd_async.epics.adcore import ADAcquireLogic, ADWriterFactory, AreaDetector
from plan_helpers import assert_tiled_matches_file, panda_idle, ticks

from panda_flyscan.app.simulated import (
    SimulatedDetectorDriverIO,
    SimulatedDetectorTriggerLogic,
)
from panda_flyscan.devices import DetectorWiring, EncoderWiring, PandaWiring
from panda_flyscan.plans import (
    DroppedTriggersError,
    PlanArgumentError,
    position_scan,
    time_scan,
)
from panda_flyscan.storage import read_stream
from sim_ioc.detector import decode, render

pytestmark = pytest.mark.ioc

TICKS_PER_S = 125_000_000


def _frames(env: Any, name: str = "det") -> np.ndarray:
    """The frames the detector wrote in the last run, read with h5py."""
    info = env.beamline.path_provider.last[name]
    path = Path(info.directory_path) / f"{info.filename}.h5"
    with h5py.File(path, "r", swmr=True) as f:
        data = f["/entry/data/data"]
        assert isinstance(data, h5py.Dataset)
        return data[()]


def _tiled_frames(env: Any, uid: str, name: str = "det") -> np.ndarray:
    frames = np.asarray(read_stream(env.client(), uid, "primary")[name])
    return frames.reshape(-1, *frames.shape[-2:])  # (N, 1, H, W) per event


def _check_frames(frames: np.ndarray) -> list[Any]:
    """Each frame is the simulator's picture of its stamp, in order."""
    stamps = [decode(frame) for frame in frames]
    for i, (stamp, frame) in enumerate(zip(stamps, frames, strict=True)):
        assert stamp.index == i
        np.testing.assert_array_equal(frame, render(stamp, frame.shape))
    return stamps


def test_time_scan_frames_line_up_with_panda_rows(flyscan) -> None:
    bl = flyscan.beamline
    frames, period, exposure = 50, 5e-3, 2e-3
    (uid,) = flyscan.RE(
        time_scan(bl.panda, frames, period, exposure, detectors=[bl.detectors["det"]])
    )
    rows = assert_tiled_matches_file(flyscan, uid, ["trigger_time"])
    images = _frames(flyscan)
    np.testing.assert_array_equal(_tiled_frames(flyscan, uid), images)
    stamps = _check_frames(images)
    assert len(stamps) == len(rows["trigger_time"]) == frames
    # Frame i was triggered by the pulse PCAP timestamped in row i: the same
    # 8 ns ticks apart (the two clocks differ only by their zero).
    panda_ticks = ticks(rows["trigger_time"])
    det_ticks = np.array([s.tick for s in stamps])
    np.testing.assert_array_equal(np.diff(det_ticks), np.diff(panda_ticks))
    np.testing.assert_array_equal(np.diff(det_ticks), round(period * TICKS_PER_S))
    # Gate mode: each exposure is the SEQ pulse, exactly.
    assert {s.exposure for s in stamps} == {round(exposure * TICKS_PER_S)}
    [stop] = flyscan.of("stop")
    assert stop["exit_status"] == "success"
    assert stop["num_events"] == {"primary": frames}


@pytest.mark.parametrize(("start", "stop"), [(1.0, 2.0), (2.0, 1.0)])
def test_position_scan_frame_i_shows_captured_position_i(flyscan, start, stop) -> None:
    bl = flyscan.beamline
    num = 21  # 50 um apart: at 2 mm/s a point every 25 ms, 5 ms exposures
    (uid,) = flyscan.RE(
        position_scan(
            bl.panda,
            bl.motor("x"),
            start,
            stop,
            num,
            velocity=2.0,
            exposure=5e-3,
            detectors=[bl.detectors["det"]],
        )
    )
    rows = assert_tiled_matches_file(flyscan, uid, ["x"])
    images = _frames(flyscan)
    np.testing.assert_array_equal(_tiled_frames(flyscan, uid), images)
    stamps = _check_frames(images)
    captured = np.rint(rows["x"] * 1000).astype(np.int64)  # counts, 1 um each
    np.testing.assert_array_equal(
        captured, np.rint(np.linspace(start, stop, num) * 1000)
    )
    assert len(stamps) == num
    for row, stamp in zip(captured, stamps, strict=True):
        # The motor's position at frame i's trigger is in row i's count (the
        # trigger comes a few ticks after the count changed, either way).
        assert abs(stamp.position * 1000 - row) < 1.0
    assert flyscan.of("stop")[0]["exit_status"] == "success"


class _NoDeadTime(SimulatedDetectorTriggerLogic):
    """A mis-described detector: claims no readout time, so the plan's check
    before the scan passes and the detector has to drop triggers."""

    def get_deadtime(self, config_values: SignalDict) -> float:
        return 0.0


def _optimist(bl: Any, prefix: str) -> AreaDetector[SimulatedDetectorDriverIO]:
    """The simulated detector (same PVs as ``det``) with :class:`_NoDeadTime`."""
    driver = SimulatedDetectorDriverIO(prefix + "cam1:")
    return AreaDetector(
        driver,
        prefix,
        ADWriterFactory.hdf(bl.path_provider),
        acquire_logic=ADAcquireLogic(driver),
        trigger_logic=_NoDeadTime(driver),
        name="optimist",
    )


def test_dropped_triggers_stop_the_scan_with_a_clear_error(flyscan, beamline) -> None:
    bl = flyscan.beamline
    det = _optimist(bl, beamline.detector_prefix)
    flyscan.run(det.connect())
    wiring = PandaWiring(
        detectors=(DetectorWiring("optimist", ttlout=1),),
        encoders=(EncoderWiring("x", inenc=1),),
    )
    readout = flyscan.run(det.driver.readout_time.get_value())
    frames, period, exposure = 40, 1.5e-3, 1e-3
    assert exposure + readout > period  # so every other trigger finds it busy
    with pytest.raises(DroppedTriggersError) as info:
        flyscan.RE(
            time_scan(
                bl.panda, frames, period, exposure, detectors=[det], wiring=wiring
            )
        )
    message = str(info.value)
    assert "detector optimist dropped" in message
    assert "of 40 trigger(s)" in message
    assert "exposure 0.001 s, triggers every 0.0015 s" in message
    dropped = flyscan.run(det.driver.dropped_triggers.get_value())
    taken = len(_check_frames(_frames(flyscan, "optimist")))
    assert dropped > 0 and taken + dropped == frames
    # The run is closed as failed, with the reason, keeping what was captured.
    [stop] = flyscan.of("stop")
    assert stop["exit_status"] == "fail"
    assert "dropped" in stop["reason"]
    assert panda_idle(flyscan) == (False, False)
    assert flyscan.run(det.driver.acquire.get_value()) is False


def test_period_shorter_than_exposure_plus_readout_is_refused(flyscan) -> None:
    bl = flyscan.beamline
    det = bl.detectors["det"]
    readout = flyscan.run(det.driver.readout_time.get_value())
    with pytest.raises(
        PlanArgumentError,
        match=rf"period 0.001 s is shorter than exposure 0.0005 s \+ detector det "
        rf"dead time {readout:g} s",
    ):
        flyscan.RE(time_scan(bl.panda, 10, 1e-3, 0.5e-3, detectors=[det]))
    assert flyscan.of("start") == []
    assert flyscan.run(det.driver.acquire.get_value()) is False


@pytest.fixture
def data_root(flyscan) -> Iterator[Any]:
    """The path provider the PandA and detector share; its root restored."""
    provider = flyscan.beamline.path_provider
    root = provider.root
    yield provider
    provider.root = root


def _unwritable(tmp_path: Path) -> Path | None:
    """A directory the detector cannot create files in (as root, mode bits do
    not stop it: try a read-only file system)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    for candidate in (locked, Path("/sys"), Path("/proc")):
        try:
            (candidate / ".probe").touch()
        except OSError:
            return candidate
        (candidate / ".probe").unlink()
    return None


def test_missing_data_directory_is_refused_before_the_run(
    flyscan, data_root, tmp_path: Path
) -> None:
    bl = flyscan.beamline
    data_root.root = PurePath(tmp_path / "no" / "such" / "dir")
    with pytest.raises(PlanArgumentError) as info:
        flyscan.RE(time_scan(bl.panda, 10, 5e-3, detectors=[bl.detectors["det"]]))
    message = str(info.value)
    assert f"the PandA's IOC cannot write to {data_root.root}" in message
    assert f"detector det cannot write to {data_root.root}" in message
    assert "create the directory" in message
    assert flyscan.of("start") == []
    assert not (tmp_path / "no").exists()
    assert panda_idle(flyscan) == (False, False)


def test_unwritable_detector_directory_is_refused_before_the_run(
    flyscan, data_root, tmp_path: Path
) -> None:
    bl = flyscan.beamline
    unwritable = _unwritable(tmp_path)
    if unwritable is None:
        pytest.skip("no directory here that this user cannot write to")
    data_root.root = PurePath(unwritable)
    with pytest.raises(
        PlanArgumentError, match=f"detector det cannot write to {unwritable}"
    ):
        flyscan.RE(time_scan(bl.panda, 10, 5e-3, detectors=[bl.detectors["det"]]))
    assert flyscan.of("start") == []
