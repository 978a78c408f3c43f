"""Fixtures of the fault suite: the session's simulated beamline (its IOC
supervised), a real Tiled server, a RunEngine writing into it, and the
connected devices; plus what a test needs to inject a fault and see the
outcome (documents, rows in the file, rows in Tiled).

Faults are injected by PID (the IOC, which the beamline started) or through
the simulator's own controls; each test leaves the beamline working (the
supervisor restarts the IOC; the test waits for it), so the tests after it
run on a healthy beamline.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine

from panda_flyscan.app.simulated import SimulatedBeamline, simulated_beamline_devices
from panda_flyscan.devices import Beamline
from panda_flyscan.storage import (
    DurableTiledWriter,
    TiledService,
    read_field,
    subscribe_tiled_writer,
)
from panda_flyscan.storage.hdf5 import read_datasets

API_KEY = "faulttests"


@dataclass(eq=False)  # subscribed to the RunEngine: hashed by identity
class FaultEnv:
    """The RunEngine, devices and Tiled of the fault tests."""

    #: Typed Any: ``RE(plan)`` returns the run uids (a tuple) unless
    #: ``call_returns_result``, which bluesky's annotation does not say.
    RE: Any
    devices: Beamline
    sim: SimulatedBeamline
    tiled: TiledService
    writer: DurableTiledWriter
    data_dir: Path
    docs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Set at the first StreamDatum of a run (rows are flowing).
    rows_flowing: threading.Event = field(default_factory=threading.Event)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))
        if name == "start":
            self.rows_flowing.clear()
        elif name == "stream_datum":
            self.rows_flowing.set()

    def of(self, name: str) -> list[dict[str, Any]]:
        return [doc for n, doc in self.docs if n == name]

    def client(self) -> Any:
        return self.tiled.client()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine in the RunEngine's loop (where the devices live)."""
        return asyncio.run_coroutine_threadsafe(coro, self.RE.loop).result(timeout)

    def panda_file(self) -> Path:
        info = self.devices.path_provider.last["panda"]
        return Path(info.directory_path) / f"{info.filename}.h5"

    def rows_in_file(self, name: str = "trigger_time") -> int:
        (array,) = read_datasets(self.panda_file(), name, timeout=2.0)
        return len(array)

    def rows_in_tiled(self, uid: str, name: str = "trigger_time") -> int:
        return len(read_field(self.client(), uid, "primary", name))

    def during(self, when: threading.Event, action: Callable[[], None]) -> Fault:
        """Do ``action`` (the fault) in a thread as soon as ``when`` is set."""
        return Fault(when, action)


class Fault(threading.Thread):
    """A fault injected from another thread once an event is set; the time
    it was injected (``time.monotonic()``) is kept."""

    def __init__(self, when: threading.Event, action: Callable[[], None]) -> None:
        super().__init__(name="fault", daemon=True)
        self.when, self.action = when, action
        self.at: float | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        import time

        if not self.when.wait(60):
            return
        self.at = time.monotonic()
        try:
            self.action()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def done(self) -> float:
        """Wait for it; the time it was injected."""
        self.join(60)
        if self.error is not None:
            raise self.error
        assert self.at is not None, "the fault was never injected"
        return self.at


@pytest.fixture(scope="module")
def fault_env(
    beamline: SimulatedBeamline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultEnv]:
    base = tmp_path_factory.mktemp("faults")
    data_dir = base / "panda-data"
    data_dir.mkdir()
    with TiledService(base / "tiled", api_key=API_KEY, readable=[data_dir]) as tiled:
        RE = RunEngine({})
        writer = subscribe_tiled_writer(
            RE,
            tiled.uri,
            API_KEY,
            external_dirs=[data_dir],
            journal_dir=base / "journal",
        )
        devices = simulated_beamline_devices(
            data_dir,
            panda_prefix=beamline.panda_prefix,
            motor_pv=beamline.motor_pv,
            detector_prefix=beamline.detector_prefix,
        )
        env = FaultEnv(RE, devices, beamline, tiled, writer, data_dir)
        RE.subscribe(env)
        try:
            yield env
        finally:
            if writer.token is not None:
                RE.unsubscribe(writer.token)
            writer.close()
            with contextlib.suppress(Exception):
                env.run(_cancel_other_tasks())
            RE.loop.call_soon_threadsafe(RE.loop.stop)


async def _cancel_other_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def faults(fault_env: FaultEnv) -> Iterator[FaultEnv]:
    """The module's FaultEnv with an empty document record; checks that no
    run was left open."""
    fault_env.docs.clear()
    fault_env.rows_flowing.clear()  # set by the last test's scans
    yield fault_env
    if fault_env.RE.state != "idle":
        fault_env.RE.halt()
    assert all(doc.get("exit_status") for doc in fault_env.of("stop")), "run left open"
