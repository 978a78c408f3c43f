"""Helpers of the simulated-beamline tests: the stock ophyd-async devices on the
session's beamline, and the PandA programmed over its control port."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

from ophyd_async.core import (
    StaticFilenameProvider,
    StaticPathProvider,
    init_devices,
)
from ophyd_async.epics.adcore import ADWriterFactory
from ophyd_async.epics.adkinetix import KinetixDetector
from ophyd_async.epics.adsimdetector import SimDetector
from ophyd_async.epics.core import epics_signal_rw
from ophyd_async.epics.motor import Motor, UseSetMode
from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Get, Raw

from panda_flyscan.app.simulated.launcher import SimulatedBeamline

#: The motor's encoder: counts per mm on INENC1 (the simulator's default).
COUNTS_PER_MM = 1000


async def panda_send(beamline: SimulatedBeamline, *lines: str) -> None:
    """Send raw commands to the simulated PandA (as a PandA's control port)."""
    async with AsyncioClient(beamline.panda_host) as client:
        for line in lines:
            await client.send(Raw([line]))


async def panda_get(beamline: SimulatedBeamline, field: str) -> str:
    async with AsyncioClient(beamline.panda_host) as client:
        reply = await client.send(Get(field))
    assert isinstance(reply, str)
    return reply


def path_provider(directory: Path, name: str) -> StaticPathProvider:
    return StaticPathProvider(StaticFilenameProvider(name), directory)


async def connect_motor(beamline: SimulatedBeamline) -> Motor:
    """The stock ``Motor``, at rest at 0, VELO 5 mm/s, ACCL 0.05 s, limits
    -100..100 mm, whatever an earlier test left."""
    async with init_devices():
        motor = Motor(beamline.motor_pv)
    await motor.motor_stop.set(1)
    await panda_send(beamline, "*SIM.POSITION.INENC1=0")
    await asyncio.gather(
        motor.velocity.set(5.0),
        motor.acceleration_time.set(0.05),
        motor.offset.set(0.0),
        motor.set_use_switch.set(UseSetMode.USE),
        motor.dial_high_limit_travel.set(100.0),
        motor.dial_low_limit_travel.set(-100.0),
    )
    await motor.set(0.0)  # brings VAL in step with the teleported axis
    return motor


async def sim_detector(beamline: SimulatedBeamline, directory: Path) -> SimDetector:
    """ophyd-async's stock ADSimDetector class on the simulated detector, in
    internal trigger mode (SimDetector never writes TriggerMode, and other
    tests of the session leave the shared detector in an external mode)."""
    async with init_devices():
        det = SimDetector(
            beamline.detector_prefix,
            ADWriterFactory.hdf(path_provider(directory, "sim")),
        )
    trigger_mode = epics_signal_rw(str, f"{beamline.detector_prefix}cam1:TriggerMode")
    await trigger_mode.connect()
    await trigger_mode.set("Internal")
    return det


async def kinetix(
    beamline: SimulatedBeamline, directory: Path, name: str = "det"
) -> KinetixDetector:
    """ophyd-async's stock ADKinetix class: internal, edge and gate triggers."""
    async with init_devices():
        det = KinetixDetector(
            beamline.detector_prefix,
            ADWriterFactory.hdf(path_provider(directory, name)),
        )
    det.set_name(name)
    return det


def pulse_train(pulses: int, step_ms: float, width_ms: float) -> list[str]:
    """PULSE1 programmed to put ``pulses`` pulses on TTLOUT1 (the detector's
    trigger cable) when :func:`fire` raises BITS.A."""
    return [
        "BITS.A=0",
        "PULSE1.ENABLE=ONE",
        "PULSE1.TRIG=BITS.OUTA",
        "PULSE1.TRIG_EDGE=Rising",
        "PULSE1.DELAY.UNITS=ms",
        "PULSE1.DELAY=0",
        "PULSE1.WIDTH.UNITS=ms",
        f"PULSE1.WIDTH={width_ms}",
        "PULSE1.STEP.UNITS=ms",
        f"PULSE1.STEP={step_ms}",
        f"PULSE1.PULSES={pulses}",
        "TTLOUT1.VAL=PULSE1.OUT",
    ]


async def fire(beamline: SimulatedBeamline) -> None:
    await panda_send(beamline, "BITS.A=1")


def counts(position_mm: float) -> int:
    """The INENC1 count at a motor position (offset 0)."""
    return math.floor(position_mm * COUNTS_PER_MM + 1e-9)
