"""Build and connect a beamline's devices: the simulated one, or a real one.

>>> RE = RunEngine()
>>> bl = simulated_beamline_devices("/tmp/data")  # $PANDA_PREFIX, $MOTOR_PV, ...
>>> RE(time_scan(bl.panda, frames=1000, period=1e-3))
>>> det = bl.detectors["det"]
>>> RE(position_scan(bl.panda, bl.motor("x"), 0, 1, 101, detectors=[det]))

Both builders connect in the RunEngine's event loop (create the RunEngine
first); :func:`connect_simulated_beamline` and :func:`connect_beamline` are the
``async`` versions, for code that already runs in that loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluesky.run_engine import call_in_bluesky_event_loop, in_bluesky_event_loop
from ophyd_async.core import Device, StandardDetector
from ophyd_async.epics.core import epics_signal_rw
from ophyd_async.epics.motor import Motor

from .capture import Capture
from .detector import SimulatedDetector
from .panda import FlyscanPanda
from .paths import RunFilePathProvider
from .wiring import DetectorWiring, EncoderWiring, PandaWiring

__all__ = [
    "SIM_DETECTOR",
    "SIM_MOTOR",
    "Beamline",
    "connect_beamline",
    "connect_simulated_beamline",
    "real_beamline_devices",
    "simulated_beamline_devices",
]


@dataclass(frozen=True)
class _SimMotorSpec:
    name: str
    inenc: int
    scale: float
    units: str
    velocity: float
    max_velocity: float
    acceleration_time: float


@dataclass(frozen=True)
class _SimDetectorSpec:
    name: str
    ttlout: int


#: The simulated beamline's motor: the motor record ``$MOTOR_PV`` (``SIM:M1``),
#: whose encoder INENC1 reads 1000 counts per mm; set to these speeds when
#: connected.
SIM_MOTOR = _SimMotorSpec(
    name="x",
    inenc=1,
    scale=0.001,
    units="mm",
    velocity=5.0,
    max_velocity=50.0,
    acceleration_time=0.1,
)
#: The simulated beamline's area detector ``$DETECTOR_PREFIX`` (``SIM:DET:``),
#: its trigger input cabled to TTLOUT1.
SIM_DETECTOR = _SimDetectorSpec(name="det", ttlout=1)


@dataclass
class Beamline:
    """The connected devices of a beamline and how they are cabled."""

    panda: FlyscanPanda
    path_provider: RunFilePathProvider
    motors: dict[str, Any] = field(default_factory=dict)
    detectors: dict[str, StandardDetector] = field(default_factory=dict)

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


def _env(name: str, given: str | None) -> str:
    if given:
        return given
    value = os.environ.get(name)
    if not value:
        raise ValueError(
            f"no {name}: pass it, or set it in the environment "
            "(`panda-flyscan sim --env-file sim.env` writes it)"
        )
    return value


async def connect_simulated_beamline(
    data_dir: Path | str,
    *,
    panda_prefix: str | None = None,
    motor_pv: str | None = None,
    detector_prefix: str | None = None,
    timeout: float = 10.0,
) -> Beamline:
    """Connect the simulated beamline: the PandA (through the real IOC), the
    motor record ``x`` (:data:`SIM_MOTOR`, read by INENC1) and the area
    detector ``det`` (:data:`SIM_DETECTOR`, triggered from TTLOUT1).

    ``panda_prefix``, ``motor_pv`` and ``detector_prefix`` default to
    ``$PANDA_PREFIX``, ``$MOTOR_PV`` and ``$DETECTOR_PREFIX`` (set by
    :class:`sim_ioc.launcher.SimulatedBeamline.env`). The PandA's INENC1
    scaling is set to the motor's (captures in mm), the motor to
    :data:`SIM_MOTOR`'s speeds, and the detector's trigger source to its
    TTLOUT. Everything writes under ``data_dir``, one file per device per run.
    """
    prefix = _env("PANDA_PREFIX", panda_prefix)
    pv = _env("MOTOR_PV", motor_pv)
    det_prefix = _env("DETECTOR_PREFIX", detector_prefix)
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    provider = RunFilePathProvider(data)
    spec, det_spec = SIM_MOTOR, SIM_DETECTOR
    wiring = PandaWiring(
        detectors=(DetectorWiring(det_spec.name, ttlout=det_spec.ttlout),),
        encoders=(EncoderWiring(spec.name, inenc=spec.inenc),),
        notes={
            spec.name: f"motor {pv}, encoder INENC{spec.inenc} at "
            f"{spec.scale} {spec.units}/count",
            det_spec.name: f"area detector {det_prefix}, trigger from "
            f"TTLOUT{det_spec.ttlout}",
        },
    )
    panda = FlyscanPanda(
        prefix,
        provider,
        wiring=wiring,
        captures=[
            Capture(f"INENC{spec.inenc}.VAL", spec.name),
            Capture("PCAP.TS_TRIG", "trigger_time"),
        ],
        name="panda",
    )
    motor = Motor(pv, name=spec.name)
    detector = SimulatedDetector(det_prefix, provider, name=det_spec.name)
    await asyncio.gather(
        panda.connect(timeout=timeout),
        motor.connect(timeout=timeout),
        detector.connect(timeout=timeout),
    )
    inenc = panda.inenc[spec.inenc]  # type: ignore[attr-defined]
    # ophyd-async's Motor reads VMAX only; the record clamps VELO to it.
    vmax = epics_signal_rw(float, f"{pv}.VMAX")
    await vmax.connect(timeout=timeout)
    await inenc.val_units.set(spec.units)
    await asyncio.gather(
        inenc.val_scale.set(spec.scale),
        inenc.val_offset.set(0.0),
        vmax.set(spec.max_velocity),
        motor.acceleration_time.set(spec.acceleration_time),
        detector.driver.trigger_source.set(f"TTLOUT{det_spec.ttlout}"),
    )
    await motor.velocity.set(spec.velocity)
    return Beamline(
        panda=panda,
        path_provider=provider,
        motors={spec.name: motor},
        detectors={det_spec.name: detector},
    )


def simulated_beamline_devices(
    data_dir: Path | str,
    *,
    panda_prefix: str | None = None,
    motor_pv: str | None = None,
    detector_prefix: str | None = None,
    timeout: float = 10.0,
) -> Beamline:
    """:func:`connect_simulated_beamline` from IPython (a RunEngine must exist)."""
    return _in_bluesky_loop(
        connect_simulated_beamline(
            data_dir,
            panda_prefix=panda_prefix,
            motor_pv=motor_pv,
            detector_prefix=detector_prefix,
            timeout=timeout,
        ),
        timeout,
    )


async def connect_beamline(
    panda_prefix: str,
    data_dir: Path | str,
    *,
    motors: Mapping[str, str] = {},
    detectors: Mapping[str, StandardDetector] = {},
    wiring: PandaWiring | None = None,
    captures: Sequence[Capture] = (),
    data_uri: str | None = None,
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
    timeout: float = 10.0,
) -> Beamline:
    """:func:`connect_beamline` from IPython (a RunEngine must exist)."""
    return _in_bluesky_loop(
        connect_beamline(
            panda_prefix,
            data_dir,
            motors=motors,
            detectors=detectors,
            wiring=wiring,
            captures=captures,
            data_uri=data_uri,
            timeout=timeout,
        ),
        timeout,
    )


def _in_bluesky_loop(coro: Coroutine[Any, Any, Beamline], timeout: float) -> Beamline:
    if not in_bluesky_event_loop() and not _bluesky_loop_running():
        coro.close()
        raise RuntimeError(
            "no RunEngine event loop: create the RunEngine first "
            "(RE = RunEngine()), then build the beamline"
        )
    return call_in_bluesky_event_loop(coro, timeout=timeout + 30)


def _bluesky_loop_running() -> bool:
    from bluesky import run_engine

    loop = run_engine._bluesky_event_loop
    return loop is not None and loop.is_running()
