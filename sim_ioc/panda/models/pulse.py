"""PULSE: one-shot pulse delay and stretch.

The block turns edges of ``TRIG`` into output pulses, in one of three modes
chosen by the effective ``WIDTH`` and ``DELAY``:

* ``WIDTH = 0``, ``DELAY = 0``: pass-through. Every ``TRIG`` edge is copied
  to ``OUT`` on the same tick.
* ``WIDTH = 0``, ``DELAY > 0``: delay line. Both edges of ``TRIG`` are queued
  and replayed ``DELAY`` ticks later (``TRIG_EDGE`` is ignored).
* ``WIDTH > 0``: pulse trains. Each ``TRIG`` edge selected by ``TRIG_EDGE``
  (0 rising, 1 falling, 2 either) queues a train that starts ``DELAY`` ticks
  later: ``PULSES`` pulses (0 means 1) of ``WIDTH`` ticks whose rising edges
  are ``STEP`` ticks apart. With ``DELAY = 0`` the first pulse starts on the
  trigger tick itself.

Times are 48-bit tick counts split over ``NAME_L`` (bits 0-31) and ``NAME_H``
(bits 32-47). The firmware validates them: a non-zero ``WIDTH`` or ``DELAY``
below 5 ticks acts as 5 (the queue needs that long to turn round), and a
``STEP`` not longer than ``WIDTH`` acts as ``WIDTH + 1`` so that pulses never
merge.

Queue and errors. Pending edges or trains sit in a 256-entry FIFO.
``QUEUED`` reports its depth; an entry counts from the tick after it was
pushed (the FIFO's write latency) and stops counting on the tick its last
edge is produced. In train mode a trigger is refused, and ``DROPPED``
incremented, while the previous train is still being produced, i.e. until
``(PULSES - 1) * STEP + WIDTH`` ticks after the previous accepted trigger; a
trigger is also refused when the FIFO is full.

Enable and parameter writes. ``ENABLE`` low clears the queue and forces
``OUT`` and ``QUEUED`` to 0. Writing any parameter acts as a one-tick
disable (the firmware gates enable with every parameter's write strobe): the
queue is lost and, if ``ENABLE`` is high, the next tick is a fresh rising
edge of enable. A rising edge of enable zeroes ``DROPPED``; a ``TRIG`` edge
on that very tick is ignored.

The model is event driven: it asks to be woken at the next output edge or
queue change, so a train of N pulses costs about 2N calls however long the
pulses are.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from . import register
from .base import Block, Bus, TableMemory

#: Depth of the firmware's pulse queue (an 8-bit-addressed FIFO).
QUEUE_DEPTH = 256
#: Shortest non-zero WIDTH or DELAY the firmware honours, in ticks.
MIN_TIME = 5

#: Writing any of these resets the block for one tick.
_PARAMS = frozenset(
    {
        "DELAY_L",
        "DELAY_H",
        "WIDTH_L",
        "WIDTH_H",
        "PULSES",
        "STEP_L",
        "STEP_H",
        "TRIG_EDGE",
    }
)


def _ticks(low: int, high: int) -> int:
    """A 48-bit time from its two registers (the firmware keeps 16 high bits)."""
    return (low & 0xFFFFFFFF) | (high & 0xFFFF) << 32


@register
class Pulse(Block):
    """Tick-exact model of the PULSE block (see the module docstring).

    Queue entries are ``(start, end)`` ticks of a pulse train in train mode
    (the entry leaves the queue on ``end``, its last falling edge), or
    ``(tick, level)`` of a replayed edge in delay-line mode.
    """

    NAME = "PULSE"
    INPUTS = (
        "ENABLE",
        "TRIG",
        "DELAY_L",
        "DELAY_H",
        "WIDTH_L",
        "WIDTH_H",
        "PULSES",
        "STEP_L",
        "STEP_H",
        "TRIG_EDGE",
    )
    OUTPUTS = ("OUT", "QUEUED", "DROPPED")

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        self._queue: deque[tuple[int, int]] = deque()
        #: Whether the block counted as enabled on the last tick processed.
        self._enabled = False
        #: Tick of the latest push: that entry is not in QUEUED until the next.
        self._pushed_at = -1
        #: First tick at which a new trigger is accepted (train mode).
        self._accept_from = 0
        #: OUT in pass-through and delay-line modes (trains compute it).
        self._level = 0
        self._wake: int | None = None
        self._configure()

    def _configure(self) -> None:
        v = self.values
        width = _ticks(v["WIDTH_L"], v["WIDTH_H"])
        if 0 < width < MIN_TIME:
            width = MIN_TIME
        delay = _ticks(v["DELAY_L"], v["DELAY_H"])
        if 0 < delay < MIN_TIME:
            delay = MIN_TIME
        step = _ticks(v["STEP_L"], v["STEP_H"])
        self._width = width
        self._delay = delay
        self._step = step if step > width else width + 1
        self._pulses = (v["PULSES"] & 0xFFFFFFFF) or 1

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        # Only runs if a wake-up was skipped: replay it so outputs stay exact.
        while self._wake is not None and self._wake < ts:
            self._wake = self._tick(self._wake, {})
        self._wake = self._tick(ts, changes)
        return self._wake

    def _tick(self, ts: int, changes: Mapping[str, int]) -> int | None:
        previous = self.apply_inputs(changes)
        v = self.values
        written = not _PARAMS.isdisjoint(changes)
        if written:
            self._configure()
        enabled = bool(v["ENABLE"] & 1) and not written
        rising = enabled and not self._enabled
        self._enabled = enabled

        if not enabled:
            self._queue.clear()
            self._level = 0
            self.set_output("OUT", 0)
            self.set_output("QUEUED", 0)
            # After a parameter write with ENABLE high, the next tick is an
            # enable rising edge, which zeroes DROPPED: be there for it.
            return ts + 1 if written and v["ENABLE"] & 1 else None

        if rising:
            # Queue is empty (we were disabled); a TRIG edge now is ignored.
            self.set_output("DROPPED", 0)
            self._accept_from = 0
            return None

        out = self._advance(ts)
        if "TRIG" in previous and self._selected(v["TRIG"] & 1):
            out = self._trigger(ts, v["TRIG"] & 1, out)
        self.set_output("OUT", out)
        self.set_output("QUEUED", len(self._queue) - (self._pushed_at == ts))
        return self._next_wake(ts)

    def _selected(self, trig: int) -> bool:
        """Whether this TRIG edge (to level ``trig``) triggers the block."""
        # A delay line replays both edges whatever TRIG_EDGE says.
        if self._width == 0:
            return True
        edge = self.values["TRIG_EDGE"] & 3
        if edge == 2:
            return True
        # 0 selects rising, 1 falling; the unused code 3 selects nothing.
        return (edge == 0 and trig == 1) or (edge == 1 and trig == 0)

    def _advance(self, ts: int) -> int:
        """Retire queue entries that are done by ``ts``; return OUT at ``ts``."""
        queue = self._queue
        if self._width == 0:
            while queue and queue[0][0] <= ts:
                self._level = queue.popleft()[1]
            return self._level
        while queue and queue[0][1] <= ts:
            queue.popleft()
        if queue and queue[0][0] <= ts:
            return 1 if (ts - queue[0][0]) % self._step < self._width else 0
        return 0

    def _trigger(self, ts: int, trig: int, out: int) -> int:
        """Accept or drop a trigger on ``ts``; return the new OUT."""
        if ts < self._accept_from or len(self._queue) >= QUEUE_DEPTH:
            self.set_output("DROPPED", (self.values["DROPPED"] + 1) & 0xFFFFFFFF)
            return out
        width, delay = self._width, self._delay
        if width == 0:
            if delay == 0:
                self._level = trig
                return trig
            self._queue.append((ts + delay, trig))
            self._pushed_at = ts
            return out
        span = (self._pulses - 1) * self._step + width
        start = ts + delay
        self._queue.append((start, start + span))
        self._pushed_at = ts
        # No new train until this one has produced its last falling edge.
        self._accept_from = ts + span + 1
        return 1 if delay == 0 else out

    def _next_wake(self, ts: int) -> int | None:
        wake = ts + 1 if self._pushed_at == ts else None
        queue = self._queue
        if queue:
            if self._width == 0:
                edge = queue[0][0]
            else:
                start, end = queue[0]
                if ts < start:
                    edge = start
                else:
                    phase = (ts - start) % self._step
                    base = ts - phase
                    edge = (
                        base + self._width if phase < self._width else base + self._step
                    )
                    edge = min(edge, end)
            wake = edge if wake is None else min(wake, edge)
        return wake
