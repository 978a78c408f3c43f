"""PCAP's capture programming words: what its 64-entry capture RAM holds.

Shared by the block model (:mod:`.pcap`), which interprets them, and the
server's capture planning (:mod:`.pcap_layout`), which writes them.

The server lists the 32-bit words one capture (a *frame*) is made of:
``START_WRITE`` empties the list and each ``WRITE`` appends one entry (at
most 63 are usable: the firmware keeps them in a 64-entry RAM). An entry is a
10-bit word:

* bit 9 clear: a position-bus word, ``index << 4 | mode`` with ``index`` the
  pos-bus entry (0..31) and ``mode`` one of :class:`PosMode` (Value, Diff,
  Sum low/high, Min, Max, sum-of-squares low/mid/high);
* bit 9 set: an extension word, ``0x200 | ext << 4`` with ``ext`` one of
  :class:`Ext` (timestamps low/high, gate duration, bit-bus quadrants).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "MASK32",
    "MASK_SIZE",
    "MAX_FRAME_WORDS",
    "Ext",
    "PosMode",
    "ext_word",
    "pos_word",
]

MASK32 = 0xFFFFFFFF
#: Capture RAM size; the server may use one word less.
MASK_SIZE = 64
MAX_FRAME_WORDS = MASK_SIZE - 1


class PosMode(IntEnum):
    """Low 4 bits of a position-bus WRITE word."""

    VALUE = 0
    DIFF = 1
    SUM_L = 2
    SUM_H = 3
    MIN = 4
    MAX = 5
    SUM2_L = 6
    SUM2_M = 7
    SUM2_H = 8


class Ext(IntEnum):
    """Extension-bus entries (bits 4-7 of a WRITE word with bit 9 set)."""

    TS_START_L = 0
    TS_START_H = 1
    TS_END_L = 2
    TS_END_H = 3
    TS_TRIG_L = 4
    TS_TRIG_H = 5
    SAMPLES = 6
    BITS0 = 7
    BITS1 = 8
    BITS2 = 9
    BITS3 = 10


def pos_word(index: int, mode: PosMode) -> int:
    """The WRITE word capturing pos-bus entry ``index`` in ``mode``."""
    if not 0 <= index < 32:
        raise ValueError(f"pos bus index {index} out of range 0..31")
    return index << 4 | mode


def ext_word(ext: Ext) -> int:
    """The WRITE word capturing extension entry ``ext``."""
    return 0x200 | ext << 4
