"""The simulated motor: ophyd-async's stock ``Motor`` over real Channel Access,
and the PandA's encoder following it."""

from __future__ import annotations

import asyncio
import time

import pytest
from beamline_helpers import counts, panda_get, panda_send
from bluesky.protocols import Reading
from ophyd_async.core import observe_value
from ophyd_async.epics.core import epics_signal_r
from ophyd_async.epics.motor import Motor, MotorLimitsError

from panda_flyscan.app.simulated.launcher import SimulatedBeamline
from sim_ioc.motor import MotorConfig, SimMotor
from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.panda.server import PandaServer


@pytest.mark.ioc
async def test_stock_motor_moves_with_a_trapezoid_and_the_encoder_follows(
    beamline: SimulatedBeamline, motor: Motor
) -> None:
    reading = await motor.read()
    assert reading["motor"]["value"] == 0.0
    described = (await motor.describe())["motor"]
    assert described.get("units") == "mm" and described.get("precision") == 4
    config = await motor.read_configuration()
    assert config["motor-velocity"]["value"] == 5.0
    assert config["motor-encoder_resolution"]["value"] == pytest.approx(0.001)
    # 1.5 mm at 5 mm/s after 0.05 s ramps: 0.3 s + 0.05 s, put-callback held
    # until the motor record's DMOV.
    dmov: list[tuple[int, float]] = []  # (value, the server's timestamp)
    subscribed, moved = asyncio.Event(), asyncio.Event()

    def on_dmov(reading: dict[str, Reading[int]]) -> None:
        value = reading[motor.motor_done_move.name]
        dmov.append((value["value"], value["timestamp"]))
        subscribed.set()
        if len(dmov) > 1 and value["value"] == 1:
            moved.set()

    motor.motor_done_move.subscribe_reading(on_dmov)
    await asyncio.wait_for(subscribed.wait(), timeout=5)  # DMOV 1, at rest
    # The CA server stamps its updates with this clock (time.time()).
    put_at, started = time.time(), time.monotonic()
    await motor.set(1.5)
    took, returned_at = time.monotonic() - started, time.time()
    await asyncio.wait_for(moved.wait(), timeout=5)  # the update may trail
    motor.motor_done_move.clear_sub(on_dmov)
    assert took > 0.34  # a loaded machine only makes it longer
    # No upper bound on the wall clock (load stretches it); instead the order
    # of events, which load cannot change: the motion began (DMOV 0) after the
    # put and ended (DMOV 1) before the put-callback returned.
    (began, began_at), (ended, ended_at) = dmov[-2:]
    assert (began, ended) == (0, 1)
    assert put_at <= began_at < ended_at <= returned_at
    assert await motor.user_readback.get_value() == 1.5
    assert await motor.motor_done_move.get_value() == 1
    # The PandA's INENC1 counts the same axis: 1000 counts per mm.
    assert int(await panda_get(beamline, "INENC1.VAL")) == counts(1.5) == 1500
    # A *SIM move on the PandA is seen by the motor record too.
    await panda_send(beamline, "*SIM.POSITION.INENC1=2500")
    async for value in observe_value(motor.user_readback, done_timeout=5):
        if value == 2.5:
            break


@pytest.mark.ioc
async def test_stop_decelerates_and_val_becomes_where_it_stopped(
    beamline: SimulatedBeamline, motor: Motor
) -> None:
    await motor.velocity.set(1.0)
    move = motor.set(5.0)
    async for value in observe_value(motor.user_readback, done_timeout=5):
        if value >= 0.2:
            break
    await motor.stop()
    with pytest.raises(RuntimeError, match="was stopped"):
        await move  # at once: ophyd-async does not wait for the deceleration
    async for done in observe_value(motor.motor_done_move, done_timeout=5):
        if done:
            break
    stopped = await motor.user_readback.get_value()
    # Seen past 0.2 mm (polled at 20 Hz, at 1 mm/s), then 0.025 mm to
    # decelerate: far short of the 5 mm asked for.
    assert 0.2 < stopped < 0.6
    assert await motor.user_setpoint.get_value() == stopped
    assert int(await panda_get(beamline, "INENC1.VAL")) == counts(stopped)


@pytest.mark.ioc
async def test_a_new_setpoint_during_a_move_stops_then_goes_there(
    beamline: SimulatedBeamline, motor: Motor
) -> None:
    await motor.velocity.set(1.0)
    first = motor.set(5.0)
    async for value in observe_value(motor.user_readback, done_timeout=5):
        if value >= 0.1:
            break
    await motor.set(0.05)  # decelerate, turn round, come back
    await first  # its put-callback completes when the motion has ended
    assert await motor.user_readback.get_value() == 0.05
    assert int(await panda_get(beamline, "INENC1.VAL")) == 50


@pytest.mark.ioc
async def test_moves_beyond_the_limits_are_refused(
    beamline: SimulatedBeamline, motor: Motor
) -> None:
    lvio = epics_signal_r(int, f"{beamline.motor_pv}.LVIO")
    await lvio.connect()
    # The stock class checks the soft limits before moving...
    with pytest.raises(MotorLimitsError, match="motor limits are"):
        await motor.set(150.0)
    # ...and the record refuses a raw put too: LVIO, VAL restored, no motion.
    await motor.user_setpoint.set(150.0)
    assert await motor.user_setpoint.get_value() == 0.0
    assert await lvio.get_value() == 1
    assert await motor.user_readback.get_value() == 0.0
    await motor.set(0.5)
    assert await lvio.get_value() == 0
    # User limits follow the user offset; dial limits do not move.
    await motor.offset.set(10.0)
    assert await motor.high_limit_travel.get_value() == 110.0
    assert await motor.dial_high_limit_travel.get_value() == 100.0
    assert await motor.user_readback.get_value() == 10.5
    await motor.offset.set(0.0)


async def test_encoder_resolution_and_offset_map_the_motor_to_counts() -> None:
    """In process, no CA: counts = dial * resolution + offset, tick by tick."""
    server = PandaServer(SimulatedPanda())
    motor = SimMotor(server, "X:M1", MotorConfig(resolution=500.0, offset=1234.5))
    runner = asyncio.create_task(motor.run())
    try:
        assert motor.dial_position(server.now()) == pytest.approx(-1234.5 / 500)
        await motor.velo.write(10.0)
        await motor.val.write(2.0)  # returns once DMOV is back to 1
        assert motor.dmov.value == 1 and motor.rbv.value == 2.0
        panda = server.panda
        panda.advance(server.now())
        index = panda.catalog.pos_bus["INENC1.VAL"]
        assert panda.engine.bus.pos[index] == 2234  # floor(2 * 500 + 1234.5)
        assert motor.rep.value == 2234
    finally:
        runner.cancel()
