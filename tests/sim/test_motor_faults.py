"""Motor faults: ``*SIM.MOTOR_FAULT.<axis>=stall|stall_reported|high_limit|
low_limit|none`` on the PandA's control port, and what the simulated motor
record shows of them.

No sockets and no sleeps: the motor runs on a server whose clock the test
sets, and each step refreshes the record's fields at that tick (what
:meth:`SimMotor.run` does on the wall clock).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import pytest

from sim_ioc import ca
from sim_ioc.motor import SimMotor
from sim_ioc.motor.record import (
    MSTA_DONE,
    MSTA_MINUS_LS,
    MSTA_MOVING,
    MSTA_PLUS_LS,
    MSTA_SLIP_STALL,
)
from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.panda.protocol.control import SIM_HELP, ControlParser, Session, respond
from sim_ioc.panda.server import PandaServer
from sim_ioc.world import (
    TICKS_PER_SECOND,
    Axis,
    FaultKind,
    MotorFault,
    Segment,
    World,
    limit_stop,
    trapezoid,
)

TPS = TICKS_PER_SECOND


@dataclass
class ClockedServer(PandaServer):
    """A PandA server on simulated time: :meth:`now` is what the test set."""

    tick: int = 0

    def now(self) -> int:
        return self.tick


class Bench:
    """A motor (``T:M1`` on INENC1, the defaults: 1 mm/s, 0.1 s ramps, 1000
    counts/mm) and the PandA whose world it moves in."""

    def __init__(self) -> None:
        self.server = ClockedServer(SimulatedPanda())
        self.panda = self.server.panda
        self.motor = SimMotor(self.server, "T:M1")
        self.f = self.motor.fields

    async def at(self, seconds: float) -> None:
        """Let simulated time reach ``seconds`` and refresh the record."""
        tick = round(seconds * TPS)
        assert tick >= self.server.tick
        self.server.tick = tick
        self.panda.advance(tick)
        await self.motor.refresh(tick)

    async def put(self, channel: ca.Hooked, value: Any) -> asyncio.Task[None]:
        """Write ``channel`` as a client would, without waiting for the
        put-callback: the task ends when it completes."""
        task = asyncio.create_task(channel.write(value))
        for _ in range(20):  # run the handler up to its put-callback wait
            if task.done():
                break
            await asyncio.sleep(0)
        return task

    def send(self, line: str) -> str:
        """One control-port line, answered as the server would."""
        [request] = ControlParser().feed(f"{line}\n".encode())
        return respond(self.panda, Session(), request)

    def inenc(self) -> int:
        """What the PandA's INENC1.VAL reads now."""
        return int(self.send("INENC1.VAL?").removeprefix("OK ="))

    @property
    def rbv(self) -> float:
        return float(self.f.rbv.value)

    @property
    def msta(self) -> int:
        return int(self.f.msta.value)


async def settle(task: asyncio.Task[None]) -> bool:
    """Whether ``task`` (a put) has completed, once it could run."""
    for _ in range(10):
        await asyncio.sleep(0)
    return task.done()


@pytest.fixture
def bench() -> Bench:
    return Bench()


# -- stall ---------------------------------------------------------------------------


async def test_a_stall_mid_move_freezes_the_readback_while_dmov_stays_0(
    bench: Bench,
) -> None:
    move = await bench.put(bench.motor.val, 5.0)
    await bench.at(1.0)  # 0.05 mm ramping up, then 0.9 s at 1 mm/s
    assert bench.rbv == pytest.approx(0.95, abs=1e-6)
    assert bench.send("*SIM.MOTOR_FAULT.INENC1=stall") == "OK\n"
    await bench.at(1.05)  # it stalled on the PandA's next tick
    stuck_at, counts = bench.rbv, bench.inenc()
    assert stuck_at == pytest.approx(0.95, abs=1e-6) and counts == 950
    for t in (1.1, 2.0, 10.0):
        await bench.at(t)
        assert bench.rbv == stuck_at and bench.inenc() == counts
        assert bench.f.dmov.value == 0 and bench.f.movn.value == 1
        assert bench.msta & MSTA_MOVING and not bench.msta & MSTA_DONE
        assert not bench.msta & MSTA_SLIP_STALL  # silent
    assert not await settle(move)  # the put-callback is held
    # Neither STOP nor a new move moves it, and DMOV stays 0.
    await bench.motor.fields.stop.write(1)
    again = await bench.put(bench.motor.val, 0.0)
    await bench.at(12.0)
    assert bench.rbv == stuck_at and bench.inenc() == counts
    assert bench.f.dmov.value == 0
    assert not await settle(move) and not await settle(again)
    # none: the stalled move ends where the motor stands, and it moves again.
    assert bench.send("*SIM.MOTOR_FAULT.INENC1=none") == "OK\n"
    await bench.at(12.05)
    assert bench.f.dmov.value == 1 and bench.f.movn.value == 0
    assert await settle(move) and await settle(again)
    assert bench.f.val.value == bench.rbv == stuck_at
    assert bench.msta & MSTA_DONE and not bench.msta & MSTA_MOVING
    back = await bench.put(bench.motor.val, 0.5)
    await bench.at(12.1)
    assert bench.f.dmov.value == 0 and bench.rbv < stuck_at
    await bench.at(14.0)
    assert bench.rbv == 0.5 and bench.inenc() == 500 and bench.f.dmov.value == 1
    assert await settle(back)
    assert bench.f.miss.value == 0


