"""Models of the PandA's I/O blocks that face the simulated world.

INENC reads an :class:`~sim_ioc.world.Encoder`; TTLIN/LVDSIN hold a level the
world sets; TTLOUT/LVDSOUT just hold their input for the world to observe.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...world import Encoder
from . import register
from .base import Block, Bus, TableMemory


@register
class Inenc(Block):
    """Incremental encoder input: VAL follows the encoder of a simulated axis.

    Event driven: the block asks to be woken at the next count change, so a
    motor moving at N counts/s costs N events/s and nothing when still.
    Writing ``RESYNC`` (any value) makes it re-read the encoder after the
    world replanned the motion.
    """

    NAME = "INENC"
    INPUTS = ("CLK", "RESYNC")
    OUTPUTS = ("A", "B", "Z", "DATA", "CONN", "VAL", "HEALTH")

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        self.encoder: Encoder | None = None

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        self.apply_inputs(changes)
        if self.encoder is None:
            return None
        self.set_output("CONN", 1)
        self.set_output("VAL", self.encoder.count(ts))
        return self.encoder.next_change(ts)


@register
class Ttlin(Block):
    """TTL input: VAL is a level driven by the world (``LEVEL`` register)."""

    NAME = "TTLIN"
    INPUTS = ("LEVEL",)
    OUTPUTS = ("VAL",)

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        self.apply_inputs(changes)
        self.set_output("VAL", self.values["LEVEL"] & 1)
        return None


@register
class Lvdsin(Ttlin):
    """LVDS input: as TTLIN."""

    NAME = "LVDSIN"


@register
class Ttlout(Block):
    """TTL output: drives its connector with VAL; nothing on the bus."""

    NAME = "TTLOUT"
    INPUTS = ("VAL",)

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        self.apply_inputs(changes)
        return None


@register
class Lvdsout(Ttlout):
    """LVDS output: as TTLOUT."""

    NAME = "LVDSOUT"
