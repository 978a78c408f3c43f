"""CALC: the sum of four position inputs, each optionally negated, scaled down.

``OUT = (±INPA ± INPB ± INPC ± INPD) >> SHIFT``: ``TYPEx`` = 1 negates
input x, and the signed sum is shifted right arithmetically (a floor
division by 1, 2 or 4). The firmware adds in 34 bits, so the sum of four
32-bit inputs never overflows, then keeps 32 bits of the shifted result:
with ``SHIFT`` = 0 a sum outside the 32-bit range wraps. Only the two low bits
of ``SHIFT`` are wired and values 2 and 3 both shift by 2.

``OUT`` follows its inputs on the tick they change; there is no state, so
the block never asks to be woken.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import register
from .base import Block, to_int32

#: Width of the firmware's adder.
SUM_BITS = 34


def calc_output(inputs: tuple[int, ...], negate: tuple[int, ...], shift: int) -> int:
    """CALC's output for signed 32-bit ``inputs`` and TYPE bits ``negate``."""
    total = 0
    for value, neg in zip(inputs, negate, strict=True):
        value = to_int32(value)
        total += -value if neg & 1 else value
    # Wrap to the adder's width (only reachable with four -2**31 negated).
    total &= (1 << SUM_BITS) - 1
    if total >> (SUM_BITS - 1):
        total -= 1 << SUM_BITS
    return to_int32(total >> min(shift & 3, 2))


@register
class Calc(Block):
    """Tick-exact model of the CALC block (see the module docstring)."""

    NAME = "CALC"
    INPUTS = (
        "INPA",
        "INPB",
        "INPC",
        "INPD",
        "TYPEA",
        "TYPEB",
        "TYPEC",
        "TYPED",
        "SHIFT",
    )
    OUTPUTS = ("OUT",)

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        self.apply_inputs(changes)
        v = self.values
        out = calc_output(
            (v["INPA"], v["INPB"], v["INPC"], v["INPD"]),
            (v["TYPEA"], v["TYPEB"], v["TYPEC"], v["TYPED"]),
            v["SHIFT"],
        )
        self.set_output("OUT", out)
        return None