async def test_a_reported_stall_ends_the_move_with_slip_stall_and_miss(
    bench: Bench,
) -> None:
    move = await bench.put(bench.motor.val, 5.0)
    await bench.at(1.0)
    assert bench.send("*SIM.MOTOR_FAULT.INENC1=stall_reported") == "OK\n"
    await bench.at(1.05)
    stuck_at = bench.rbv
    assert stuck_at == pytest.approx(0.95, abs=1e-6)
    assert bench.rbv == stuck_at and bench.f.dmov.value == 1
    assert bench.msta & MSTA_SLIP_STALL and bench.msta & MSTA_DONE
    assert bench.f.miss.value == 1 and bench.f.val.value == 5.0  # VAL kept
    assert await settle(move)
    # A new move ends at once, nowhere.
    again = await bench.put(bench.motor.val, 3.0)
    assert bench.f.dmov.value == 0
    await bench.at(1.1)
    assert bench.f.dmov.value == 1 and bench.rbv == stuck_at
    assert await settle(again)
    assert bench.send("*SIM.MOTOR_FAULT.INENC1=none") == "OK\n"
    await bench.at(1.15)
    assert not bench.msta & MSTA_SLIP_STALL
    await bench.put(bench.motor.val, 1.5)
    await bench.at(3.0)
    assert bench.rbv == 1.5 and bench.f.miss.value == 0


# -- limit switches -----------------------------------------------------------------


async def test_a_high_limit_mid_move_stops_it_and_refuses_moves_further_up(
    bench: Bench,
) -> None:
    move = await bench.put(bench.motor.val, 5.0)
    await bench.at(1.0)
    assert bench.send("*SIM.MOTOR_FAULT.INENC1=high_limit") == "OK\n"
    await bench.at(1.02)  # decelerating at the move's 10 mm/s^2
    assert bench.f.dmov.value == 0 and 0.95 < bench.rbv < 1.0
    await bench.at(1.2)
    # At rest 0.05 mm on: 1 mm/s squared over twice 10 mm/s^2.
    assert bench.rbv == pytest.approx(1.0, abs=1e-3)
    assert (bench.f.hls.value, bench.f.lls.value) == (1, 0)
    assert bench.msta & MSTA_PLUS_LS and not bench.msta & MSTA_MINUS_LS
    assert bench.f.dmov.value == 1 and await settle(move)
    assert bench.f.val.value == bench.rbv  # VAL is where it stopped
    on_switch, counts = bench.rbv, bench.inenc()
    # Further up: DMOV blinks, nothing moves, VAL goes back.
    up = await bench.put(bench.motor.val, 3.0)
    assert bench.f.dmov.value == 0
    await bench.at(1.25)
    await bench.at(2.0)
    assert bench.rbv == on_switch and bench.inenc() == counts
    assert bench.f.dmov.value == 1 and bench.f.hls.value == 1
    assert bench.f.val.value == on_switch and await settle(up)
    # Down: it moves, and leaving the switch turns it off.
    down = await bench.put(bench.motor.val, 0.5)
    await bench.at(2.1)
    assert bench.f.dmov.value == 0 and bench.rbv < on_switch
    await bench.at(3.0)
    assert bench.rbv == 0.5 and bench.f.dmov.value == 1 and await settle(down)
    assert (bench.f.hls.value, bench.f.lls.value) == (0, 0)
    assert not bench.msta & (MSTA_PLUS_LS | MSTA_MINUS_LS)
    # The switch is still there: coming back up runs into it again.
    await bench.put(bench.motor.val, 3.0)
    await bench.at(5.0)
    assert 0.95 < bench.rbv < on_switch + 1e-3 and bench.f.hls.value == 1
    assert bench.f.val.value == bench.rbv
    # none: the switch is gone and the move goes all the way.
    assert bench.send("*SIM.MOTOR_FAULT.INENC1=none") == "OK\n"
    await bench.at(5.05)
    assert bench.f.hls.value == 0 and not bench.msta & MSTA_PLUS_LS
    await bench.put(bench.motor.val, 3.0)
    await bench.at(8.0)
    assert bench.rbv == 3.0 and bench.inenc() == 3000 and bench.f.dmov.value == 1


