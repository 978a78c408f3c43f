"""The simulated beamline's mapping hardware: three motor records (x, y, z on
INENC1..3) sharing the PandA's world, and the second, slow detector on
TTLOUT2 whose frames image the sample at (x, y)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from beamline_helpers import panda_get, panda_send, path_provider
from bluesky.protocols import Reading
from ophyd_async.core import DetectorTrigger, TriggerInfo, init_devices, observe_value
from ophyd_async.epics.adcore import ADWriterFactory
from ophyd_async.epics.adkinetix import KinetixDetector
from ophyd_async.epics.core import epics_signal_r
from ophyd_async.epics.motor import Motor, MotorLimitsError, UseSetMode

from panda_flyscan.app.simulated import (
    SIM_DETECTORS,
    SIM_MOTORS,
    SimulatedDetector,
    connect_simulated_beamline,
)
from panda_flyscan.app.simulated.launcher import SimulatedBeamline
from sim_ioc.detector import decode, render
from sim_ioc.world import TICKS_PER_SECOND

pytestmark = pytest.mark.ioc

MS = TICKS_PER_SECOND // 1000
COUNTS_PER_MM = 1000


async def _reset(beamline: SimulatedBeamline, motor: Motor, inenc: int) -> Motor:
    """``motor`` at rest at 0, 5 mm/s, ACCL 0.05 s, no user offset."""
    await motor.motor_stop.set(1)
    await panda_send(beamline, f"*SIM.POSITION.INENC{inenc}=0")
    await asyncio.gather(
        motor.velocity.set(5.0),
        motor.acceleration_time.set(0.05),
        motor.offset.set(0.0),
        motor.set_use_switch.set(UseSetMode.USE),
    )
    await motor.set(0.0)  # brings VAL in step with the teleported axis
    return motor


@pytest.fixture
async def y_motor(beamline: SimulatedBeamline) -> AsyncIterator[Motor]:
    """The stock ``Motor`` on ``<prefix>:M2``, at rest at 0, 5 mm/s."""
    async with init_devices():
        motor = Motor(beamline.motor_pvs[1])
    yield await _reset(beamline, motor, 2)
    await _reset(beamline, motor, 2)


@pytest.fixture
async def z_motor(beamline: SimulatedBeamline) -> AsyncIterator[Motor]:
    """The stock ``Motor`` on ``<prefix>:M3``, at rest at 0, 5 mm/s."""
    async with init_devices():
        motor = Motor(beamline.motor_pvs[2])
    yield await _reset(beamline, motor, 3)
    await _reset(beamline, motor, 3)


@pytest.fixture
async def quiet_ttl2(beamline: SimulatedBeamline) -> AsyncIterator[None]:
    """Leave the second detector's trigger cable (TTLOUT2) low after the test."""
    yield
    await panda_send(beamline, "TTLOUT2.VAL=ZERO", "BITS.B=0")


def test_the_launcher_names_every_motor_and_detector(
    beamline: SimulatedBeamline,
) -> None:
    env = beamline.env
    assert beamline.motor_pvs == ("TEST:M1", "TEST:M2", "TEST:M3")
    assert (env["MOTOR_PV"], env["MOTOR_PV_Y"], env["MOTOR_PV_Z"]) == (
        beamline.motor_pvs
    )
    assert env["DETECTOR_PREFIX"] == "TEST:DET:"
    assert env["DETECTOR2_PREFIX"] == beamline.detector2_prefix == "TEST:DET2:"


async def _ioc_counts_reach(
    beamline: SimulatedBeamline, inenc: int, counts: float
) -> int:
    """``INENC<n>:VAL`` (raw counts) as the real IOC serves it, once it is
    ``counts`` (it polls the PandA every 0.1 s and posts changes, so a poll
    during the move's last count may serve one short first)."""
    value = epics_signal_r(int, f"{beamline.panda_prefix}INENC{inenc}:VAL")
    await value.connect()
    async for served in observe_value(value, done_timeout=5):
        if served == round(counts):
            return served
    raise AssertionError("unreachable: observe_value times out first")


