"""The motor record's fields as Channel Access PVs: ``<record>``, ``<record>.FIELD``.

Named and typed as the EPICS motor record's, so ophyd-async's stock
:class:`ophyd_async.epics.motor.Motor` connects unchanged. What a put to a
field does is the motor's (:mod:`.motion`), handed in as :class:`PutHooks`.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from caproto import ChannelData

from .. import ca
from .config import MotorConfig

__all__ = [
    "MSTA_DIRECTION",
    "MSTA_DONE",
    "MSTA_ENCODER",
    "MSTA_MINUS_LS",
    "MSTA_MOVING",
    "MSTA_PLUS_LS",
    "MSTA_SLIP_STALL",
    "MotorRecord",
    "PutHooks",
]

#: MSTA bits (motor record's "motor status"): RA_DIRECTION, RA_DONE,
#: EA_PRESENT, RA_MOVING.
MSTA_DIRECTION, MSTA_DONE, MSTA_ENCODER, MSTA_MOVING = 1, 2, 1 << 8, 1 << 10
#: RA_PLUS_LS, EA_SLIP_STALL, RA_MINUS_LS: the controller's limit switches (in
#: raw, not user, direction) and its stall detection.
MSTA_PLUS_LS, MSTA_SLIP_STALL, MSTA_MINUS_LS = 1 << 2, 1 << 6, 1 << 13


class PutHooks(Protocol):
    """What puts to the writable fields do."""

    async def put_val(self, value: float) -> Any: ...
    async def put_dval(self, value: float) -> Any: ...
    async def put_rlv(self, value: float) -> float: ...
    async def put_velo(self, value: float) -> float: ...
    async def put_vmax(self, value: float) -> None: ...
    async def put_accl(self, value: float) -> None: ...
    def put_dial_limit(self, which: str) -> ca.PutHandler: ...
    def put_user_limit(self, which: str) -> ca.PutHandler: ...
    async def put_off(self, value: float) -> float: ...
    async def put_dir(self, value: str) -> str: ...
    async def put_stop(self, value: int) -> int: ...


class MotorRecord:
    """One motor record's fields; :attr:`pvs` is its part of the CA server's
    database.

    Args:
        record: the record name, e.g. ``SIM:M1``.
        config: build-time settings (units, speeds, limits, encoder scale).
        dial0: the dial position at start-up.
        hooks: what puts to the writable fields do.
    """

    def __init__(
        self, record: str, config: MotorConfig, dial0: float, hooks: PutHooks
    ) -> None:
        prec, egu = config.precision, config.egu

        def d(value: float = 0.0, **kw: Any) -> ca.HookedDouble:
            return ca.double(value, precision=prec, units=egu, **kw)

        def ro_int(value: int = 0) -> ca.HookedInteger:
            return ca.integer(value, read_only=True)

        steps0 = round(dial0 * config.resolution)
        self.val = d(dial0, on_put=hooks.put_val)
        self.dval = d(dial0, on_put=hooks.put_dval)
        self.rlv = d(0.0, on_put=hooks.put_rlv)
        self.rbv = d(dial0, read_only=True)
        self.drbv = d(dial0, read_only=True)
        self.rrbv = ro_int(steps0)
        self.rval = ro_int(steps0)
        self.rep = ro_int(math.floor(dial0 * config.resolution + config.offset))
        self.dmov = ro_int(1)
        self.movn = ro_int(0)
        self.tdir = ro_int(0)
        self.msta = ro_int(MSTA_DONE | MSTA_ENCODER)
        self.lvio = ro_int(0)
        self.hls = ro_int(0)
        self.lls = ro_int(0)
        self.miss = ro_int(0)
        self.velo = ca.double(
            config.velocity, precision=prec, units=f"{egu}/s", on_put=hooks.put_velo
        )
        self.vmax = ca.double(
            config.max_velocity, precision=prec, units=f"{egu}/s", on_put=hooks.put_vmax
        )
        self.vbas = ca.double(0.0, precision=prec, units=f"{egu}/s", read_only=True)
        self.accl = ca.double(
            config.acceleration_time, precision=3, units="s", on_put=hooks.put_accl
        )
        self.dhlm = d(config.high_limit, on_put=hooks.put_dial_limit("high"))
        self.dllm = d(config.low_limit, on_put=hooks.put_dial_limit("low"))
        self.hlm = d(config.high_limit, on_put=hooks.put_user_limit("high"))
        self.llm = d(config.low_limit, on_put=hooks.put_user_limit("low"))
        self.off = d(0.0, on_put=hooks.put_off)
        self.dir = ca.enum(("Pos", "Neg"), on_put=hooks.put_dir)
        self.foff = ca.enum(("Variable", "Frozen"))
        self.set_ = ca.enum(("Use", "Set"))
        self.stop = ca.integer(0, on_put=hooks.put_stop)
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
            "HLS": self.hls,
            "LLS": self.lls,
            "MISS": self.miss,
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