async def test_a_low_limit_is_the_user_high_one_with_dir_neg(bench: Bench) -> None:
    await bench.motor.fields.dir.write("Neg")  # user = -dial
    await bench.put(bench.motor.val, -1.0)  # dial +1 mm
    await bench.at(2.0)
    assert bench.rbv == -1.0 and bench.inenc() == 1000
    # At rest: the controller's minus switch turns on where it is.
    assert bench.send("*SIM.MOTOR_FAULT.INENC1=LOW_LIMIT") == "OK\n"
    await bench.at(2.05)
    assert bench.msta & MSTA_MINUS_LS and not bench.msta & MSTA_PLUS_LS
    assert (bench.f.hls.value, bench.f.lls.value) == (1, 0)  # the user's high
    # User up is counts down, into the switch: no motion.
    await bench.put(bench.motor.val, 0.0)
    await bench.at(3.0)
    assert bench.rbv == -1.0 and bench.f.val.value == -1.0
    # User down moves away.
    await bench.put(bench.motor.val, -2.0)
    await bench.at(5.0)
    assert bench.rbv == -2.0 and bench.f.hls.value == 0


# -- the command -------------------------------------------------------------------


def test_the_command_answers_err_on_a_bad_axis_or_fault_and_changes_nothing() -> None:
    bench = Bench()
    axis = bench.panda.world.axes["INENC1"]
    for line, message in [
        ("*SIM.MOTOR_FAULT.INENC1=wobble", "Unknown motor fault 'wobble'"),
        ("*SIM.MOTOR_FAULT.INENC1=", "expected one of none, stall, stall_reported"),
        ("*SIM.MOTOR_FAULT.INENC9=stall", "No such axis 'INENC9'"),
        ("*SIM.MOTOR_FAULT.M1=stall", "No such axis 'M1'"),
        ("*SIM.MOTOR_FAULT=stall", "needs a name, e.g. *SIM.MOTOR_FAULT.INENC1"),
        ("*SIM.MOTOR_FAULT.INENC9?", "No such axis"),
        ("*SIM.MOTOR_FAULT?", "needs an axis"),
    ]:
        reply = bench.send(line)
        assert reply.startswith("ERR ") and message in reply, (line, reply)
    assert axis.fault == MotorFault()
    assert "INENC9" not in bench.panda.world.axes
    assert bench.send("*SIM.MOTOR_FAULT.INENC1?") == "OK =none\n"
    assert bench.send("*SIM.MOTOR_FAULT.INENC2= Stall ") == "OK\n"
    assert bench.send("*SIM.MOTOR_FAULT.INENC2?") == "OK =stall\n"
    assert bench.panda.world.axes["INENC2"].fault.kind is FaultKind.STALL
    assert bench.send("*SIM.MOTOR_FAULT.INENC1?") == "OK =none\n"
    assert any(line.startswith("*SIM.MOTOR_FAULT.<axis>=") for line in SIM_HELP)


# -- the world, pure ----------------------------------------------------------------


def test_limit_stop_decelerates_from_the_first_tick_on_the_switch() -> None:
    # 0 -> 1000 counts at 1000 counts/s, 10000 counts/s^2 (0.1 s ramps).
    plan = trapezoid(0, 0.0, 1000.0, 1000.0, 10_000.0)
    fault = MotorFault(FaultKind.HIGH_LIMIT, trip=500.0)
    cut = limit_stop(plan, fault, 10_000.0)
    axis = Axis("X", cut)
    hit = next(s.t0 for s in cut if s.acceleration < 0)
    assert axis.position(hit) >= 500.0 > axis.position(hit - 1)
    assert axis.end_of_motion() == hit + round(0.1 * TPS)
    assert axis.position(axis.end_of_motion() or 0) == pytest.approx(550.0, abs=1e-6)
    # Away from the switch, or without one: unchanged.
    low = MotorFault(FaultKind.LOW_LIMIT, trip=-1.0)
    assert limit_stop(plan, low, 10_000.0) == plan
    assert limit_stop(plan, MotorFault(), 10_000.0) == plan
    back = trapezoid(0, 600.0, 0.0, 1000.0, 10_000.0)
    assert limit_stop(back, fault, 10_000.0) == back
    # From on the switch, further in: no motion at all.
    on = trapezoid(0, 600.0, 900.0, 1000.0, 10_000.0)
    assert limit_stop(on, fault, 10_000.0) == [Segment(0, 600.0, 0.0, math.inf)]


def test_set_fault_stops_the_axis_and_places_the_switch_where_it_rests() -> None:
    world = World()
    axis = world.axis("X")
    axis.set_motion(0, trapezoid(0, 0.0, 1000.0, 1000.0, 10_000.0))
    t = TPS // 2
    here = axis.position(t)
    axis.set_fault(t, FaultKind.STALL)
    assert axis.fault.stalled and axis.position(t + TPS) == here
    axis.set_fault(t, FaultKind.NONE)
    assert axis.fault == MotorFault() and axis.position(t + TPS) == here
    # Moving down when a high limit is injected: it stops, on the switch.
    axis.set_motion(t, trapezoid(t, here, 0.0, 1000.0, 10_000.0))
    axis.limit_deceleration = 10_000.0
    axis.set_fault(2 * t, FaultKind.HIGH_LIMIT)
    rest = axis.position(10 * TPS)
    assert axis.fault.trip == rest < axis.position(2 * t)
    assert axis.fault.switch_on(rest) and not axis.fault.switch_on(rest - 1e-3)
