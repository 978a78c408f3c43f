"""Fixtures of the bus tests: a real nats-server with JetStream, a real
Tiled server, the session's simulated beamline with a RunEngine publishing
to the bus, and the writer service as its own process
(``python -m panda_flyscan tiled writer --bus ...``), stopped or killed by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bluesky import RunEngine

from panda_flyscan.app.simulated import SimulatedBeamline, simulated_beamline_devices
from panda_flyscan.devices import Beamline
from panda_flyscan.polling import poll_until
from panda_flyscan.processes import ManagedProcess
from panda_flyscan.storage import TiledService, read_field
from panda_flyscan.storage.bus import BusOptions, BusPublisher, NatsServer
from panda_flyscan.storage.hdf5 import read_datasets

API_KEY = "bustests"
BEAMLINE = "session"
WRITER_READY = re.compile(r"writer service: .*")


@dataclass(eq=False)  # subscribed to the RunEngine: hashed by identity
class BusEnv:
    """A RunEngine publishing to the bus, the bus, Tiled, and the devices."""

    RE: Any
    devices: Beamline
    bus: NatsServer
    tiled: TiledService
    publisher: BusPublisher
    base: Path
    docs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    writers: list[ManagedProcess] = field(default_factory=list)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))

    def run_docs(self, uid: str) -> list[tuple[str, dict[str, Any]]]:
        """The documents of run ``uid`` as the RunEngine emitted them."""
        owned = {uid}
        out = []
        for name, doc in self.docs:
            key = (
                doc.get("run_start")
                or doc.get("descriptor")
                or doc.get("stream_resource")
            )
            if (name == "start" and doc["uid"] == uid) or key in owned:
                out.append((name, doc))
                if name in ("descriptor", "stream_resource", "resource"):
                    owned.add(doc["uid"])
        return out

    def start_writer(self, state_dir: Path | None = None) -> ManagedProcess:
        """``panda-flyscan tiled writer --bus ...`` as a process; returns
        once it consumes."""
        state_dir = state_dir or self.base / "writer-state"
        for earlier in self.writers:  # one service at a time, whatever failed
            earlier.stop()
        argv = [
            sys.executable,
            *("-m", "panda_flyscan", "tiled", "writer"),
            *("--bus", self.bus.url, "--tiled-uri", self.tiled.uri),
            *("--api-key", API_KEY, "--state-dir", str(state_dir)),
        ]
        number = len(self.writers)
        process = ManagedProcess(
            "writer",
            argv,
            self.base / f"writer-{number}.log",
            dict(os.environ),
            ready=WRITER_READY,
        )
        self.writers.append(process)
        process.start()
        process.wait_ready(60)
        return process

    def client(self) -> Any:
        return self.tiled.client()

    def wait_complete(self, uid: str, timeout: float = 60) -> None:
        """Until Tiled holds run ``uid`` with its stop document (Tiled
        announces nothing this test can wait on)."""

        def complete() -> bool:
            client = self.client()
            try:
                return bool(client[uid].metadata.get("stop"))
            except Exception:  # not there yet, or a partial copy being replaced
                return False

        poll_until(complete, timeout=timeout, interval=0.1)

    def panda_file(self) -> Path:
        info = self.devices.path_provider.last["panda"]
        return Path(info.directory_path) / f"{info.filename}.h5"

    def check_against_file(self, uid: str, frames: int) -> None:
        """Tiled's PandA rows equal the HDF5 file's, no row twice."""
        rows = read_field(self.client(), uid, "primary", "trigger_time")
        (in_file,) = read_datasets(self.panda_file(), "trigger_time")
        assert len(rows) == frames == len(in_file)
        np.testing.assert_array_equal(rows, in_file)
        assert len(np.unique(rows)) == frames

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.RE.loop).result(timeout)


@pytest.fixture(scope="module")
def bus_env(
    beamline: SimulatedBeamline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BusEnv]:
    base = tmp_path_factory.mktemp("bus")
    data_dir = base / "panda-data"
    data_dir.mkdir()
    with (
        NatsServer(base / "nats") as bus,
        TiledService(base / "tiled", api_key=API_KEY, readable=[data_dir]) as tiled,
    ):
        RE = RunEngine({})
        publisher = BusPublisher(
            BusOptions(bus.url), BEAMLINE, journal_dir=base / "publisher-journal"
        )
        devices = simulated_beamline_devices(
            data_dir,
            panda_prefix=beamline.panda_prefix,
            motor_pv=beamline.motor_pv,
            detector_prefix=beamline.detector_prefix,
        )
        env = BusEnv(RE, devices, bus, tiled, publisher, base)
        RE.subscribe(publisher)
        RE.subscribe(env)
        try:
            yield env
        finally:
            for process in env.writers:
                process.stop()
            publisher.close()
            with contextlib.suppress(Exception):
                env.run(_cancel_other_tasks())
            RE.loop.call_soon_threadsafe(RE.loop.stop)


async def _cancel_other_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
