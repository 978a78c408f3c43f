"""Build and connect the simulated beamline's devices (client side).

>>> RE = RunEngine()
>>> bl = simulated_beamline_devices("/tmp/data")  # $PANDA_PREFIX, $MOTOR_PV, ...
>>> RE(time_scan(bl.panda, frames=1000, period=1e-3))
>>> det = bl.detectors["det"]
>>> RE(position_scan(bl.panda, bl.motor("x"), 0, 1, 101, detectors=[det]))

The PVs come from the environment :class:`.launcher.SimulatedBeamline` prints
(``panda-flyscan sim --env-file``); the cabling is the simulator's.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from ophyd_async.epics.core import epics_signal_rw
from ophyd_async.epics.motor import Motor

from ...devices import (
    Beamline,
    Capture,
    DetectorWiring,
    EncoderWiring,
    FlyscanPanda,
    PandaWiring,
    RunFilePathProvider,
)
from ...devices.beamline import in_bluesky_loop
from .detector import SimulatedDetector

__all__ = [
    "SIM_DETECTOR",
    "SIM_MOTOR",
    "connect_simulated_beamline",
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
    :attr:`.launcher.SimulatedBeamline.env`). The PandA's INENC1 scaling is
    set to the motor's (captures in mm), the motor to :data:`SIM_MOTOR`'s
    speeds, and the detector's trigger source to its
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
    return in_bluesky_loop(
        connect_simulated_beamline(
            data_dir,
            panda_prefix=panda_prefix,
            motor_pv=motor_pv,
            detector_prefix=detector_prefix,
            timeout=timeout,
        ),
        timeout,
    )
