"""COUNTER: 32-bit up/down counter of trigger edges.

Counting. While ``ENABLE`` is high, each ``TRIG`` edge selected by
``TRIG_EDGE`` (0 rising, 1 falling, 2 either) adds ``STEP`` to the count, or
subtracts it when ``DIR`` is 1. ``STEP`` is a signed 32-bit register where 0
means 1. ``DIR``, ``STEP`` and ``TRIG_EDGE`` are sampled on the edge's own
tick, so a value written on that tick already applies.

Reloading. The rising edge of ``ENABLE`` loads ``START`` (a trigger edge on
that tick is ignored); writing ``SET`` loads its value at once, enabled or
not (and a trigger edge on that tick is ignored too). Disabling keeps the
count.

Rollover. The count lives in ``[MIN, MAX]``, by default the whole int32
range. A step that leaves the range wraps by ``MAX - MIN + 1`` and raises
``CARRY``; any further trigger edge (selected or not) or the falling edge of
``ENABLE`` drops it again. Writing ``MAX`` or ``MIN`` loads both limits
together, from the next tick on; writing both as 0 restores the full range.

``OUT_MODE``. In On-Change (0) ``OUT`` and ``CARRY`` show the live count and
carry. In On-Disable (1) they only change on the falling edge of ``ENABLE``:
``OUT`` becomes the result of the last counted trigger and ``CARRY`` whether
any rollover happened since the last reload. As in the firmware, that "last
counted trigger" survives reloads: disabling before any trigger since the
last rising edge shows the previous acquisition's final count, not START.

All inputs act on the tick they change; the block never asks to be woken.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import register
from .base import Block, Bus, BusTimeline, TableMemory, Train, to_int32

INT32_MAX = 0x7FFFFFFF
INT32_MIN = -0x80000000


@register
class Counter(Block):
    """Tick-exact model of the COUNTER block (see the module docstring)."""

    NAME = "COUNTER"
    INPUTS = (
        "ENABLE",
        "TRIG",
        "DIR",
        "TRIG_EDGE",
        "OUT_MODE",
        "SET",
        "START",
        "STEP",
        "MAX",
        "MIN",
    )
    #: ``CARRY`` is a bit output, ``OUT`` a position output.
    OUTPUTS = ("CARRY", "OUT")

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        self._count = 0
        #: Result of the last counted trigger: what On-Disable mode publishes.
        self._last_result = 0
        #: Live carry (On-Change) and "rolled over since reload" latch.
        self._carry = 0
        self._carry_latch = 0
        #: Values published in On-Disable mode, captured at falling enable.
        self._end_count = 0
        self._end_carry = 0
        self._max = INT32_MAX
        self._min = INT32_MIN
        #: Limits written on a tick: (tick, max, min), effective after it.
        self._new_limits: tuple[int, int, int] | None = None
        self._enable = 0
        self._trig = 0

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        if self._new_limits is not None and self._new_limits[0] < ts:
            _, self._max, self._min = self._new_limits
            self._new_limits = None
        v = self.values
        for name, value in changes.items():
            v[name] = value
        enable = v["ENABLE"] & 1
        trig = v["TRIG"] & 1
        old_trig, old_enable = self._trig, self._enable
        self._trig = trig
        self._enable = enable

        if "MAX" in changes or "MIN" in changes:
            # The firmware registers the limits, so a trigger on the write
            # tick still uses the old ones.
            high, low = to_int32(v["MAX"]), to_int32(v["MIN"])
            if high == 0 and low == 0:
                high, low = INT32_MAX, INT32_MIN
            self._new_limits = (ts, high, low)

        if enable and not old_enable:
            self._count = to_int32(v["START"])
            self._carry_latch = 0
        elif "SET" in changes:
            self._count = to_int32(v["SET"])
            self._carry_latch = 0
        elif old_enable and not enable:
            self._carry = 0
            self._end_count = self._last_result
            self._end_carry = self._carry_latch
        elif enable and trig != old_trig:
            self._carry = 0
            edge = v["TRIG_EDGE"] & 3
            if edge == 2 or edge == trig ^ 1:  # 0: rising, 1: falling
                self._step(-1 if v["DIR"] & 1 else 1, to_int32(v["STEP"]) or 1)

        if v["OUT_MODE"] & 1:
            out, carry = self._end_count, self._end_carry
        else:
            out, carry = self._count, self._carry
        if v["OUT"] != out:
            v["OUT"] = self.changes["OUT"] = out
        if v["CARRY"] != carry:
            v["CARRY"] = self.changes["CARRY"] = carry
        return None

    # -- trains -----------------------------------------------------------------

    def _limits_at(self, ts: int) -> tuple[int, int]:
        """(max, min) in force for a call on tick ``ts``."""
        if self._new_limits is not None and self._new_limits[0] < ts:
            return self._new_limits[1], self._new_limits[2]
        return self._max, self._min

    def _train_edges(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(edge?, counted?) for each entry of a TRIG train."""
        trig = values & 1
        previous = np.empty_like(trig)
        previous[0] = self._trig
        previous[1:] = trig[:-1]
        edge = trig != previous
        mode = self.values["TRIG_EDGE"] & 3
        if mode == 2:
            counted = edge
        elif mode == 3:
            counted = np.zeros_like(edge)
        else:
            counted = edge & (trig == (mode ^ 1))
        return edge, counted

    def plan_train(self, inputs: Mapping[str, Train]) -> tuple[int, frozenset[str]]:
        if set(inputs) != {"TRIG"}:
            return 0, frozenset()
        ticks, values = inputs["TRIG"]
        v = self.values
        if not len(ticks) or v["ENABLE"] & 1 != self._enable:
            return 0, frozenset()
        if not self._enable:
            return len(ticks), frozenset()
        on_change = not v["OUT_MODE"] & 1
        edge, counted = self._train_edges(values)
        if on_change and self._carry and edge.any():
            return 0, frozenset()  # CARRY would drop
        high, low = self._limits_at(int(ticks[0]))
        delta = (-1 if v["DIR"] & 1 else 1) * (to_int32(v["STEP"]) or 1)
        # Steps that stay within [MIN, MAX]: a rollover goes event by event.
        safe = (
            (high - self._count) // delta
            if delta > 0
            else (self._count - low) // -delta
        )
        steps = np.flatnonzero(counted)
        n = len(ticks) if len(steps) <= max(safe, 0) else int(steps[max(safe, 0)])
        return n, frozenset({"OUT"}) if on_change else frozenset()

    def follow_train(
        self, inputs: Mapping[str, Train], bus: BusTimeline
    ) -> dict[str, Train]:
        self.changes = {}
        ticks, values = inputs["TRIG"]
        v = self.values
        if self._new_limits is not None and self._new_limits[0] < int(ticks[0]):
            _, self._max, self._min = self._new_limits
            self._new_limits = None
        out: dict[str, Train] = {}
        if self._enable:
            edge, counted = self._train_edges(values)
            if edge.any():
                self._carry = 0
            steps = np.flatnonzero(counted)
            if len(steps):
                delta = (-1 if v["DIR"] & 1 else 1) * (to_int32(v["STEP"]) or 1)
                counts = self._count + delta * np.arange(
                    1, len(steps) + 1, dtype=np.int64
                )
                self._count = self._last_result = int(counts[-1])
                if not v["OUT_MODE"] & 1:
                    v["OUT"] = self._count
                    out["OUT"] = (ticks[steps], counts)
        v["TRIG"] = int(values[-1])
        self._trig = v["TRIG"] & 1
        return out

    def _step(self, direction: int, step: int) -> None:
        value = self._count + direction * step
        span = self._max - self._min + 1
        if value > self._max:
            value -= span
            self._carry = self._carry_latch = 1
        elif value < self._min:
            value += span
            self._carry = self._carry_latch = 1
        # Wrapping to 32 bits only matters when STEP exceeds the range, which
        # the firmware does not guard against either.
        self._count = self._last_result = to_int32(value)