async def test_two_motors_move_at_once_and_the_panda_reads_both_encoders(
    beamline: SimulatedBeamline, motor: Motor, y_motor: Motor
) -> None:
    x, y = motor, y_motor
    await asyncio.gather(x.velocity.set(2.0), y.velocity.set(1.0))
    # DMOV of each, with the CA server's timestamps, to prove the overlap.
    moves: dict[str, list[tuple[int, float]]] = {"x": [], "y": []}
    subscribed = {name: asyncio.Event() for name in moves}
    ended = {name: asyncio.Event() for name in moves}

    def watcher(name: str, m: Motor) -> Callable[[dict[str, Reading[int]]], None]:
        def on_dmov(reading: dict[str, Reading[int]]) -> None:
            value = reading[m.motor_done_move.name]
            moves[name].append((value["value"], value["timestamp"]))
            subscribed[name].set()
            if len(moves[name]) > 1 and value["value"] == 1:
                ended[name].set()

        return on_dmov

    callbacks = {"x": watcher("x", x), "y": watcher("y", y)}
    x.motor_done_move.subscribe_reading(callbacks["x"])
    y.motor_done_move.subscribe_reading(callbacks["y"])
    await asyncio.wait_for(
        asyncio.gather(*(e.wait() for e in subscribed.values())), timeout=5
    )
    put_at = time.time()
    # 0.6 mm at 2 mm/s and -0.35 mm at 1 mm/s: both about 0.35 s long.
    await asyncio.gather(x.set(0.6), y.set(-0.35))
    returned_at = time.time()
    await asyncio.wait_for(
        asyncio.gather(*(e.wait() for e in ended.values())), timeout=5
    )  # the monitor updates may trail the put-callbacks
    x.motor_done_move.clear_sub(callbacks["x"])
    y.motor_done_move.clear_sub(callbacks["y"])
    x_rbv, y_rbv = await asyncio.gather(
        x.user_readback.get_value(), y.user_readback.get_value()
    )
    assert (x_rbv, y_rbv) == (0.6, -0.35)
    # Each motion began after the puts and ended before they returned, and
    # each began before the other ended: they moved at the same time.
    (xb, xb_at), (xe, xe_at) = moves["x"][-2:]
    (yb, yb_at), (ye, ye_at) = moves["y"][-2:]
    assert (xb, xe, yb, ye) == (0, 1, 0, 1)
    assert put_at <= xb_at < ye_at <= returned_at
    assert put_at <= yb_at < xe_at <= returned_at
    # The PandA counts both axes: on its control port exactly...
    assert int(await panda_get(beamline, "INENC1.VAL")) == 600
    assert int(await panda_get(beamline, "INENC2.VAL")) == -350
    # ...and through the real IOC, to a count of the motors' readbacks.
    assert await _ioc_counts_reach(beamline, 1, x_rbv * COUNTS_PER_MM) == 600
    assert await _ioc_counts_reach(beamline, 2, y_rbv * COUNTS_PER_MM) == -350


async def test_the_builder_gives_stock_motors_x_y_z_and_both_detectors(
    beamline: SimulatedBeamline, tmp_path: Path, y_motor: Motor
) -> None:
    bl = await connect_simulated_beamline(
        tmp_path,
        panda_prefix=beamline.panda_prefix,
        motor_pv=beamline.motor_pv,  # as callers before there were three
        detector_prefix=beamline.detector_prefix,
    )
    assert sorted(bl.motors) == ["x", "y", "z"]
    for spec in SIM_MOTORS:
        motor = bl.motor(spec.name)
        assert type(motor) is Motor and motor.name == spec.name
        assert bl.wiring.encoder_for(spec.name) == spec.inenc
        assert await motor.velocity.get_value() == spec.velocity
        assert await motor.max_velocity.get_value() == spec.max_velocity
        inenc = bl.panda.inenc[spec.inenc]  # type: ignore[attr-defined]
        assert await inenc.val_scale.get_value() == pytest.approx(spec.scale)
        assert await inenc.val_units.get_value() == "mm"
    assert sorted(bl.detectors) == ["det", "det2"]
    for det_spec in SIM_DETECTORS:
        det = bl.detectors[det_spec.name]
        assert isinstance(det, SimulatedDetector)
        assert bl.wiring.ttlout_for(det_spec.name) == det_spec.ttlout
        trigger_source = await det.driver.trigger_source.get_value()
        assert trigger_source == f"TTLOUT{det_spec.ttlout}"
    det2 = bl.detectors["det2"]
    assert isinstance(det2, SimulatedDetector)
    assert await det2.driver.readout_time.get_value() == 0.005  # the slow one
    notes = bl.wiring.notes
    assert "TEST:M2" in notes["y"] and "INENC2" in notes["y"]
    assert "TEST:DET2:" in notes["det2"] and "TTLOUT2" in notes["det2"]
    # y is a stock Motor: it moves, and the PandA's INENC2 counts it.
    await bl.motor("y").set(0.25)
    assert await y_motor.user_readback.get_value() == 0.25
    assert int(await panda_get(beamline, "INENC2.VAL")) == 250


