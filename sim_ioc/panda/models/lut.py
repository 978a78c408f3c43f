"""LUT: a five-input lookup table.

The inputs ``INPA``..``INPE`` form a 5-bit row number with A as the most
significant bit; ``OUT`` is bit ``row`` of the 32-bit truth table ``FUNC``
(the server compiles a logic expression such as ``A&B|~C`` into it). So
``FUNC = 0x80000000`` is A&B&C&D&E and ``0xFFFF0000`` is A.

Each input can instead contribute a one-tick pulse on its edges, chosen by
``TYPEA``..``TYPEE``: 0 the input's level, 1 high on the tick the input rises,
2 high on the tick it falls, 3 high on the tick it changes either way. Edges
are changes from one tick to the next, independent of the TYPE setting, so
switching TYPE on the tick of an edge applies to that edge.

``OUT`` follows its inputs, ``FUNC`` and the TYPEs on the tick they change.
The model asks to be woken only on the tick after an edge of an
edge-selected input, to end its pulse.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import register
from .base import Block

# TYPEx codes.
LEVEL, RISING, FALLING, EITHER = range(4)

#: Input letters from the most significant row bit to the least.
LETTERS = ("A", "B", "C", "D", "E")


def lut_output(func: int, row: int) -> int:
    """Bit ``row`` (0-31) of the truth table ``func``."""
    return (func >> row) & 1


def input_term(kind: int, level: int, changed: bool) -> int:
    """An input's row bit for TYPE ``kind``, its level and whether it just
    changed."""
    kind &= 3
    if kind == LEVEL:
        return level
    if kind == RISING:
        return int(changed and level == 1)
    if kind == FALLING:
        return int(changed and level == 0)
    return int(changed)


@register
class Lut(Block):
    """Tick-exact model of the LUT block (see the module docstring)."""

    NAME = "LUT"
    INPUTS = (
        *(f"INP{x}" for x in LETTERS),
        *(f"TYPE{x}" for x in LETTERS),
        "FUNC",
    )
    OUTPUTS = ("OUT",)

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        previous = self.apply_inputs(changes)
        v = self.values
        row = 0
        pulsing = False
        for letter in LETTERS:
            name = f"INP{letter}"
            kind = v[f"TYPE{letter}"] & 3
            changed = name in previous
            row = row << 1 | input_term(kind, v[name] & 1, changed)
            pulsing = pulsing or (changed and kind != LEVEL)
        self.set_output("OUT", lut_output(v["FUNC"] & 0xFFFFFFFF, row))
        # An edge term is high for this tick only: be back to drop it.
        return ts + 1 if pulsing else None
