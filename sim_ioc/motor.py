"""A simulated motor record that drives an axis of the PandA's world.

Served over Channel Access by caproto (see :mod:`sim_ioc.ca`), field by field as
the EPICS motor record names them (``SIM:M1``, ``SIM:M1.RBV``, ``.DMOV``...), so
ophyd-async's stock :class:`ophyd_async.epics.motor.Motor` connects unchanged.

The world's axis (``INENC1`` by default, in encoder counts) is the single source
of truth: a move replans it with a trapezoidal velocity profile
(:func:`sim_ioc.world.trapezoid`), the INENC block of the same name counts it
tick by tick, and the readback is read back from it. So PCOMP fires where the
motor really is, and a ``*SIM.MOVE`` on the PandA's control port shows in
``RBV`` too. Dial position and encoder counts are related by::

    counts = dial * resolution + offset      (resolution: counts per EGU)

and user and dial positions as in the motor record: ``user = dial * DIR + OFF``
(DIR +1 for ``Pos``, -1 for ``Neg``).

Motor-record behaviour kept: put-callback on ``VAL`` completes when the move
is done (``DMOV`` back to 1); soft limits in dial (``DHLM``/``DLLM``, both 0 =
none) refuse a move by setting ``LVIO=1`` and restoring ``VAL``; ``STOP``
decelerates at the ``ACCL`` rate and sets ``VAL`` to where it stopped; a new
``VAL`` during a move stops and then moves to it; ``VELO`` is clamped to
``VMAX``; ``SET=Set`` with ``FOFF=Variable`` redefines the user position
through ``OFF``. Not simulated: backlash, retries, homing, jogging, hard limit
switches (``HLS``/``LLS`` stay 0), ``SPMG``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

from caproto import ChannelData

from . import ca
from .panda.server import EVENT_BUDGET, PandaServer
from .world import TICKS_PER_SECOND, stopping, trapezoid

__all__ = ["MotorConfig", "SimMotor"]

log = logging.getLogger(__name__)

#: Readback refresh while moving, as a motor record's MOVING_POLL_RATE.
MOVING_POLL = 0.05
#: Refresh while idle (notices moves made by ``*SIM`` commands).
IDLE_POLL = 0.2
#: MSTA bits (motor record's "motor status").
_MSTA_DIRECTION, _MSTA_DONE, _MSTA_ENCODER, _MSTA_MOVING = 1, 2, 1 << 8, 1 << 10


@dataclass(frozen=True)
class MotorConfig:
    """How a simulated motor is built (and its fields at start-up)."""

    #: World axis it drives; the PandA's INENC of the same name reads it.
    axis: str = "INENC1"
    #: Encoder counts per engineering unit (1000: one count per micrometre).
    resolution: float = 1000.0
    #: Encoder counts at dial position 0.
    offset: float = 0.0
    egu: str = "mm"
    precision: int = 4
    velocity: float = 1.0  # VELO, EGU/s
    max_velocity: float = 10.0  # VMAX, EGU/s
    acceleration_time: float = 0.1  # ACCL, s from rest to VELO
    low_limit: float = -100.0  # DLLM
    high_limit: float = 100.0  # DHLM
    description: str = "Simulated motor"


class SimMotor:
    """One motor record, ``<record>`` and ``<record>.FIELD``, on an axis of
    ``server``'s simulated world.

    :attr:`pvs` is its part of the CA server's database; :meth:`run` keeps the
    readbacks up to date and must run while it is served.
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
        self._wake = asyncio.Event()
        prec, egu = config.precision, config.egu

        def d(value: float = 0.0, **kw: Any) -> ca.HookedDouble:
            return ca.double(value, precision=prec, units=egu, **kw)

        def ro_int(value: int = 0) -> ca.HookedInteger:
            return ca.integer(value, read_only=True)

        dial0 = self.dial_position(self.server.now())
        self.val = d(dial0, on_put=self._put_val)
        self.dval = d(dial0, on_put=self._put_dval)
        self.rlv = d(0.0, on_put=self._put_rlv)
        self.rbv = d(dial0, read_only=True)
        self.drbv = d(dial0, read_only=True)
        self.rrbv = ro_int(self._steps(dial0))
        self.rval = ro_int(self._steps(dial0))
        self.rep = ro_int(math.floor(dial0 * config.resolution + config.offset))
        self.dmov = ro_int(1)
        self.movn = ro_int(0)
        self.tdir = ro_int(0)
        self.msta = ro_int(_MSTA_DONE | _MSTA_ENCODER)
        self.lvio = ro_int(0)
        self.velo = ca.double(
            config.velocity, precision=prec, units=f"{egu}/s", on_put=self._put_velo
        )
        self.vmax = ca.double(
            config.max_velocity, precision=prec, units=f"{egu}/s", on_put=self._put_vmax
        )
        self.vbas = ca.double(0.0, precision=prec, units=f"{egu}/s", read_only=True)
        self.accl = ca.double(
            config.acceleration_time, precision=3, units="s", on_put=self._put_accl
        )
        self.dhlm = d(config.high_limit, on_put=self._put_dial_limit("high"))
        self.dllm = d(config.low_limit, on_put=self._put_dial_limit("low"))
        self.hlm = d(config.high_limit, on_put=self._put_user_limit("high"))
        self.llm = d(config.low_limit, on_put=self._put_user_limit("low"))
        self.off = d(0.0, on_put=self._put_off)
        self.dir = ca.enum(("Pos", "Neg"), on_put=self._put_dir)
        self.foff = ca.enum(("Variable", "Frozen"))
        self.set_ = ca.enum(("Use", "Set"))
        self.stop = ca.integer(0, on_put=self._put_stop)
        mres = 1.0 / config.resolution
        fields: dict[str, ChannelData] = {
            "VAL": self.val,
            "DVAL": self.dval,
            "RLV": self.rlv,
            "RBV": self.rbv,
            "DRBV": self.drbv,
            "RRBV": self.rrbv,
            "RVAL": self.rval,
            "REP": self.rep,
            "DMOV": self.dmov,
            "MOVN": self.movn,
            "TDIR": self.tdir,
            "MSTA": self.msta,
            "LVIO": self.lvio,
            "HLS": ro_int(0),
            "LLS": ro_int(0),
            "MISS": ro_int(0),
            "VELO": self.velo,
            "VMAX": self.vmax,
            "VBAS": self.vbas,
            "ACCL": self.accl,
            "HLM": self.hlm,
            "LLM": self.llm,
            "DHLM": self.dhlm,
            "DLLM": self.dllm,
            "OFF": self.off,
            "DIR": self.dir,
            "FOFF": self.foff,
            "SET": self.set_,
            "STOP": self.stop,
            "EGU": ca.string(egu, read_only=True),
            "PREC": ca.integer(prec, read_only=True),
            "MRES": ca.double(mres, precision=9, units=egu, read_only=True),
            "ERES": ca.double(mres, precision=9, units=egu, read_only=True),
            "SREV": ca.integer(200, read_only=True),
            "UREV": ca.double(200 * mres, precision=9, units=egu, read_only=True),
            "RDBD": ca.double(mres, precision=9, units=egu, read_only=True),
            "OUT": ca.string(f"@sim {config.axis}", read_only=True),
            "DESC": ca.string(config.description),
            "NAME": ca.string(record, read_only=True),
        }
        self.pvs: dict[str, ChannelData] = {record: self.val}
        self.pvs.update({f"{record}.{name}": pv for name, pv in fields.items()})

    # -- positions ----------------------------------------------------------------

    @property
    def _sign(self) -> float:
        return -1.0 if self.dir.value == "Neg" else 1.0

    def dial_position(self, ts: int) -> float:
        """Dial position at tick ``ts``, from the axis (in counts)."""
        cfg = self.config
        return (self.axis.position(ts) - cfg.offset) / cfg.resolution

    def user_position(self, ts: int) -> float:
        """User position (what ``RBV`` shows) at tick ``ts``."""
        return self._user(self.dial_position(ts))

    def _user(self, dial: float) -> float:
        return dial * self._sign + float(self.off.value)

    def _dial(self, user: float) -> float:
        return (user - float(self.off.value)) * self._sign

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
        high, low = float(self.dhlm.value), float(self.dllm.value)
        if high == 0 and low == 0:  # the motor record's "no limits"
            return False
        return not low <= dial <= high

    def _plan(self, ts: int, dial_target: float | None) -> None:
        """Replan the axis from tick ``ts``: stop if moving, then move to
        ``dial_target`` (None: just stop)."""
        cfg = self.config
        velo, accl = float(self.velo.value), float(self.accl.value)
        # The axis is in counts: scale speeds and accelerations to counts.
        speed = abs(velo) * cfg.resolution
        acceleration = math.inf if accl <= 0 else speed / accl
        segments = stopping(self.axis, ts, acceleration)
        if dial_target is not None:
            rest = segments[-1]
            target = dial_target * cfg.resolution + cfg.offset
            segments[-1:] = trapezoid(rest.t0, rest.p0, target, speed, acceleration)
        self.axis.set_motion(ts, segments)
        self.server.panda.resync_encoders()

    async def _move_to(self, dial_target: float) -> asyncio.Future[None]:
        if float(self.velo.value) <= 0:
            raise ca.PutRefused(f"{self.record}.VELO must be positive to move")
        ts = self._sync()
        self._plan(ts, dial_target)
        self._commanded, self._stopping = True, False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await self.dval.post(dial_target)
        await self.rval.post(self._steps(dial_target))
        await self.dmov.post(0)
        self._wake.set()
        return waiter

    async def _start(self, user_target: float) -> ca.Deferred | float:
        """A new user setpoint: refuse it (LVIO) or move, put-callback held."""
        dial = self._dial(user_target)
        if self._limits_violated(dial):
            log.warning("%s: %g is beyond the soft limits", self.record, user_target)
            await self.lvio.post(1)
            return float(self.val.value)  # the motor record restores VAL
        await self.lvio.post(0)
        waiter = await self._move_to(dial)
        return ca.Deferred(user_target, waiter)

    async def _put_val(self, value: float) -> Any:
        if self.set_.value == "Set":
            return await self._redefine(value)
        return await self._start(value)

    async def _put_dval(self, value: float) -> Any:
        result = await self._start(self._user(value))
        if isinstance(result, ca.Deferred):
            await self.val.post(result.value)
            return ca.Deferred(value, result.done)
        return float(self.dval.value)

    async def _put_rlv(self, value: float) -> float:
        result = await self._start(float(self.val.value) + value)
        if isinstance(result, ca.Deferred):
            await self.val.post(result.value)
        return 0.0

    async def _redefine(self, value: float) -> float:
        """``SET=Set``: make the current position read ``value``."""
        if self.foff.value != "Variable":
            raise ca.PutRefused(
                f"{self.record}: only FOFF=Variable is simulated for SET=Set"
            )
        dial = self.dial_position(self.server.now())
        await self.off.post(value - dial * self._sign)
        await self._refresh_user_fields()
        return value

    async def _put_stop(self, value: int) -> int:
        if value and self._commanded:
            self._stopping = True
            self._plan(self._sync(), None)
            self._wake.set()
        elif value:
            await self.val.post(self.user_position(self.server.now()))
        return 0  # the record clears STOP once it has acted

    # -- parameters -----------------------------------------------------------------

    async def _put_velo(self, value: float) -> float:
        vmax = float(self.vmax.value)
        if value < 0:
            raise ca.PutRefused("VELO must not be negative")
        return min(value, vmax) if vmax > 0 else value

    async def _put_vmax(self, value: float) -> None:
        if value < 0:
            raise ca.PutRefused("VMAX must not be negative")
        if 0 < value < float(self.velo.value):
            await self.velo.post(value)

    async def _put_accl(self, value: float) -> None:
        if value < 0:
            raise ca.PutRefused("ACCL must not be negative")

    def _put_dial_limit(self, which: str) -> ca.PutHandler:
        async def handler(value: float) -> float:
            # Store first so the user limits are derived from the new value.
            pv = self.dhlm if which == "high" else self.dllm
            await pv.post(float(value))
            await self._refresh_user_fields()
            return value

        return handler

    def _put_user_limit(self, which: str) -> ca.PutHandler:
        async def handler(value: float) -> float:
            dial = self._dial(value)
            # With DIR=Neg the user high limit is the dial low limit.
            high = (which == "high") == (self._sign > 0)
            await (self.dhlm if high else self.dllm).post(dial)
            await self._refresh_user_fields()
            return value

        return handler

    async def _put_off(self, value: float) -> float:
        await self.off.post(float(value))
        await self._refresh_user_fields()
        return value

    async def _put_dir(self, value: str) -> str:
        await self.dir.post(value)
        await self._refresh_user_fields()
        return value

    async def _refresh_user_fields(self) -> None:
        """User-coordinate fields after OFF, DIR or a limit changed."""
        a, b = self._user(float(self.dllm.value)), self._user(float(self.dhlm.value))
        await self.llm.post(min(a, b))
        await self.hlm.post(max(a, b))
        await self.val.post(self._user(float(self.dval.value)))
        await self._publish(self.server.now())

    # -- readbacks ------------------------------------------------------------------

    async def _publish(self, ts: int) -> bool:
        """Post readbacks for tick ``ts``; returns whether the axis moves."""
        dial = self.dial_position(ts)
        velocity = self.axis.velocity(ts)
        moving = velocity != 0
        if moving:
            await self.tdir.post(int((velocity > 0) == (self._sign > 0)))
        await self.drbv.post(dial)
        await self.rbv.post(self._user(dial))
        await self.rrbv.post(self._steps(dial))
        await self.rep.post(math.floor(self.axis.position(ts) + 1e-9))
        await self.movn.post(int(moving))
        msta = _MSTA_ENCODER | (_MSTA_MOVING if moving else _MSTA_DONE)
        if int(self.tdir.value):
            msta |= _MSTA_DIRECTION
        await self.msta.post(msta)
        return moving

    async def _finish_if_done(self, ts: int) -> None:
        end = self.axis.end_of_motion()
        if not self._commanded or end is None or ts < end:
            return
        self._commanded = False
        if self._stopping:
            # As the motor record: VAL is where it stopped.
            dial = self.dial_position(ts)
            await self.dval.post(dial)
            await self.val.post(self._user(dial))
            self._stopping = False
        await self.dmov.post(1)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def run(self) -> None:
        """Keep the readbacks current (fast while moving) until cancelled."""
        while True:
            ts = self.server.now()
            moving = await self._publish(ts)
            await self._finish_if_done(ts)
            delay = MOVING_POLL if moving or self._commanded else IDLE_POLL
            end = self.axis.end_of_motion()
            if self._commanded and end is not None:
                # Wake exactly when the move ends, so DMOV is not late.
                delay = min(delay, max(0.0, (end - ts) / TICKS_PER_SECOND))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
