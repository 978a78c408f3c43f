"""Build and connect a real beamline's devices.

>>> RE = RunEngine()
>>> bl = real_beamline_devices(
...     "BL01I-EA-PANDA-01:", "/data", motors={"x": "BL01I-MO-MOTOR-01"}
... )
>>> RE(position_scan(bl.panda, bl.motor("x"), 0, 1, 101))

The builder connects in the RunEngine's event loop (create the RunEngine
first); :func:`connect_beamline` is the ``async`` version, for code that
already runs in that loop. The simulated beamline's builder, which fills in
the simulator's PVs and cabling, is
:func:`panda_flyscan.app.simulated.simulated_beamline_devices`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluesky.run_engine import call_in_bluesky_event_loop, in_bluesky_event_loop
from ophyd_async.core import Device, StandardDetector
from ophyd_async.epics.motor import Motor

from .._compat.bluesky import bluesky_loop_running
from .capture import Capture
from .panda import FlyscanPanda
from .paths import RunFilePathProvider
from .table_stream import PandaControl
from .wiring import PandaWiring

__all__ = [
    "Beamline",
    "connect_beamline",
    "in_bluesky_loop",
    "real_beamline_devices",
]


@dataclass
class Beamline:
    """The connected devices of a beamline and how they are cabled."""

    panda: FlyscanPanda
    path_provider: RunFilePathProvider
    motors: dict[str, Any] = field(default_factory=dict)
    detectors: dict[str, StandardDetector] = field(default_factory=dict)
    #: The PandA's control port, if this host may reach it: spec_scan's
    #: ``control=`` (streamed tables, pause and resume).
    control: PandaControl | None = None

    @property
    def data_dir(self) -> Path:
        """Where the PandA and detectors write (the provider's root)."""
        return Path(self.path_provider.root)

    @property
    def wiring(self) -> PandaWiring:
        return self.panda.wiring

    def motor(self, name: str | None = None) -> Any:
        """A motor by name; the only one if there is only one."""
        if name is None:
            if len(self.motors) != 1:
                raise KeyError(f"say which motor: {sorted(self.motors)}")
            return next(iter(self.motors.values()))
        return self.motors[name]

    @property
    def devices(self) -> list[Device]:
        return [self.panda, *self.motors.values(), *self.detectors.values()]


async def connect_beamline(
    panda_prefix: str,
    data_dir: Path | str,
    *,
    motors: Mapping[str, str] = {},
    detectors: Mapping[str, StandardDetector] = {},
    wiring: PandaWiring | None = None,
    captures: Sequence[Capture] = (),
    data_uri: str | None = None,
    panda_host: str | None = None,
    timeout: float = 10.0,
) -> Beamline:
    """Connect a real beamline's PandA, EPICS motors and detectors.

    Args:
        panda_prefix: The PandA IOC's prefix, e.g. ``"BL01I-EA-PANDA-01:"``.
        data_dir: Where the PandA IOC writes its files (as the IOC sees it).
        motors: Motor name -> motor record PV (ophyd-async ``Motor``).
        detectors: Detectors (already constructed) by name; they must write
            into ``data_dir`` through their own path provider.
        wiring: The cabling; detectors and encoders must be listed here for
            the plans to trigger and compare against them.
        captures: The PandA's default captures.
        data_uri: How Tiled reaches ``data_dir`` if it is mounted elsewhere.
        panda_host: The PandA's address, if this host may reach its control
            port (8888): :attr:`Beamline.control`, so ``spec_scan`` can
            stream its table (paths of any length; pause and resume).
    """
    provider = RunFilePathProvider(data_dir, root_uri=data_uri)
    panda = FlyscanPanda(
        panda_prefix, provider, wiring=wiring, captures=captures, name="panda"
    )
    motor_devices = {name: Motor(pv, name=name) for name, pv in motors.items()}
    await asyncio.gather(
        panda.connect(timeout=timeout),
        *(m.connect(timeout=timeout) for m in motor_devices.values()),
        *(d.connect(timeout=timeout) for d in detectors.values()),
    )
    return Beamline(
        panda=panda,
        path_provider=provider,
        motors=dict(motor_devices),
        detectors=dict(detectors),
        control=PandaControl(panda_host) if panda_host else None,
    )


def real_beamline_devices(
    panda_prefix: str,
    data_dir: Path | str,
    *,
    motors: Mapping[str, str] = {},
    detectors: Mapping[str, StandardDetector] = {},
    wiring: PandaWiring | None = None,
    captures: Sequence[Capture] = (),
    data_uri: str | None = None,
    panda_host: str | None = None,
    timeout: float = 10.0,
) -> Beamline:
    """:func:`connect_beamline` from IPython (a RunEngine must exist)."""
    return in_bluesky_loop(
        connect_beamline(
            panda_prefix,
            data_dir,
            motors=motors,
            detectors=detectors,
            wiring=wiring,
            captures=captures,
            data_uri=data_uri,
            panda_host=panda_host,
            timeout=timeout,
        ),
        timeout,
    )


def in_bluesky_loop(coro: Coroutine[Any, Any, Beamline], timeout: float) -> Beamline:
    """Run a builder coroutine in the RunEngine's event loop, from IPython."""
    if not in_bluesky_event_loop() and not bluesky_loop_running():
        coro.close()
        raise RuntimeError(
            "no RunEngine event loop: create the RunEngine first "
            "(RE = RunEngine()), then build the beamline"
        )
    return call_in_bluesky_event_loop(coro, timeout=timeout + 30)
