"""PCOMP: position compare.

PCOMP watches a position (``INP``) and produces ``PULSES`` pulses on ``OUT``
(0 means forever): the first rising edge when the position reaches
``START``, each falling edge ``WIDTH`` further on, each following rising edge
``STEP`` after the previous one. All offsets apply in the compare direction
``DIR`` (0 positive, 1 negative, 2 guess it from the first movement). With
``RELATIVE`` set, positions are measured from ``INP`` latched on the rising
edge of ``ENABLE``, and in the negative direction ``START`` is negated too.

The block is a state machine (``STATE``) that advances at most one state per
tick, so a transition is followed by a re-evaluation on the next tick even if
nothing else changes:

0. WAIT_ENABLE: on a rising edge of ``ENABLE`` reset ``HEALTH`` and
   ``PRODUCED``, raise ``ACTIVE``, latch ``INP``; go to WAIT_DIR when
   ``DIR`` is Either, else fix the direction and go to WAIT_PRE_START, or
   straight to WAIT_FALLING with ``OUT`` high when relative with ``START`` =
   ``PRE_START`` = 0 (first pulse at the enabling position).
1. WAIT_DIR: absolute: the direction is towards ``START`` as soon as
   ``INP != START``. Relative: wait until the position is ``START +
   PRE_START`` away from the latched one; with a ``PRE_START`` the direction
   is opposite to that movement (we are backing off to take a run-up), without
   one it is that movement and the first pulse starts at once. If ``START +
   PRE_START <= 0`` no guess is possible: ``HEALTH`` = 2 and stop.
2. WAIT_PRE_START: wait until the position is beyond ``START - PRE_START``
   on the wrong side (the deadband that filters jitter around ``START``).
3. WAIT_RISING / 4. WAIT_FALLING: wait until the position reaches the next
   crossing point (``>=`` when it lies ahead in the positive sense, ``<=``
   otherwise, so absolute encoders that skip values still trigger). If the
   position jumped past the crossing after it as well (more than a ``STEP``),
   a pulse would be lost: ``HEALTH`` = 1 and stop. After the falling edge of
   pulse ``PULSES`` the block stops with ``ACTIVE`` low.

A falling edge of ``ENABLE`` stops at once (``OUT`` and ``ACTIVE`` low), even
on the tick of a match. ``STEP = 0`` with a negative ``WIDTH`` makes a Schmitt
trigger; with a positive ``WIDTH`` a repeating comparator.

Arithmetic is signed 32-bit as in the firmware; registers may be written as
unsigned 32-bit values.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import register
from .base import Block, Bus, TableMemory, to_int32

# STATE values.
WAIT_ENABLE, WAIT_DIR, WAIT_PRE_START, WAIT_RISING, WAIT_FALLING = range(5)
# DIR values.
POSITIVE, NEGATIVE, EITHER = range(3)
# HEALTH values.
OK, ERR_JUMP, ERR_GUESS = range(3)


@register
class Pcomp(Block):
    """Tick-exact model of the PCOMP block (see the module docstring)."""

    NAME = "PCOMP"
    INPUTS = (
        "ENABLE",
        "INP",
        "PRE_START",
        "START",
        "WIDTH",
        "STEP",
        "PULSES",
        "RELATIVE",
        "DIR",
    )
    OUTPUTS = ("ACTIVE", "OUT", "HEALTH", "PRODUCED", "STATE")

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        #: Compare in the positive direction.
        self._positive = False
        #: INP at the rising edge of ENABLE (origin of relative mode).
        self._latched = 0
        #: The crossing just passed and the one we wait for.
        self._last = 0
        self._next = 0
        self._wake: int | None = None

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        # Only runs if a wake-up was skipped: replay it so outputs stay exact.
        while self._wake is not None and self._wake < ts:
            self._wake = self._tick(self._wake, {})
        self._wake = self._tick(ts, changes)
        return self._wake

    # -- signed views of the registers ------------------------------------------

    def _int(self, name: str) -> int:
        return to_int32(self.values[name])

    def _relative(self) -> bool:
        return bool(self.values["RELATIVE"] & 1)

    def _posn(self) -> int:
        inp = self._int("INP")
        return to_int32(inp - self._latched) if self._relative() else inp

    def _signed(self, value: int) -> int:
        """``value`` in the compare direction."""
        return value if self._positive else to_int32(-value)

    def _pulse_start(self) -> int:
        start = self._int("START")
        if self._relative() and not self._positive:
            return to_int32(-start)
        return start

    # -- crossing tests ---------------------------------------------------------

    def _reached(self, posn: int) -> bool:
        if self._next >= self._last:
            return posn >= self._next
        return posn <= self._next

    def _jumped(self, posn: int) -> bool:
        """Whether ``posn`` is also past the crossing after the next one."""
        last, nxt = self._last, self._next
        too_far = to_int32(last + self._signed(self._int("STEP")))
        return (last <= nxt <= too_far <= posn) or (last >= nxt >= too_far >= posn)

    # -- state machine ----------------------------------------------------------

    def _tick(self, ts: int, changes: Mapping[str, int]) -> int | None:
        previous = self.apply_inputs(changes)
        v = self.values
        enable = v["ENABLE"] & 1
        was = previous["ENABLE"] & 1 if "ENABLE" in previous else enable
        state = v["STATE"]
        new = state
        if was and not enable:
            self.set_output("OUT", 0)
            self.set_output("ACTIVE", 0)
            new = WAIT_ENABLE
        elif state == WAIT_ENABLE:
            if enable and not was:
                new = self._start()
        elif state == WAIT_DIR:
            new = self._guess_dir()
        elif state == WAIT_PRE_START:
            posn, start, pre = self._posn(), self._pulse_start(), self._int("PRE_START")
            if self._positive:
                armed = posn < to_int32(start - pre)
            else:
                armed = posn > to_int32(start + pre)
            if armed:
                # A fictitious previous crossing just behind START makes the
                # first compare directional.
                self._last = to_int32(start - 1 if self._positive else start + 1)
                self._next = start
                new = WAIT_RISING
        elif state == WAIT_RISING:
            posn = self._posn()
            if self._reached(posn):
                if self._jumped(posn):
                    new = self._fail(ERR_JUMP)
                else:
                    self.set_output("OUT", 1)
                    self.set_output("PRODUCED", (v["PRODUCED"] + 1) & 0xFFFFFFFF)
                    self._last, self._next = (
                        self._next,
                        to_int32(self._next + self._signed(self._int("WIDTH"))),
                    )
                    new = WAIT_FALLING
        elif state == WAIT_FALLING:
            posn = self._posn()
            if self._reached(posn):
                self.set_output("OUT", 0)
                if v["PRODUCED"] == v["PULSES"] & 0xFFFFFFFF:
                    self.set_output("ACTIVE", 0)
                    new = WAIT_ENABLE
                elif self._jumped(posn):
                    new = self._fail(ERR_JUMP)
                else:
                    # The next rising edge is STEP after the last one.
                    self._last, self._next = (
                        self._next,
                        to_int32(self._last + self._signed(self._int("STEP"))),
                    )
                    new = WAIT_RISING
        self.set_output("STATE", new)
        # One transition per tick: look again on the next one.
        return ts + 1 if new != state else None

    def _start(self) -> int:
        """Rising edge of ENABLE in WAIT_ENABLE; return the next state."""
        v = self.values
        self.set_output("ACTIVE", 1)
        self.set_output("HEALTH", OK)
        self.set_output("PRODUCED", 0)
        self._latched = self._int("INP")
        direction = v["DIR"] & 3
        if direction == EITHER:
            return WAIT_DIR
        self._positive = direction == POSITIVE
        self._next = self._signed(self._int("WIDTH"))
        if self._relative() and self._int("START") == 0 and self._int("PRE_START") == 0:
            # First pulse right here, at the latched position.
            self.set_output("OUT", 1)
            self.set_output("PRODUCED", 1)
            self._last = 0
            return WAIT_FALLING
        return WAIT_PRE_START

    def _guess_dir(self) -> int:
        """WAIT_DIR: return the next state."""
        posn = self._posn()
        start, pre = self._int("START"), self._int("PRE_START")
        if not self._relative():
            if posn == start:
                return WAIT_DIR
            self._positive = not posn > start
            return WAIT_PRE_START
        threshold = to_int32(start + pre)
        if threshold <= 0:
            return self._fail(ERR_GUESS)
        if abs(posn) < threshold:
            return WAIT_DIR
        if pre > 0:
            # Moving away to take a run-up: compare in the other direction.
            self._positive = not posn > 0
            return WAIT_PRE_START
        self._positive = posn > 0
        first = self._pulse_start()
        self._last = first
        self._next = to_int32(first + self._signed(self._int("WIDTH")))
        self.set_output("OUT", 1)
        self.set_output("ACTIVE", 1)
        self.set_output("PRODUCED", (self.values["PRODUCED"] + 1) & 0xFFFFFFFF)
        return WAIT_FALLING

    def _fail(self, health: int) -> int:
        self.set_output("ACTIVE", 0)
        self.set_output("HEALTH", health)
        return WAIT_ENABLE
