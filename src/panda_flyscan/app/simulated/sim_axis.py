"""A motion axis of the simulated PandA's world, as an ophyd-async device.

The simulated beamline's motors are EPICS motor records (ophyd-async's
``Motor``); this adapter remains for tests that need an exactly known
constant-speed motion (no acceleration, no record in between). It has the
shape of ophyd-async's ``Motor`` that the plans use
(``set``/``stop``/``locate``; ``prepare(FlyMotorInfo)``/``kickoff``/``complete``
with a run-up; ``velocity``, ``max_velocity``, ``acceleration_time``,
``user_readback``, ``motor_egu`` signals) and moves the simulator's axis with its
``*SIM.MOVE`` control-port command. The axis is in encoder counts; this device
works in engineering units, ``position = counts * scale + offset`` (set the
PandA's ``INENCn.VAL.SCALE``/``OFFSET`` to the same values).

The simulated axis has no acceleration: it moves at constant speed as soon as
it is told to. ``acceleration_time`` is kept so the run-up distance, and the
plan's timing, are those a real motor would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from ophyd_async.core import (
    CALCULATE_TIMEOUT,
    DEFAULT_TIMEOUT,
    AsyncStatus,
    DeviceMock,
    FlyableLogic,
    FlyMotorInfo,
    MovableLogic,
    NotConnectedError,
    SignalR,
    SignalRW,
    StandardFlyable,
    StandardMovable,
    StandardReadable,
    TimeoutCalculator,
    error_if_none,
    soft_signal_r_and_setter,
    soft_signal_rw,
)
from ophyd_async.core import StandardReadableFormat as Format
from ophyd_async.epics.motor import MotorLimitsError
from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Raw

__all__ = ["SimAxis", "SimMove"]

#: How often the readback is refreshed while moving.
POLL_PERIOD = 0.05


class _ControlPort:
    """One control-port connection to the simulator, opened on first use."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._client: AsyncioClient | None = None
        self._lock: asyncio.Lock | None = None

    async def send(self, line: str) -> str:
        """Send one control-port line; its one-line answer (``OK``, ``OK =...``)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            for attempt in range(2):
                try:
                    if self._client is None:
                        client = AsyncioClient(self.host)
                        await client.connect()
                        self._client = client
                    [answer] = await self._client.send(Raw([line]), timeout=5)
                    if answer.startswith("ERR"):
                        # e.g. a real PandA, which has no *SIM commands.
                        raise RuntimeError(f"{self.host}: {line} -> {answer}")
                    return answer
                except (ConnectionError, OSError):
                    # The simulator restarted or dropped us: reconnect once.
                    await self.close()
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


def _answer_value(answer: str) -> str:
    if not answer.startswith("OK ="):
        raise RuntimeError(f"unexpected answer from the simulator: {answer!r}")
    return answer.removeprefix("OK =")


@dataclass(frozen=True)
class SimMove:
    """The last ``*SIM.MOVE`` sent: when (host ``time.time()`` before and after
    the simulator acknowledged it), from where, to where, how fast (counts)."""

    sent_between: tuple[float, float]
    start_counts: float
    target_counts: float
    counts_per_second: float


@dataclass
class SimAxisFlyCtx:
    """State of one fly motion: what was asked, and the move under way."""

    fly_info: FlyMotorInfo
    status: AsyncStatus | None = None


@dataclass
class SimAxisLogic(MovableLogic[float], FlyableLogic[FlyMotorInfo, SimAxisFlyCtx]):
    """Move and fly logic of :class:`SimAxis` (see the module docstring)."""

    port: _ControlPort
    axis: str
    scale: float
    offset: float
    set_readback: Callable[[float], None]
    velocity: SignalRW[float]
    max_velocity: SignalR[float]
    acceleration_time: SignalRW[float]
    low_limit_travel: SignalRW[float]
    high_limit_travel: SignalRW[float]
    units: str
    #: The last move sent to the simulator (for tests that need the truth).
    last_move: SimMove | None = field(default=None, init=False)
    _moving: bool = field(default=False, init=False)
    _fly_status: AsyncStatus | None = field(default=None, init=False)

    # -- positions --------------------------------------------------------------

    def to_counts(self, position: float) -> float:
        return (position - self.offset) / self.scale

    def to_position(self, counts: float) -> float:
        return counts * self.scale + self.offset

    async def read_counts(self) -> int:
        """The encoder count the PandA sees now (``INENCn.VAL``, raw)."""
        return int(_answer_value(await self.port.send(f"{self.axis}.VAL?")))

    async def refresh(self) -> float:
        """Read the position from the simulator into ``user_readback``."""
        position = self.to_position(await self.read_counts())
        self.set_readback(position)
        return position

    # -- MovableLogic -----------------------------------------------------------

    async def get_units_precision(self) -> tuple[str | None, int | None]:
        digits = max(0, math.ceil(-math.log10(abs(self.scale)))) if self.scale else 3
        return self.units, digits

    async def check_move(self, new_position: float) -> None:
        low, high = await asyncio.gather(
            self.low_limit_travel.get_value(), self.high_limit_travel.get_value()
        )
        if low == high == 0:  # as the motor record: 0, 0 means no limits
            return
        if not low <= new_position <= high:
            raise MotorLimitsError(
                f"{self.readback.name}: {new_position} {self.units} is outside the "
                f"soft limits {low} <= x <= {high} {self.units}"
            )

    async def calculate_timeout(
        self, old_position: float, new_position: float
    ) -> float:
        velocity, accl = await asyncio.gather(
            self.velocity.get_value(), self.acceleration_time.get_value()
        )
        if velocity <= 0:
            raise ValueError(f"{self.readback.name}: velocity is {velocity}")
        return abs(new_position - old_position) / velocity + 2 * accl + DEFAULT_TIMEOUT

    async def move(self, new_position: float, timeout: TimeoutCalculator) -> None:
        """Start ``*SIM.MOVE`` and follow the position until it arrives."""
        velocity = await self.velocity.get_value()
        start = await self.refresh()
        target = self.to_counts(new_position)
        speed = abs(velocity / self.scale)
        duration = abs(new_position - start) / velocity if velocity > 0 else 0.0
        limit = timeout()
        # Set before the move is sent and cleared only on arrival: a cancelled
        # move() leaves the axis moving, and stop() must still freeze it (it
        # is harmless on an axis that never started).
        self._moving = True
        before = time.time()
        await self.port.send(f"*SIM.MOVE.{self.axis}={target:.6f} {speed:.6f}")
        self.last_move = SimMove(
            sent_between=(before, time.time()),
            start_counts=self.to_counts(start),
            target_counts=target,
            counts_per_second=speed,
        )
        t0 = time.monotonic()
        # No done flag to wait on: the simulator moves at constant speed, so
        # sleep until the expected arrival, refreshing the readback.
        while True:
            elapsed = time.monotonic() - t0
            counts = await self.read_counts()
            self.set_readback(self.to_position(counts))
            if elapsed >= duration and abs(counts - target) < 1:
                self._moving = False
                return
            if limit is not None and elapsed > limit:
                raise TimeoutError(
                    f"{self.readback.name} did not reach {new_position} "
                    f"{self.units} within {limit:.1f} s"
                )
            await asyncio.sleep(max(0.0, min(POLL_PERIOD, duration - elapsed)) or 0.01)

    async def stop(self) -> None:
        """Freeze the axis where it is (only if this device moved it)."""
        status, self._fly_status = self._fly_status, None
        if status is not None and not status.done:
            status.task.cancel()
        if self._moving:
            counts = await self.read_counts()
            await self.port.send(f"*SIM.POSITION.{self.axis}={counts}")
            self._moving = False
        await self.refresh()

    # -- FlyableLogic -----------------------------------------------------------

    async def on_prepare(self, value: FlyMotorInfo) -> SimAxisFlyCtx:
        """Check the speed and limits; go to the start of the run-up."""
        max_speed, accl = await asyncio.gather(
            self.max_velocity.get_value(), self.acceleration_time.get_value()
        )
        if value.speed > max_speed:
            raise MotorLimitsError(
                f"Speed {value.speed} {self.units}/s was requested for "
                f"{self.readback.name} with max speed of {max_speed} {self.units}/s."
            )
        run_up = value.ramp_up_start_pos(accl)
        run_down = value.ramp_down_end_pos(accl)
        await asyncio.gather(self.check_move(run_up), self.check_move(run_down))
        await self.velocity.set(max_speed)
        here = await self.refresh()
        timeout = await self.calculate_timeout(here, run_up)
        await self.move(run_up, lambda: timeout)
        await self.velocity.set(value.speed)
        return SimAxisFlyCtx(fly_info=value)

    async def on_kickoff(self, ctx: SimAxisFlyCtx) -> SimAxisFlyCtx:
        """Start the move to the end of the run-down; return after the run-up."""
        accl = await self.acceleration_time.get_value()
        target = ctx.fly_info.ramp_down_end_pos(accl)
        if ctx.fly_info.timeout == CALCULATE_TIMEOUT:
            here = await self.readback.get_value()
            limit = await self.calculate_timeout(here, target)
        else:
            limit = ctx.fly_info.timeout
        ctx.status = self._fly_status = AsyncStatus(self.move(target, lambda: limit))
        # As ophyd-async's Motor: constant velocity by the time kickoff returns.
        await asyncio.sleep(accl)
        return ctx

    async def on_complete(self, ctx: SimAxisFlyCtx) -> None:
        status = error_if_none(ctx.status, f"{self.readback.name}: kickoff not called")
        await status


class SimAxis(
    StandardMovable[float],
    StandardFlyable[FlyMotorInfo, SimAxisFlyCtx],
    StandardReadable,
):
    """The simulator's axis ``axis`` as a flyable, movable motor (module docstring).

    Args:
        host: The simulated PandA's address (control port 8888).
        axis: The world axis; ``INENCn`` is read by the PandA's INENCn block.
        scale, offset: Engineering units per count, and the position at count 0.
        units: Engineering units.
        velocity, max_velocity: Default and maximum speed, units/s.
        acceleration_time: Seconds to reach speed (sets the run-up distance).
    """

    def __init__(
        self,
        host: str,
        axis: str = "INENC1",
        *,
        scale: float = 0.001,
        offset: float = 0.0,
        units: str = "mm",
        velocity: float = 5.0,
        max_velocity: float = 50.0,
        acceleration_time: float = 0.1,
        name: str = "",
    ) -> None:
        if scale == 0:
            raise ValueError("scale must not be 0")
        self._port = _ControlPort(host)
        self._axis = axis
        self._scale = scale
        self._offset = offset
        self._units = units
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.motor_egu, _ = soft_signal_r_and_setter(str, initial_value=units)
            self.velocity = soft_signal_rw(float, velocity, units=f"{units}/s")
            self.acceleration_time = soft_signal_rw(float, acceleration_time, units="s")
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.user_readback, self._set_readback = soft_signal_r_and_setter(
                float, units=units
            )
        self.user_setpoint = soft_signal_rw(float, units=units)
        self.max_velocity, _ = soft_signal_r_and_setter(
            float, initial_value=max_velocity, units=f"{units}/s"
        )
        self.low_limit_travel = soft_signal_rw(float, 0.0, units=units)
        self.high_limit_travel = soft_signal_rw(float, 0.0, units=units)
        super().__init__(name)

    @cached_property
    def _logic(self) -> SimAxisLogic:
        return SimAxisLogic(
            setpoint=self.user_setpoint,
            readback=self.user_readback,
            port=self._port,
            axis=self._axis,
            scale=self._scale,
            offset=self._offset,
            set_readback=self._set_readback,
            velocity=self.velocity,
            max_velocity=self.max_velocity,
            acceleration_time=self.acceleration_time,
            low_limit_travel=self.low_limit_travel,
            high_limit_travel=self.high_limit_travel,
            units=self._units,
        )

    @cached_property
    def movable_logic(self) -> SimAxisLogic:
        return self._logic

    @cached_property
    def flyable_logic(self) -> SimAxisLogic:
        return self._logic

    @property
    def last_move(self) -> SimMove | None:
        """The last ``*SIM.MOVE`` this device sent (time, start, target, speed)."""
        return self._logic.last_move

    @property
    def axis(self) -> str:
        """The simulator's axis name (``INENCn``)."""
        return self._axis

    @property
    def scale(self) -> float:
        """Engineering units per encoder count."""
        return self._scale

    @property
    def offset(self) -> float:
        """Position at encoder count 0."""
        return self._offset

    async def connect(
        self,
        mock: bool | DeviceMock = False,
        timeout: float = DEFAULT_TIMEOUT,
        force_reconnect: bool = False,
    ) -> None:
        """Connect the soft signals, then read the position from the simulator."""
        await super().connect(mock, timeout, force_reconnect)
        if not mock:
            try:
                await asyncio.wait_for(self._logic.refresh(), timeout)
            except (OSError, TimeoutError) as err:
                raise NotConnectedError(
                    f"{self.name}: no simulated PandA answers at {self._port.host}:8888"
                    f" ({err!r})"
                ) from err

    async def close(self) -> None:
        """Close the control-port connection."""
        await self._port.close()
