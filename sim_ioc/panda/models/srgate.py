"""SRGATE: a set/reset latch with selectable edges and a disabled state.

``OUT`` is set to 1 by an edge of ``SET`` and cleared by an edge of ``RST``;
``SET_EDGE`` and ``RST_EDGE`` choose which edge counts (0 rising, 1 falling,
2 either). Edges are changes of the input from one tick to the next, judged
with the edge selection in force on the tick of the change, so changing
``SET_EDGE`` on the very tick of an edge applies to that edge.

While ``ENABLE`` is high the latch follows, in decreasing priority: a write
to ``FORCE_RST`` (clears), a write to ``FORCE_SET`` (sets), an ``RST`` edge
(clears), a ``SET`` edge (sets). The force registers are write strobes: the
value written does not matter, only that it was written.

While ``ENABLE`` is low edges and forces are ignored and ``OUT`` is driven by
``WHEN_DISABLED``: 0 low, 1 high, 2 keep the current level. The firmware
applies this on every disabled tick, so writing ``WHEN_DISABLED`` while
disabled takes effect at once.

Everything acts on the tick of the change, and nothing happens between
changes: the block never asks to be woken.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import register
from .base import Block

# Edge selection codes of SET_EDGE / RST_EDGE.
RISING, FALLING, EITHER = range(3)
# WHEN_DISABLED codes.
DISABLED_LOW, DISABLED_HIGH, DISABLED_KEEP = range(3)


def edge_selected(code: int, level: int) -> bool:
    """Whether an edge to ``level`` counts for the edge selection ``code``."""
    code &= 3
    if code == EITHER:
        return True
    # Code 3 is unused; the firmware decodes it as rising.
    return level == 0 if code == FALLING else level == 1


@register
class Srgate(Block):
    """Tick-exact model of the SRGATE block (see the module docstring)."""

    NAME = "SRGATE"
    INPUTS = (
        "ENABLE",
        "SET",
        "RST",
        "WHEN_DISABLED",
        "SET_EDGE",
        "RST_EDGE",
        "FORCE_SET",
        "FORCE_RST",
    )
    OUTPUTS = ("OUT",)

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        previous = self.apply_inputs(changes)
        v = self.values
        out = v["OUT"]
        if v["ENABLE"] & 1:
            if "FORCE_RST" in changes:
                out = 0
            elif "FORCE_SET" in changes:
                out = 1
            elif "RST" in previous and edge_selected(v["RST_EDGE"], v["RST"] & 1):
                out = 0
            elif "SET" in previous and edge_selected(v["SET_EDGE"], v["SET"] & 1):
                out = 1
        else:
            when = v["WHEN_DISABLED"] & 3
            if when == DISABLED_LOW:
                out = 0
            elif when == DISABLED_HIGH:
                out = 1
        self.set_output("OUT", out)
        return None
