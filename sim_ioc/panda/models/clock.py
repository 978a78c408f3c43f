"""CLOCK: a free-running clock of configurable period and width.

Parameters. ``PERIOD`` and ``WIDTH`` are ``time`` fields: 48-bit tick counts
in the registers ``PERIOD_L``/``PERIOD_H`` and ``WIDTH_L``/``WIDTH_H``. The
upstream timing vectors (and the firmware's 32-bit VHDL ports) write them as
single ``PERIOD``/``WIDTH`` registers; the model accepts those too, as the
whole value.

The effective period and high time follow the firmware's rules:

* ``PERIOD = WIDTH = 0``: the clock is stopped, ``OUT`` is 0;
* ``PERIOD <= WIDTH``: the period becomes ``WIDTH + 1``;
* ``PERIOD = 1`` (with ``WIDTH = 0``): the period becomes 2;
* ``WIDTH = 0``: ``OUT`` is high for ``period // 2`` ticks, else for ``WIDTH``.

Timing. The firmware registers ``ENABLE`` and the parameter write strobes, so
everything acts one tick after the change: on tick ``t + 1`` after ``ENABLE``
rises on ``t`` the clock starts with ``OUT`` high; one tick after ``ENABLE``
falls ``OUT`` is forced low. Writing any parameter while enabled restarts the
clock from a rising edge one tick later, with the new values (a write while
disabled only changes what the next enable uses). Periods are counted from
that start: ``OUT`` rises every ``period`` ticks and falls ``high`` ticks
after each rise.

The model is event driven: it asks to be woken only at its next edge (or the
tick after an input changed), so a clock of any period costs two calls per
cycle.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import register
from .base import Block, Bus, TableMemory

#: Registers whose write restarts the clock. ``PERIOD``/``WIDTH`` are the
#: single-register spelling of the upstream vectors.
_PARAMS = frozenset({"PERIOD_L", "PERIOD_H", "WIDTH_L", "WIDTH_H", "PERIOD", "WIDTH"})


def _ticks(low: int, high: int) -> int:
    """A 48-bit time from its two registers (the firmware keeps 16 high bits)."""
    return (low & 0xFFFFFFFF) | (high & 0xFFFF) << 32


def clock_shape(period: int, width: int) -> tuple[int, int]:
    """The (period, high ticks) the firmware runs for the requested values.

    A period of 0 means the clock is stopped.
    """
    if period == 0 and width == 0:
        return 0, 0
    if period <= width:
        full = width + 1
    elif period == 1:
        full = 2
    else:
        full = period
    return full, (width if width else full // 2)


@register
class Clock(Block):
    """Tick-exact model of the CLOCK block (see the module docstring)."""

    NAME = "CLOCK"
    INPUTS = ("ENABLE", "PERIOD_L", "PERIOD_H", "WIDTH_L", "WIDTH_H")
    #: ``OUT`` is a bit output.
    OUTPUTS = ("OUT",)

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        #: Enable and shape in force (the registered copies of the inputs).
        self._enabled = 0
        self._period = 0
        self._high = 0
        #: First tick of the running clock's periods, or None when stopped.
        self._origin: int | None = None
        #: Inputs seen on tick ``_due - 1``, acting on tick ``_due``:
        #: (enable, period, high, parameters written).
        self._due: int | None = None
        self._next: tuple[int, int, int, bool] = (0, 0, 0, False)

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        if self._due is not None and self._due <= ts:
            self._act(self._due)
        self._publish(ts)
        if changes:
            self._latch(ts, changes)
        wake = self._next_edge(ts)
        if self._due is not None and (wake is None or self._due < wake):
            wake = self._due
        return wake

    def square_wave(self) -> tuple[str, int, int, int] | None:
        if self._due is not None or self._origin is None:
            return None
        return "OUT", self._origin, self._period, self._high

    def follow_wave(self, ts: int, value: int) -> None:
        self.changes = {}
        self.values["OUT"] = value

    def _latch(self, ts: int, changes: Mapping[str, int]) -> None:
        """Record this tick's inputs; they act on the next tick."""
        v = self.values
        written = not _PARAMS.isdisjoint(changes)
        for name in ("PERIOD", "WIDTH"):
            if name in changes:
                value = changes[name]
                v[f"{name}_L"], v[f"{name}_H"] = value & 0xFFFFFFFF, value >> 32
        self.apply_inputs({k: x for k, x in changes.items() if k in self.INPUTS})
        enable = v["ENABLE"] & 1
        if written or enable != self._enabled:
            period, high = clock_shape(
                _ticks(v["PERIOD_L"], v["PERIOD_H"]), _ticks(v["WIDTH_L"], v["WIDTH_H"])
            )
            self._due = ts + 1
            self._next = (enable, period, high, written)

    def _act(self, tick: int) -> None:
        """Apply inputs latched on the previous tick, as of ``tick``."""
        enable, period, high, written = self._next
        self._due = None
        rose = enable and not self._enabled
        self._enabled, self._period, self._high = enable, period, high
        if not enable or period == 0:
            self._origin = None
        elif rose or written or self._origin is None:
            self._origin = tick

    def _publish(self, ts: int) -> None:
        if self._origin is None:
            out = 0
        else:
            out = 1 if (ts - self._origin) % self._period < self._high else 0
        if self.values["OUT"] != out:
            self.values["OUT"] = self.changes["OUT"] = out

    def _next_edge(self, ts: int) -> int | None:
        if self._origin is None:
            return None
        start = ts - (ts - self._origin) % self._period
        fall = start + self._high
        return fall if fall > ts else start + self._period
