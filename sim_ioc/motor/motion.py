"""The simulated motor's behaviour: moves on the world's axis, its readbacks.

:class:`SimMotor` replans the world's axis (in encoder counts) with a
trapezoidal profile on each move and reads ``RBV`` back from it; the motor
record behaviour it keeps, and what it does not simulate, are listed in
:mod:`sim_ioc.motor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from .. import ca
from ..panda.server import EVENT_BUDGET, PandaServer
from ..world import TICKS_PER_SECOND, FaultKind, limit_stop, stopping, trapezoid
from .config import MotorConfig
from .record import (
    MSTA_DIRECTION,
    MSTA_DONE,
    MSTA_ENCODER,
    MSTA_MINUS_LS,
    MSTA_MOVING,
    MSTA_PLUS_LS,
    MSTA_SLIP_STALL,
    MotorRecord,
)

__all__ = ["SimMotor"]

log = logging.getLogger(__name__)

#: Readback refresh while moving, as a motor record's MOVING_POLL_RATE.
MOVING_POLL = 0.05
#: Refresh while idle (notices moves made by ``*SIM`` commands).
IDLE_POLL = 0.2


class SimMotor:
    """One motor record, ``<record>`` and ``<record>.FIELD``, on an axis of
    ``server``'s simulated world.

    :attr:`pvs` is its part of the CA server's database; :meth:`run` keeps the
    readbacks up to date and must run while it is served (tests on simulated
    time call :meth:`refresh` instead).
    """

    def __init__(
        self, server: PandaServer, record: str, config: MotorConfig | None = None
    ) -> None:
        self.server = server
        self.record = record
        self.config = config = config or MotorConfig()
        if config.resolution == 0:
            raise ValueError("encoder resolution must not be 0")
        self.axis = server.panda.world.axis(config.axis)
        self._waiters: list[asyncio.Future[None]] = []
        self._commanded = False  # a move of ours is under way
        self._stopping = False  # ...and was told to stop
        self._stuck = False  # ...and was seen stalled (silently)
        self._wake = asyncio.Event()
        self.fields = f = MotorRecord(
            record, config, self.dial_position(server.now()), self
        )
        #: Its part of the CA server's database.
        self.pvs = f.pvs

    # The fields tests and tools drive in process.

    @property
    def val(self) -> ca.HookedDouble:
        """``VAL``, the user setpoint."""
        return self.fields.val

    @property
    def velo(self) -> ca.HookedDouble:
        """``VELO``, the speed."""
        return self.fields.velo

    @property
    def rbv(self) -> ca.HookedDouble:
        """``RBV``, the user readback."""
        return self.fields.rbv

    @property
    def dmov(self) -> ca.HookedInteger:
        """``DMOV``, done moving."""
        return self.fields.dmov

    @property
    def rep(self) -> ca.HookedInteger:
        """``REP``, the encoder readback."""
        return self.fields.rep

    # -- positions ----------------------------------------------------------------

    @property
    def _sign(self) -> float:
        return -1.0 if self.fields.dir.value == "Neg" else 1.0

    def dial_position(self, ts: int) -> float:
        """Dial position at tick ``ts``, from the axis (in counts)."""
        cfg = self.config
        return (self.axis.position(ts) - cfg.offset) / cfg.resolution

    def user_position(self, ts: int) -> float:
        """User position (what ``RBV`` shows) at tick ``ts``."""
        return self._user(self.dial_position(ts))

    def _user(self, dial: float) -> float:
        return dial * self._sign + float(self.fields.off.value)

    def _dial(self, user: float) -> float:
        return (user - float(self.fields.off.value)) * self._sign

    def _steps(self, dial: float) -> int:
        return round(dial * self.config.resolution)

    def _sync(self) -> int:
        """Bring the PandA's simulation up to the wall clock; returns the tick a
        new motion can start on (the next one the simulation will process, so
        no block has seen the axis beyond it)."""
        self.server.panda.advance(self.server.now(), EVENT_BUDGET)
        return self.server.panda.now + 1

    # -- moves --------------------------------------------------------------------

    def _limits_violated(self, dial: float) -> bool:
        high, low = float(self.fields.dhlm.value), float(self.fields.dllm.value)
        if high == 0 and low == 0:  # the motor record's "no limits"
            return False
        return not low <= dial <= high

    def _plan(self, ts: int, dial_target: float | None) -> None:
        """Replan the axis from tick ``ts``: stop if moving, then move to
        ``dial_target`` (None: just stop)."""
        cfg = self.config
        velo, accl = float(self.fields.velo.value), float(self.fields.accl.value)
        # The axis is in counts: scale speeds and accelerations to counts.
        speed = abs(velo) * cfg.resolution
        acceleration = math.inf if accl <= 0 else speed / accl
        # A limit switch injected mid-move stops the axis as this move would.
        self.axis.limit_deceleration = acceleration
        fault = self.axis.fault
        if fault.stalled:
            return  # stuck: neither a move nor a stop changes anything
        segments = stopping(self.axis, ts, acceleration)
        if dial_target is not None:
            rest = segments[-1]
            target = dial_target * cfg.resolution + cfg.offset
            segments[-1:] = trapezoid(rest.t0, rest.p0, target, speed, acceleration)
        # The controller stops at a limit switch; a move further into one
        # does not start.
        segments = limit_stop(segments, fault, acceleration)
        self.axis.set_motion(ts, segments)
        self.server.panda.resync_encoders()

    async def _move_to(self, dial_target: float) -> asyncio.Future[None]:
        if float(self.fields.velo.value) <= 0:
            raise ca.PutRefused(f"{self.record}.VELO must be positive to move")
        ts = self._sync()
        self._plan(ts, dial_target)
        self._commanded, self._stopping = True, False
        self._stuck = self.axis.fault.kind is FaultKind.STALL
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await self.fields.dval.post(dial_target)
        await self.fields.rval.post(self._steps(dial_target))
        await self.fields.dmov.post(0)
        self._wake.set()
        return waiter

    async def _start(self, user_target: float) -> ca.Deferred | float:
        """A new user setpoint: refuse it (LVIO) or move, put-callback held."""
        dial = self._dial(user_target)
        if self._limits_violated(dial):
            log.warning("%s: %g is beyond the soft limits", self.record, user_target)
            await self.fields.lvio.post(1)
            return float(self.fields.val.value)  # the motor record restores VAL
        await self.fields.lvio.post(0)
        waiter = await self._move_to(dial)
        return ca.Deferred(user_target, waiter)

    async def put_val(self, value: float) -> Any:
        """``VAL``: move there (or, with ``SET=Set``, redefine the position)."""
        if self.fields.set_.value == "Set":
            return await self._redefine(value)
        return await self._start(value)

    async def put_dval(self, value: float) -> Any:
        """``DVAL``: move to a dial position."""
        result = await self._start(self._user(value))
        if isinstance(result, ca.Deferred):
            await self.fields.val.post(result.value)
            return ca.Deferred(value, result.done)
        return float(self.fields.dval.value)

    async def put_rlv(self, value: float) -> float:
        """``RLV``: move relative to ``VAL``."""
        result = await self._start(float(self.fields.val.value) + value)
        if isinstance(result, ca.Deferred):
            await self.fields.val.post(result.value)
        return 0.0

    async def _redefine(self, value: float) -> float:
        """``SET=Set``: make the current position read ``value``."""
        if self.fields.foff.value != "Variable":
            raise ca.PutRefused(
                f"{self.record}: only FOFF=Variable is simulated for SET=Set"
            )
        dial = self.dial_position(self.server.now())
        await self.fields.off.post(value - dial * self._sign)
        await self._refresh_user_fields()
        return value

    async def put_stop(self, value: int) -> int:
        """``STOP``: decelerate to a stop."""
        if value and self._commanded:
            self._stopping = True
            self._plan(self._sync(), None)
            self._wake.set()
        elif value:
            await self.fields.val.post(self.user_position(self.server.now()))
        return 0  # the record clears STOP once it has acted

    # -- parameters -----------------------------------------------------------------

    async def put_velo(self, value: float) -> float:
        """``VELO``: clamped to ``VMAX``."""
        vmax = float(self.fields.vmax.value)
        if value < 0:
            raise ca.PutRefused("VELO must not be negative")
        return min(value, vmax) if vmax > 0 else value

    async def put_vmax(self, value: float) -> None:
        """``VMAX``: lowers ``VELO`` above it."""
        if value < 0:
            raise ca.PutRefused("VMAX must not be negative")
        if 0 < value < float(self.fields.velo.value):
            await self.fields.velo.post(value)

    async def put_accl(self, value: float) -> None:
        """``ACCL``: seconds to reach ``VELO``."""
        if value < 0:
            raise ca.PutRefused("ACCL must not be negative")

    def put_dial_limit(self, which: str) -> ca.PutHandler:
        """``DHLM``/``DLLM`` (``which``: high or low)."""

        async def handler(value: float) -> float:
            # Store first so the user limits are derived from the new value.
            pv = self.fields.dhlm if which == "high" else self.fields.dllm
            await pv.post(float(value))
            await self._refresh_user_fields()
            return value

        return handler

    def put_user_limit(self, which: str) -> ca.PutHandler:
        """``HLM``/``LLM``, stored as dial limits."""

        async def handler(value: float) -> float:
            dial = self._dial(value)
            # With DIR=Neg the user high limit is the dial low limit.
            high = (which == "high") == (self._sign > 0)
            await (self.fields.dhlm if high else self.fields.dllm).post(dial)
            await self._refresh_user_fields()
            return value

        return handler

    async def put_off(self, value: float) -> float:
        """``OFF``: the user offset."""
        await self.fields.off.post(float(value))
        await self._refresh_user_fields()
        return value

    async def put_dir(self, value: str) -> str:
        """``DIR``: the user direction."""
        await self.fields.dir.post(value)
        await self._refresh_user_fields()
        return value

    async def _refresh_user_fields(self) -> None:
        """User-coordinate fields after OFF, DIR or a limit changed."""
        a, b = (
            self._user(float(self.fields.dllm.value)),
            self._user(float(self.fields.dhlm.value)),
        )
        await self.fields.llm.post(min(a, b))
        await self.fields.hlm.post(max(a, b))
        await self.fields.val.post(self._user(float(self.fields.dval.value)))
        await self._publish(self.server.now())

    # -- readbacks ------------------------------------------------------------------

    async def _publish(self, ts: int) -> bool:
        """Post readbacks for tick ``ts``; returns whether the axis moves."""
        dial = self.dial_position(ts)
        position = self.axis.position(ts)
        velocity = self.axis.velocity(ts)
        fault = self.axis.fault
        moving = velocity != 0
        # A stuck amplifier: at rest, but the controller reports it moving.
        stuck = fault.kind is FaultKind.STALL and self._commanded
        self._stuck |= stuck
        movn = moving or stuck
        if moving:
            await self.fields.tdir.post(int((velocity > 0) == (self._sign > 0)))
        await self.fields.drbv.post(dial)
        await self.fields.rbv.post(self._user(dial))
        await self.fields.rrbv.post(self._steps(dial))
        await self.fields.rep.post(math.floor(position + 1e-9))
        await self.fields.movn.post(int(movn))
        msta = MSTA_ENCODER | (MSTA_MOVING if movn else MSTA_DONE)
        if int(self.fields.tdir.value):
            msta |= MSTA_DIRECTION
        # The controller's switches are in counts' direction (raw).
        on = fault.switch_on(position)
        plus, minus = on and fault.limit_sign > 0, on and fault.limit_sign < 0
        msta |= (MSTA_PLUS_LS if plus else 0) | (MSTA_MINUS_LS if minus else 0)
        if fault.kind is FaultKind.STALL_REPORTED:
            msta |= MSTA_SLIP_STALL
        await self.fields.msta.post(msta)
        # HLS/LLS are the user's high and low, as the motor record maps them:
        # swapped when DIR=Neg or a negative MRES (resolution) flips the axis.
        if (self._sign > 0) != (self.config.resolution > 0):
            plus, minus = minus, plus
        await self.fields.hls.post(int(plus))
        await self.fields.lls.post(int(minus))
        return moving

    def _cut_short(self, ts: int) -> bool:
        """Whether a limit switch holds the axis short of the record's target."""
        fault, position = self.axis.fault, self.axis.position(ts)
        cfg = self.config
        target = float(self.fields.dval.value) * cfg.resolution + cfg.offset
        return (
            fault.switch_on(position) and (target - position) * fault.limit_sign > 1e-6
        )

    async def _finish_if_done(self, ts: int) -> None:
        end = self.axis.end_of_motion()
        if not self._commanded or end is None or ts < end:
            return
        kind = self.axis.fault.kind
        if kind is FaultKind.STALL:
            return  # the stuck amplifier never reports the move done
        self._commanded = False
        dial = self.dial_position(ts)
        # At least a count from the target.
        off = abs(dial - float(self.fields.dval.value)) * abs(self.config.resolution)
        if off < 1:
            await self.fields.miss.post(0)
        elif kind is FaultKind.STALL_REPORTED:
            # The record retries a move that ended short, in vain: MISS.
            await self.fields.miss.post(1)
        # As the motor record: VAL is where it stopped after a STOP or a
        # limit switch; and here after a silent stall is cleared too.
        if self._stopping or self._stuck or self._cut_short(ts):
            await self.fields.dval.post(dial)
            await self.fields.val.post(self._user(dial))
        self._stopping = self._stuck = False
        await self.fields.dmov.post(1)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def refresh(self, ts: int) -> float:
        """Bring the fields up to tick ``ts`` (readbacks, the end of a move);
        returns the seconds until the next refresh is due."""
        moving = await self._publish(ts)
        await self._finish_if_done(ts)
        delay = MOVING_POLL if moving or self._commanded else IDLE_POLL
        end = self.axis.end_of_motion()
        if self._commanded and end is not None and end > ts:
            # Wake exactly when the move ends, so DMOV is not late.
            delay = min(delay, (end - ts) / TICKS_PER_SECOND)
        return delay

    async def run(self) -> None:
        """Keep the readbacks current (fast while moving) until cancelled."""
        while True:
            delay = await self.refresh(self.server.now())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
