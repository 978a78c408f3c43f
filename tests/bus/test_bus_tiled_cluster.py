"""Two RunEngines on two simulated beamlines writing at once through the bus
(one subject each) and one writer service into a Tiled cluster (two servers
on one PostgreSQL and one Redis): both runs complete, equal to their PandA
files, read back through the server the service does not write to."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bluesky import RunEngine
from storage_pg import (  # pyright: ignore[reportMissingImports] (tests/storage)
    tiled_cluster_config,
)

from panda_flyscan.app.simulated import SimulatedBeamline, simulated_beamline_devices
from panda_flyscan.app.simulated.epics_env import without_epics
from panda_flyscan.polling import poll_until
from panda_flyscan.processes import ManagedProcess
from panda_flyscan.storage import (
    TiledCluster,
    read_field,
)
from panda_flyscan.storage.bus import BusOptions, BusPublisher, NatsServer
from panda_flyscan.storage.hdf5 import read_datasets

API_KEY = "busclustertest"
HERE = Path(__file__).parent


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[TiledCluster, Path]]:
    with (
        tiled_cluster_config(tmp_path, API_KEY) as (config, panda_data),
        TiledCluster(
            config, servers=2, api_key=API_KEY, log_dir=tmp_path / "logs"
        ) as tiled,
    ):
        yield tiled, panda_data


def _check(client: Any, uid: str, path: Path, frames: int) -> None:
    rows = read_field(client, uid, "primary", "trigger_time")
    (in_file,) = read_datasets(path, "trigger_time")
    assert len(rows) == frames == len(in_file)
    np.testing.assert_array_equal(rows, in_file)
    assert client[uid].metadata["stop"]["exit_status"] == "success"


def test_two_beamlines_write_at_once_through_the_bus_into_a_cluster(
    beamline: SimulatedBeamline,
    cluster: tuple[TiledCluster, Path],
    tmp_path: Path,
) -> None:
    tiled, panda_data = cluster
    written_through, read_through = tiled.services
    with (
        NatsServer(tmp_path / "nats") as bus,
        SimulatedBeamline("TWO", log_dir=tmp_path / "beamline-two") as second,
    ):
        service = ManagedProcess(
            "writer",
            [
                sys.executable,
                *("-m", "panda_flyscan", "tiled", "writer", "--bus", bus.url),
                *("--tiled-uri", written_through.uri, "--api-key", API_KEY),
                *("--state-dir", str(tmp_path / "writer-state")),
            ],
            tmp_path / "writer.log",
            dict(os.environ),
            ready=re.compile(r"writer service: .*"),
        )
        RE = RunEngine({})
        publisher = BusPublisher(BusOptions(bus.url), "one", journal_dir=tmp_path / "j")
        RE.subscribe(publisher)
        # The second RunEngine's process talks only to the second beamline.
        env = {**without_epics(os.environ), **second.env}
        other = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "bus_second_runengine.py"),
                *(str(panda_data / "two"), bus.url, "two", "4000"),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            service.start()
            service.wait_ready(60)
            assert other.stdout is not None
            start_line = other.stdout.readline()  # its run is under way
            assert start_line.startswith("START "), start_line
            devices = simulated_beamline_devices(
                panda_data / "one",
                panda_prefix=beamline.panda_prefix,
                motor_pv=beamline.motor_pv,
                detector_prefix=beamline.detector_prefix,
            )
            from panda_flyscan.plans import time_scan

            (uid_one,) = RE(time_scan(devices.panda, 3000, 1e-3))  # pyright: ignore[reportGeneralTypeIssues]
            done = other.stdout.readline().split()
            assert other.wait(60) == 0
            assert done[0] == "DONE", done
            uid_two, path_two = done[1], Path(done[2])
            info = devices.path_provider.last["panda"]
            path_one = Path(info.directory_path) / f"{info.filename}.h5"

            reader = read_through.client()

            def both_complete() -> bool:
                try:
                    return all(
                        bool(reader[uid].metadata.get("stop"))
                        for uid in (uid_one, uid_two)
                    )
                except KeyError:  # not there yet
                    return False

            poll_until(both_complete, timeout=60, interval=0.1)
            _check(reader, uid_one, path_one, 3000)
            _check(reader, uid_two, path_two, 4000)
            assert reader[uid_one].metadata["start"]["uid"] == uid_one
        finally:
            if other.poll() is None:
                other.kill()
                other.wait()
            service.stop()
            publisher.close()
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel(), RE.loop).result(10)
            RE.loop.call_soon_threadsafe(RE.loop.stop)


async def _cancel() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
