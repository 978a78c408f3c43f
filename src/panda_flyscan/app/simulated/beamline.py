"""Build and connect the simulated beamline's devices (client side).

>>> RE = RunEngine()
>>> bl = simulated_beamline_devices("/tmp/data")  # $PANDA_PREFIX, $MOTOR_PV...
>>> RE(time_scan(bl.panda, frames=1000, period=1e-3))
>>> det = bl.detectors["det"]
>>> RE(position_scan(bl.panda, bl.motor("x"), 0, 1, 101, detectors=[det]))
>>> RE(bps.mv(bl.motor("y"), 0.25))  # x, y, z: motor records M1, M2, M3

The PVs come from the environment :class:`.launcher.SimulatedBeamline` prints
(``panda-flyscan sim --env-file``); the cabling is the simulator's.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from ophyd_async.core import SignalRW
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
from ...devices.table_stream import PandaControl
from .detector import SimulatedDetector

__all__ = [
    "SIM_DETECTOR",
    "SIM_DETECTORS",
    "SIM_MOTOR",
    "SIM_MOTORS",
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
    #: The motor record below the prefix (``M1``) and the variable naming it.
    record: str = "M1"
    env: str = "MOTOR_PV"


@dataclass(frozen=True)
class _SimDetectorSpec:
    name: str
    ttlout: int
    #: Below the prefix (``DET:``), and the variable naming the whole prefix.
    suffix: str = "DET:"
    env: str = "DETECTOR_PREFIX"


def _motor(name: str, n: int, env: str) -> _SimMotorSpec:
    # 1000 counts per mm on every axis (the simulator's default); the speeds
    # are the client's, set when connected.
    return _SimMotorSpec(
        name=name,
        inenc=n,
        scale=0.001,
        units="mm",
        velocity=5.0,
        max_velocity=50.0,
        acceleration_time=0.1,
        record=f"M{n}",
        env=env,
    )


#: The simulated beamline's motors x, y, z: the motor records ``$MOTOR_PV``
#: (``SIM:M1``), ``$MOTOR_PV_Y`` (``SIM:M2``) and ``$MOTOR_PV_Z`` (``SIM:M3``),
#: whose encoders INENC1, INENC2, INENC3 read 1000 counts per mm; set to these
#: speeds when connected. The sample the detectors image sits on x and y.
SIM_MOTORS: tuple[_SimMotorSpec, ...] = (
    _motor("x", 1, "MOTOR_PV"),
    _motor("y", 2, "MOTOR_PV_Y"),
    _motor("z", 3, "MOTOR_PV_Z"),
)
#: The first of :data:`SIM_MOTORS`, x (the one motor before there were three).
SIM_MOTOR = SIM_MOTORS[0]
#: The simulated beamline's area detectors: ``det`` (``$DETECTOR_PREFIX``,
#: ``SIM:DET:``, 1 ms readout) triggered from TTLOUT1, and the slow ``det2``
#: (``$DETECTOR2_PREFIX``, ``SIM:DET2:``, 5 ms readout) from TTLOUT2.
SIM_DETECTORS: tuple[_SimDetectorSpec, ...] = (
    _SimDetectorSpec(name="det", ttlout=1),
    _SimDetectorSpec(name="det2", ttlout=2, suffix="DET2:", env="DETECTOR2_PREFIX"),
)
#: The first of :data:`SIM_DETECTORS`, det.
SIM_DETECTOR = SIM_DETECTORS[0]


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


def _sibling(name: str, given: str | None, first: str, old: str, new: str) -> str:
    """``given``, else ``$name``, else the first device's PV with its last
    ``old`` made ``new`` (the simulator names them ``PREFIX:M1``,
    ``PREFIX:M2``..., so an environment written before there were more still
    finds them)."""
    if given:
        return given
    value = os.environ.get(name)
    if value:
        return value
    head, found, tail = first.rpartition(old)
    if not found:
        return _env(name, None)
    return head + new + tail


async def connect_simulated_beamline(
    data_dir: Path | str,
    *,
    panda_prefix: str | None = None,
    motor_pv: str | None = None,
    motor_pv_y: str | None = None,
    motor_pv_z: str | None = None,
    detector_prefix: str | None = None,
    detector2_prefix: str | None = None,
    timeout: float = 10.0,
) -> Beamline:
    """Connect the simulated beamline: the PandA (through the real IOC), the
    motor records ``x``, ``y``, ``z`` (:data:`SIM_MOTORS`, read by INENC1,
    INENC2, INENC3; stock ophyd-async ``Motor``s) and the area detectors
    ``det`` and ``det2`` (:data:`SIM_DETECTORS`, triggered from TTLOUT1 and
    TTLOUT2).

    ``panda_prefix``, ``motor_pv`` (x), ``motor_pv_y``, ``motor_pv_z``,
    ``detector_prefix`` and ``detector2_prefix`` default to ``$PANDA_PREFIX``,
    ``$MOTOR_PV``, ``$MOTOR_PV_Y``, ``$MOTOR_PV_Z``, ``$DETECTOR_PREFIX`` and
    ``$DETECTOR2_PREFIX`` (set by :attr:`.launcher.SimulatedBeamline.env`);
    without them y, z and det2 are x's and det's siblings (``...:M1`` ->
    ``...:M2``, ``...:DET:`` -> ``...:DET2:``). Each motor's INENC scaling is
    set on the PandA (captures in mm), each motor to its spec's speeds, and
    each detector's trigger source to its TTLOUT. The PandA captures x (INENC1)
    and the trigger time by default. Everything writes under ``data_dir``, one
    file per device per run.
    """
    prefix = _env("PANDA_PREFIX", panda_prefix)
    x_pv = _env("MOTOR_PV", motor_pv)
    pvs = {
        "x": x_pv,
        "y": _sibling("MOTOR_PV_Y", motor_pv_y, x_pv, ":M1", ":M2"),
        "z": _sibling("MOTOR_PV_Z", motor_pv_z, x_pv, ":M1", ":M3"),
    }
    det_prefix = _env("DETECTOR_PREFIX", detector_prefix)
    det_prefixes = {
        "det": det_prefix,
        "det2": _sibling(
            "DETECTOR2_PREFIX", detector2_prefix, det_prefix, ":DET:", ":DET2:"
        ),
    }
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    provider = RunFilePathProvider(data)
    notes = {
        m.name: f"motor {pvs[m.name]}, encoder INENC{m.inenc} at "
        f"{m.scale} {m.units}/count"
        for m in SIM_MOTORS
    }
    notes.update(
        {
            d.name: f"area detector {det_prefixes[d.name]}, trigger from "
            f"TTLOUT{d.ttlout}"
            for d in SIM_DETECTORS
        }
    )
    wiring = PandaWiring(
        # DIV1 and DIV2 divide det's and det2's triggers when a plan runs them
        # every k-th frame (spec_scan's divisors).
        detectors=tuple(
            DetectorWiring(d.name, ttlout=d.ttlout, divider=n)
            for n, d in enumerate(SIM_DETECTORS, start=1)
        ),
        encoders=tuple(EncoderWiring(m.name, inenc=m.inenc) for m in SIM_MOTORS),
        notes=notes,
    )
    x = SIM_MOTOR
    panda = FlyscanPanda(
        prefix,
        provider,
        wiring=wiring,
        captures=[
            Capture(f"INENC{x.inenc}.VAL", x.name),
            Capture("PCAP.TS_TRIG", "trigger_time"),
        ],
        name="panda",
    )
    motors = {m.name: Motor(pvs[m.name], name=m.name) for m in SIM_MOTORS}
    detectors = {
        d.name: SimulatedDetector(det_prefixes[d.name], provider, name=d.name)
        for d in SIM_DETECTORS
    }
    # ophyd-async's Motor reads VMAX only; the record clamps VELO to it.
    vmax = {m.name: epics_signal_rw(float, f"{pvs[m.name]}.VMAX") for m in SIM_MOTORS}
    await asyncio.gather(
        panda.connect(timeout=timeout),
        *(device.connect(timeout=timeout) for device in motors.values()),
        *(device.connect(timeout=timeout) for device in detectors.values()),
        *(signal.connect(timeout=timeout) for signal in vmax.values()),
    )
    await asyncio.gather(*(_set_up_motor(panda, motors, vmax, m) for m in SIM_MOTORS))
    await asyncio.gather(
        *(
            detectors[d.name].driver.trigger_source.set(f"TTLOUT{d.ttlout}")
            for d in SIM_DETECTORS
        )
    )
    # The simulated PandA's control port, for streamed tables (spec_scan's
    # control=): `panda-flyscan sim` and the launcher set $PANDA_HOST.
    host = os.environ.get("PANDA_HOST")
    return Beamline(
        panda=panda,
        path_provider=provider,
        motors=dict(motors),
        detectors=dict(detectors),
        control=PandaControl(host) if host else None,
    )


async def _set_up_motor(
    panda: FlyscanPanda,
    motors: dict[str, Motor],
    vmax: dict[str, SignalRW[float]],
    spec: _SimMotorSpec,
) -> None:
    """The PandA's INENC scaled to ``spec``'s units, the motor to its speeds."""
    motor = motors[spec.name]
    inenc = panda.inenc[spec.inenc]  # type: ignore[attr-defined]
    await inenc.val_units.set(spec.units)
    await asyncio.gather(
        inenc.val_scale.set(spec.scale),
        inenc.val_offset.set(0.0),
        vmax[spec.name].set(spec.max_velocity),
        motor.acceleration_time.set(spec.acceleration_time),
    )
    # After VMAX: the record clamps VELO to it.
    await motor.velocity.set(spec.velocity)


def simulated_beamline_devices(
    data_dir: Path | str,
    *,
    panda_prefix: str | None = None,
    motor_pv: str | None = None,
    motor_pv_y: str | None = None,
    motor_pv_z: str | None = None,
    detector_prefix: str | None = None,
    detector2_prefix: str | None = None,
    timeout: float = 10.0,
) -> Beamline:
    """:func:`connect_simulated_beamline` from IPython (a RunEngine must exist)."""
    return in_bluesky_loop(
        connect_simulated_beamline(
            data_dir,
            panda_prefix=panda_prefix,
            motor_pv=motor_pv,
            motor_pv_y=motor_pv_y,
            motor_pv_z=motor_pv_z,
            detector_prefix=detector_prefix,
            detector2_prefix=detector2_prefix,
            timeout=timeout,
        ),
        timeout,
    )
