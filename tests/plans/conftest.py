"""Fixtures of the plan tests: the session's simulated beamline (real IOC), a
real Tiled server, a RunEngine writing into it, and the connected devices.

One RunEngine and one set of devices serve the whole session (connecting the
PandA through PVI takes a while); each test gets a fresh document record and
checks that no run was left open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine

from panda_flyscan.app.simulated import SimAxis, simulated_beamline_devices
from panda_flyscan.devices import Beamline
from panda_flyscan.storage import (
    DurableTiledWriter,
    TiledService,
    subscribe_tiled_writer,
)

#: Key of the test Tiled server (alphanumeric, as Tiled requires).
API_KEY = "plantests"


@dataclass(eq=False)  # subscribed to the RunEngine: hashed by identity
class Flyscan:
    """Everything a plan test needs."""

    RE: RunEngine
    beamline: Beamline
    tiled: TiledService
    writer: DurableTiledWriter
    data_dir: Path
    docs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))

    def of(self, name: str) -> list[dict[str, Any]]:
        return [doc for n, doc in self.docs if n == name]

    def client(self) -> Any:
        return self.tiled.client()

    def run(self, coro: Any) -> Any:
        """Run a coroutine in the RunEngine's loop (where the devices live)."""
        return call_in_bluesky_loop(self.RE, coro)

    def set(self, signal: Any, value: Any) -> None:
        """Set a signal from the test's thread, in the RunEngine's loop."""

        async def put() -> None:
            await signal.set(value)

        self.run(put())

    def files(self) -> set[Path]:
        return set(self.data_dir.rglob("*.h5"))


def call_in_bluesky_loop(RE: RunEngine, coro: Any) -> Any:
    import asyncio

    return asyncio.run_coroutine_threadsafe(coro, RE.loop).result(30)


@pytest.fixture(scope="session")
def flyscan_session(
    beamline: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flyscan]:
    base = tmp_path_factory.mktemp("plans")
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
        env = Flyscan(RE, devices, tiled, writer, data_dir)
        RE.subscribe(env)
        try:
            yield env
        finally:
            if writer.token is not None:
                RE.unsubscribe(writer.token)
            writer.close()
            # Monitors and the like end with the loop, quietly.
            with contextlib.suppress(Exception):
                env.run(_cancel_other_tasks())
            RE.loop.call_soon_threadsafe(RE.loop.stop)


async def _cancel_other_tasks() -> None:
    import asyncio

    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture(scope="session")
def sim_axis(flyscan_session: Flyscan, beamline: Any) -> Iterator[SimAxis]:
    """The simulator's axis INENC1 (the motor's) moved by ``*SIM`` commands:
    constant speed with no acceleration, so its motion is known exactly."""
    axis = SimAxis(beamline.panda_host, "INENC1", name="x")
    flyscan_session.run(axis.connect())
    try:
        yield axis
    finally:
        with contextlib.suppress(Exception):
            flyscan_session.run(axis.close())


@pytest.fixture
def flyscan(flyscan_session: Flyscan) -> Iterator[Flyscan]:
    """The session's Flyscan with an empty document record."""
    env = flyscan_session
    env.docs.clear()
    yield env
    if env.RE.state != "idle":
        env.RE.halt()
    assert all(doc.get("exit_status") for doc in env.of("stop")), "run left open"
