"""BITS: four soft bits the user sets, driven onto the bit bus.

Each parameter ``A``..``D`` is a single bit written by the server; the block
drives it unchanged on ``OUTA``..``OUTD`` from the tick it is written. There
is no clock and no state beyond the four levels, so the block never asks to be
woken.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import register
from .base import Block

#: (parameter, bit output) pairs.
_PAIRS = (("A", "OUTA"), ("B", "OUTB"), ("C", "OUTC"), ("D", "OUTD"))


@register
class Bits(Block):
    """Tick-exact model of the BITS block: ``OUTx`` follows parameter ``x``."""

    NAME = "BITS"
    INPUTS = ("A", "B", "C", "D")
    #: All bit outputs (on the bit bus).
    OUTPUTS = ("OUTA", "OUTB", "OUTC", "OUTD")

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        self.apply_inputs(changes)
        for param, out in _PAIRS:
            # A ``param bit`` register keeps only its lowest bit.
            self.set_output(out, self.values[param] & 1)
        return None
