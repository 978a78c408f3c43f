"""DIV: a pulse divider sending one input pulse in ``DIVISOR`` to ``OUTD``.

An internal counter (read back as ``COUNT``) advances on each rising edge of
``INP``. The edge that finds it at ``DIVISOR - 1`` wraps it to 0 and is
routed to ``OUTD``; every other edge increments it and goes to ``OUTN``. The
chosen output then copies ``INP`` until the next rising edge, so output
pulses have the input's width. A ``DIVISOR`` of 0 acts as 1 (every pulse to
``OUTD``).

Reset. The block is held in reset while ``ENABLE`` is low and for the tick
of any write to ``DIVISOR`` or ``FIRST_PULSE``. In reset both outputs are
low, input edges are ignored, and the counter is preset from
``FIRST_PULSE``: 0 (OutN) presets 0, so the first pulse after reset goes to
``OUTN``; 1 (OutD) presets ``DIVISOR - 1``, so it goes to ``OUTD``. A pulse
already high when reset ends is not passed on: outputs wait for the next
rising edge. A rising edge on the tick ``ENABLE`` falls is ignored.

Everything acts on the tick of the change and nothing happens between
changes: the block never asks to be woken, so an input pulse train of any
period costs one call per edge.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import register
from .base import Block, Bus, TableMemory

# FIRST_PULSE codes.
FIRST_OUTN, FIRST_OUTD = 0, 1


@register
class Div(Block):
    """Tick-exact model of the DIV block (see the module docstring)."""

    NAME = "DIV"
    INPUTS = ("ENABLE", "INP", "DIVISOR", "FIRST_PULSE")
    OUTPUTS = ("OUTD", "OUTN", "COUNT")

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        #: The last accepted rising edge was routed to OUTD.
        self._to_outd = False
        #: A rising edge has been accepted since the last reset.
        self._armed = False

    def _divisor(self) -> int:
        return (self.values["DIVISOR"] & 0xFFFFFFFF) or 1

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        previous = self.apply_inputs(changes)
        v = self.values
        inp = v["INP"] & 1
        divisor = self._divisor()
        reset = not v["ENABLE"] & 1 or "DIVISOR" in changes or "FIRST_PULSE" in changes
        count = v["COUNT"]
        if reset:
            self._armed = False
            count = divisor - 1 if v["FIRST_PULSE"] & 1 == FIRST_OUTD else 0
        elif "INP" in previous and inp:
            self._armed = True
            self._to_outd = count == divisor - 1
            count = 0 if self._to_outd else count + 1
        self.set_output("COUNT", count)
        live = inp if self._armed else 0
        self.set_output("OUTD", live if self._to_outd else 0)
        self.set_output("OUTN", 0 if self._to_outd else live)
        return None