async def test_each_motor_has_its_own_soft_limits(
    beamline: SimulatedBeamline, y_motor: Motor, z_motor: Motor
) -> None:
    z_settings = beamline.simulator.motors[2]
    low, high = z_settings.low_limit, z_settings.high_limit
    assert high < 100.0  # the session configured M3 narrower than M2
    assert await z_motor.dial_high_limit_travel.get_value() == high
    assert await z_motor.dial_low_limit_travel.get_value() == low
    assert await y_motor.dial_high_limit_travel.get_value() == 100.0
    lvio = epics_signal_r(int, f"{beamline.motor_pvs[2]}.LVIO")
    await lvio.connect()
    target = high + 1.0
    with pytest.raises(MotorLimitsError, match="motor limits are"):
        await z_motor.set(target)
    # The record refuses a raw put too: LVIO, VAL restored, no motion.
    await z_motor.user_setpoint.set(target)
    assert await lvio.get_value() == 1
    assert await z_motor.user_setpoint.get_value() == 0.0
    assert int(await panda_get(beamline, "INENC3.VAL")) == 0
    # The same target is within y's limits: y goes there.
    await y_motor.velocity.set(10.0)
    await y_motor.set(target)
    assert await y_motor.user_readback.get_value() == target


async def test_the_slow_detector_triggers_from_ttlout2_and_images_x_and_y(
    beamline: SimulatedBeamline,
    motor: Motor,
    y_motor: Motor,
    tmp_path: Path,
    quiet_ttl2: None,
) -> None:
    await asyncio.gather(motor.set(0.37), y_motor.set(-0.125))
    async with init_devices():
        det = KinetixDetector(
            beamline.detector2_prefix,
            ADWriterFactory.hdf(path_provider(tmp_path, "det2")),
        )
    readout = epics_signal_r(float, beamline.detector2_prefix + "cam1:ReadoutTime_RBV")
    source = epics_signal_r(str, beamline.detector2_prefix + "cam1:TriggerSource_RBV")
    counter = epics_signal_r(int, beamline.detector_prefix + "cam1:ArrayCounter_RBV")
    await asyncio.gather(readout.connect(), source.connect(), counter.connect())
    assert await readout.get_value() == 0.005
    assert await source.get_value() == "TTLOUT2"
    det_frames_before = await counter.get_value()
    # Four pulses 20 ms apart on TTLOUT2 (10 ms exposure + 5 ms readout fit).
    await panda_send(
        beamline,
        "BITS.B=0",
        "PULSE2.ENABLE=ONE",
        "PULSE2.TRIG=BITS.OUTB",
        "PULSE2.TRIG_EDGE=Rising",
        "PULSE2.DELAY.UNITS=ms",
        "PULSE2.DELAY=0",
        "PULSE2.WIDTH.UNITS=ms",
        "PULSE2.WIDTH=2",
        "PULSE2.STEP.UNITS=ms",
        "PULSE2.STEP=20",
        "PULSE2.PULSES=4",
        "TTLOUT2.VAL=PULSE2.OUT",
    )
    await det.stage()
    try:
        await det.prepare(
            TriggerInfo(
                number_of_events=4, trigger=DetectorTrigger.EXTERNAL_EDGE, livetime=0.01
            )
        )
        await det.kickoff()
        await panda_send(beamline, "BITS.B=1")
        await det.complete()
    finally:
        await det.unstage()
    path = tmp_path / "det2.h5"
    with h5py.File(path, "r", swmr=True) as f:
        dataset = f["/entry/data/data"]
        assert isinstance(dataset, h5py.Dataset)
        frames = dataset[()]
    stamps = [decode(frame) for frame in frames]
    for frame, stamp in zip(frames, stamps, strict=True):
        np.testing.assert_array_equal(frame, render(stamp, frame.shape))
    assert [s.index for s in stamps] == [0, 1, 2, 3]
    assert {(s.position, s.y) for s in stamps} == {(0.37, -0.125)}
    assert set(np.diff([s.tick for s in stamps])) == {20 * MS}
    # TTLOUT2 is not the first detector's cable: it took nothing.
    assert await counter.get_value() == det_frames_before
