"""A detector that stops delivering frames, and a data disk that fills up,
mid-scan; a scan too big for the disk refused before anything is armed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path, PurePath

import h5py
import numpy as np
import pytest
from conftest import FaultEnv
from fault_table import Outcome, describe, record

from panda_flyscan.app.simulated.detector import SimulatedDetector
from panda_flyscan.plans import time_scan
from panda_flyscan.plans.errors import DetectorStalled, DiskFull, PlanArgumentError
from panda_flyscan.plans.prechecks import FREE_SPACE_FLOOR
from panda_flyscan.storage import read_field
from panda_flyscan.storage.hdf5 import read_datasets

pytestmark = pytest.mark.ioc

ENDS_WITHIN = 10.0


def _detector_frames(faults: FaultEnv, name: str = "det") -> np.ndarray:
    info = faults.devices.path_provider.last[name]
    path = Path(info.directory_path) / f"{info.filename}.h5"
    with h5py.File(path, "r", swmr=True) as f:
        data = f["/entry/data/data"]
        assert isinstance(data, h5py.Dataset)
        return data[()]


def test_detector_stops_mid_scan(faults: FaultEnv) -> None:
    det = faults.devices.detectors["det"]
    assert isinstance(det, SimulatedDetector)
    panda = faults.devices.panda

    async def acquire_off() -> None:
        await det.driver.acquire.set(False)

    def stop_acquiring() -> None:
        faults.run(acquire_off())

    fault = faults.during(faults.rows_flowing, stop_acquiring)
    with pytest.raises(DetectorStalled) as raised:
        faults.RE(time_scan(panda, 3000, 2e-3, 1e-3, detectors=[det]))
    took = time.monotonic() - fault.done()
    print(f"\ndetector stopped: the plan ended {took:.1f} s later: {raised.value}")
    assert took <= ENDS_WITHIN
    assert raised.value.component == "detector det"
    [start], [stop] = faults.of("start"), faults.of("stop")
    assert stop["exit_status"] == "fail" and "DetectorStalled" in stop["reason"]
    uid = start["uid"]
    # One stream: Tiled lists the rows that have their frame, equal to both
    # files' first rows; the PandA's file also holds the rows after.
    rows = read_field(faults.client(), uid, "primary", "trigger_time")
    frames = np.asarray(read_field(faults.client(), uid, "primary", "det"))
    on_disk = _detector_frames(faults)
    (panda_rows,) = read_datasets(faults.panda_file(), "trigger_time", timeout=5)
    n = len(rows)
    assert 0 < n == len(on_disk) <= len(panda_rows) < 3000
    assert len(frames) == n
    np.testing.assert_array_equal(rows, panda_rows[:n])
    np.testing.assert_array_equal(frames.reshape(on_disk.shape), on_disk)
    print(f"  {n} rows with frames kept; the PandA's file has {len(panda_rows)}")
    # The next scan re-arms the detector.
    faults.docs.clear()
    (uid,) = faults.RE(time_scan(panda, 50, 5e-3, 2e-3, detectors=[det]))
    assert len(read_field(faults.client(), uid, "primary", "det")) == 50
    record(
        Outcome(
            "the detector stops acquiring (cam1:Acquire 0) mid-scan; rows = "
            f"frames in its file (the PandA's file: {len(panda_rows):,})",
            took,
            describe(raised.value),
            len(on_disk),
            n,
            True,
            "test_detector_stops_mid_scan",
        )
    )


@pytest.fixture
def small_disk(faults: FaultEnv) -> Iterator[Path]:
    """A 16 MB tmpfs inside the Tiled-readable data directory, where the
    devices' path provider points for the test."""
    mount = faults.data_dir / "small-disk"
    mount.mkdir(exist_ok=True)
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {made.stderr.strip()}")
    provider = faults.devices.path_provider
    root = provider.root
    provider.root = PurePath(mount)
    try:
        yield mount
    finally:
        provider.root = root
        # Lazily: a reader (Tiled's handle cache) may still hold a file.
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until ``leave`` bytes are free; the filler's path."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        free = shutil.disk_usage(disk).free
        block = b"\0" * (1 << 20)
        remaining = free - leave
        while remaining > 0:
            remaining -= f.write(block[: min(len(block), remaining)])
        f.flush()
        os.fsync(f.fileno())
    return filler


def test_disk_fills_up_mid_scan(faults: FaultEnv, small_disk: Path) -> None:
    panda = faults.devices.panda
    filler: list[Path] = []
    fault = faults.during(
        faults.rows_flowing,
        lambda: filler.append(_fill(small_disk, leave=FREE_SPACE_FLOOR // 2)),
    )
    with pytest.raises(DiskFull) as raised:
        faults.RE(time_scan(panda, 200_000, 1e-4))
    took = time.monotonic() - fault.done()
    print(f"\ndisk full: the plan ended {took:.1f} s later: {raised.value}")
    assert took <= ENDS_WITHIN
    assert str(small_disk) in str(raised.value) and "Free space" in str(raised.value)
    [start], [stop] = faults.of("start"), faults.of("stop")
    assert stop["exit_status"] == "fail" and "DiskFull" in stop["reason"]
    # The writer was stopped before it failed: the file is whole and closed.
    (in_file,) = read_datasets(faults.panda_file(), "trigger_time", timeout=10)
    in_tiled = read_field(faults.client(), start["uid"], "primary", "trigger_time")
    assert 0 < len(in_tiled) == len(in_file) < 200_000
    np.testing.assert_array_equal(in_tiled, in_file)
    # Space freed: the next scan into the same filesystem works.
    filler[0].unlink()
    faults.docs.clear()
    (uid,) = faults.RE(time_scan(panda, 500, 1e-4))
    assert len(read_field(faults.client(), uid, "primary", "trigger_time")) == 500
    record(
        Outcome(
            "the data disk fills up mid-scan (a 16 MB tmpfs)",
            took,
            describe(raised.value),
            len(in_file),
            len(in_tiled),
            True,
            "test_disk_fills_up_mid_scan",
        )
    )


def test_a_scan_too_big_for_the_disk_is_refused_before_arming(
    faults: FaultEnv, small_disk: Path
) -> None:
    before = set(small_disk.rglob("*.h5"))
    with pytest.raises(PlanArgumentError) as raised:
        faults.RE(time_scan(faults.devices.panda, 2_000_000, 1e-5))
    message = str(raised.value)
    print(f"\n{message}")
    assert f"not enough free space in {small_disk}" in message
    assert "2000000 rows" in message
    assert faults.of("start") == []  # no run opened
    assert set(small_disk.rglob("*.h5")) == before  # no file written
    with contextlib.suppress(Exception):
        assert not faults.run(faults.devices.panda.pcap.arm.get_value())
    record(
        Outcome(
            "a scan bigger than the disk's free space",
            None,
            describe(raised.value),
            None,
            None,
            None,
            "test_a_scan_too_big_for_the_disk_is_refused_before_arming",
        )
    )
