"""FILTER: the difference or the running mean of a position input.

``MODE`` 0, difference. A rising edge of ``ENABLE`` latches ``INP``. On each
rising edge of ``TRIG`` the block outputs ``OUT = INP - latched`` (wrapping
to 32 bits), pulses ``READY`` for one tick and latches the new ``INP``. (The
firmware does not look at ``ENABLE`` for this mode's triggers; an edge of
``ENABLE`` and ``TRIG`` on the same tick only latches.)

``MODE`` 1, average. A rising edge of ``ENABLE`` on tick ``E`` zeroes a
64-bit accumulator and a sample count; from tick ``E + 1`` on, every tick on
which ``ENABLE`` was high the tick before adds ``INP`` to the accumulator and
1 to the count. So the sums run from the rising edge of ``ENABLE`` up to and
including the tick it falls, and a trigger does *not* restart them: each
result is the mean since enable. A rising edge of ``TRIG`` on tick ``T``
(counted only if ``ENABLE`` was high on ``T - 1``) divides the sums as they
stood after tick ``T - 1``, i.e. the mean of ``INP`` over ticks ``E + 1`` to
``T - 1``. The divider works on magnitudes, so the mean is truncated toward
zero; it takes :data:`DIVIDE_TICKS` ticks, after which ``OUT`` takes the
mean and ``READY`` pulses for one tick (falling ``ENABLE`` meanwhile does not
cancel it). A division by a count of 0 (trigger on the tick after the edge of
``ENABLE``) gives the divider's all-ones quotient, -1 or 1 by sign.

Errors (``HEALTH``). A trigger while a division is in progress (before its
result tick), or a rising edge of ``ENABLE`` during one, is a "divider
retrigger": 2 ticks (1 for the ``ENABLE`` case) later ``HEALTH`` becomes 2.
An accumulator leaving the range the firmware checks, ``[-2**62, 2**62)``,
is an "accumulator overflow": ``HEALTH`` becomes 1 two ticks after the
first tick it is out of range. After an error the block is stopped: no
further ``OUT``/``READY`` updates in either mode, and an interrupted
division's result is lost. ``HEALTH`` keeps the first error; a rising edge
of ``ENABLE`` clears it and restarts the block.

Not modelled: the firmware triggers its divider on the ``TRIG`` level, so a
trigger held high for several ticks reloads the divider with the growing
sums; the model divides the sums at the rising edge. ``READY`` is always a
one-tick pulse (the firmware keeps it high one tick longer if ``ENABLE``
rises just after a difference-mode trigger).

Event driven: the sums are kept lazily, as value x elapsed ticks between
input changes, so a constant input costs nothing however long the
accumulation; the block is woken only for results, ``READY`` falling edges,
errors and the (far-off) tick at which the accumulator would overflow.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import register
from .base import Block, Bus, TableMemory, to_int32

# MODE codes.
DIFFERENCE, AVERAGE = 0, 1
# HEALTH codes.
OK, ACCUMULATOR_OVERFLOW, DIVIDER_RETRIGGER = range(3)

#: Ticks from an average-mode trigger to its result on OUT/READY.
DIVIDE_TICKS = 35
#: The accumulator is in error outside [-LIMIT, LIMIT).
LIMIT = 1 << 62
#: Ticks from the cause of an error to HEALTH showing it.
ERROR_LATENCY = 2
ENABLE_RETRIGGER_LATENCY = 1


def mean_quotient(total: int, count: int) -> int:
    """The firmware's mean: |total| // count, signed, as a 32-bit value.

    A zero count gives the all-ones quotient of the shift-and-subtract
    divider.
    """
    magnitude = 0xFFFFFFFF if count == 0 else (abs(total) // count) & 0xFFFFFFFF
    return to_int32(-magnitude if total < 0 else magnitude)


def overflow_offset(total: int, step: int) -> int | None:
    """Smallest ``k >= 1`` with ``total + k * step`` outside the accumulator's
    range, or None if it never leaves it."""
    if step > 0:
        return max(1, -((total - LIMIT) // step))  # ceil((LIMIT - total) / step)
    if step < 0:
        return max(1, (total + LIMIT) // -step + 1)
    return None


@register
class Filter(Block):
    """Tick-exact model of the FILTER block (see the module docstring)."""

    NAME = "FILTER"
    INPUTS = ("ENABLE", "TRIG", "INP", "MODE")
    OUTPUTS = ("READY", "OUT", "HEALTH")

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        #: Difference mode's latched input.
        self._latch = 0
        #: Average mode's sums, including every tick up to ``_acc_tick``.
        self._sum = 0
        self._count = 0
        self._acc_tick = 0
        #: Result tick of the division in progress, and its value (None when
        #: an error voided it).
        self._due: int | None = None
        self._result: int | None = None
        #: Tick on which READY drops.
        self._ready_clear: int | None = None
        #: A pending error: the tick HEALTH shows it and its code.
        self._error_at: int | None = None
        self._error_code = OK
        #: Outputs frozen by an error, until the next rising edge of ENABLE.
        self._stopped = False
        #: READY as this tick leaves it.
        self._ready_level = 0

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        # Ticks since the last call saw the inputs of that call.
        self._accumulate_until(ts - 1)
        previous = self.apply_inputs(changes)
        v = self.values
        mode = v["MODE"] & 1
        enable = v["ENABLE"] & 1
        was_enabled = previous.get("ENABLE", v["ENABLE"]) & 1
        rising = enable and not was_enabled
        trig = "TRIG" in previous and v["TRIG"] & 1
        inp = to_int32(v["INP"])

        # READY is settled once per tick, so a pulse ending as another starts
        # is no change.
        self._ready_level = v["READY"]
        self._scheduled(ts)
        if mode == DIFFERENCE:
            if rising:
                self._latch = inp
            elif trig:
                if not self._stopped:
                    self._ready(ts, to_int32(inp - self._latch))
                self._latch = inp
        elif trig and was_enabled:
            self._divide(ts)
        if rising:
            if self._busy(ts):
                self._void(ts + ENABLE_RETRIGGER_LATENCY)
            self._stopped = False
            self.set_output("HEALTH", OK)
        # Tick ts's own contribution to the sums.
        if mode == AVERAGE:
            if rising:
                self._sum = self._count = 0
            elif was_enabled:
                self._add(ts, inp, 1)
        self._acc_tick = ts
        self.set_output("READY", self._ready_level)
        return self._next_wake(ts)

    # -- scheduled events ---------------------------------------------------------

    def _scheduled(self, ts: int) -> None:
        """Apply what earlier ticks scheduled for ``ts``."""
        if self._ready_clear is not None and self._ready_clear <= ts:
            self._ready_clear = None
            self._ready_level = 0
        if self._due is not None and self._due <= ts:
            if self._result is not None and not self._stopped:
                self._ready(ts, self._result)
            self._due = self._result = None
        if self._error_at is not None and self._error_at <= ts:
            self._stopped = True
            if self.values["HEALTH"] == OK:
                self.set_output("HEALTH", self._error_code)
            self._error_at = None

    def _ready(self, ts: int, out: int) -> None:
        self.set_output("OUT", out)
        self._ready_level = 1
        self._ready_clear = ts + 1

    def _busy(self, ts: int) -> bool:
        return self._due is not None and ts < self._due

    def _error(self, at: int, code: int) -> None:
        # Keep the earliest pending error.
        if self._error_at is None or at < self._error_at:
            self._error_at, self._error_code = at, code

    def _void(self, at: int) -> None:
        """A divider retrigger: the result in progress is lost."""
        self._result = None
        self._error(at, DIVIDER_RETRIGGER)

    def _divide(self, ts: int) -> None:
        if self._busy(ts):
            self._void(ts + ERROR_LATENCY)
        else:
            self._due = ts + DIVIDE_TICKS
            self._result = mean_quotient(self._sum, self._count)

    # -- lazy accumulation ----------------------------------------------------------

    def _accumulate_until(self, last: int) -> None:
        """Add ticks ``_acc_tick + 1 .. last``, over which no input changed."""
        ticks = last - self._acc_tick
        if ticks <= 0:
            return
        v = self.values
        if v["MODE"] & 1 == AVERAGE and v["ENABLE"] & 1:
            self._add(self._acc_tick + 1, to_int32(v["INP"]), ticks)
        self._acc_tick = last

    def _add(self, first: int, value: int, ticks: int) -> None:
        """Add ``value`` for ``ticks`` ticks from tick ``first``, noting the
        first tick the accumulator leaves its range."""
        k = overflow_offset(self._sum, value)
        if (
            k is not None
            and k <= ticks
            and -LIMIT <= self._sum < LIMIT
            and not self._stopped
        ):
            self._error(first + k - 1 + ERROR_LATENCY, ACCUMULATOR_OVERFLOW)
        self._sum += value * ticks
        self._count += ticks

    def _next_wake(self, ts: int) -> int | None:
        wakes = [
            t
            for t in (self._ready_clear, self._due, self._error_at)
            if t is not None and t > ts
        ]
        v = self.values
        if v["MODE"] & 1 == AVERAGE and v["ENABLE"] & 1 and not self._stopped:
            k = overflow_offset(self._sum, to_int32(v["INP"]))
            if k is not None and -LIMIT <= self._sum < LIMIT:
                wakes.append(ts + k + ERROR_LATENCY)
        return min(wakes) if wakes else None
