"""The DMA side of the firmware's table-driven blocks (SEQ and PGEN).

Both blocks take their tables the same way: the server places a buffer in
memory, writes ``TABLE_ADDRESS`` and then ``TABLE_LENGTH`` (in words, bit 31
set when another buffer will follow). ``TABLE_LENGTH = 0`` releases the table;
a new table written without that release is refused, and the block reports the
error on the next tick. Words arrive one per tick after a fixed latency, and
the next buffer's DMA starts only once the previous one is done.
:class:`DmaBuffers` keeps that bookkeeping; each block decodes the words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import TableMemory

#: TABLE_LENGTH bit saying another buffer will follow.
MORE_FLAG = 1 << 31
#: TABLE_LENGTH bits holding the length in words.
LENGTH_MASK = (1 << 21) - 1
#: Ticks from a TABLE_LENGTH write to the arrival of the first word.
DMA_LATENCY = 6

# Kinds of table loaded.
NONE, FIXED, STREAMED = range(3)


@dataclass(frozen=True)
class Buffer:
    """An accepted buffer: word ``i`` is usable from tick ``first + i + 1``."""

    words: Sequence[int]
    first: int
    #: The last buffer of a streamed table.
    last: bool


@dataclass
class DmaBuffers:
    """State of a block's table DMA, driven by ``TABLE_LENGTH`` writes."""

    kind: int = NONE
    #: The last buffer accepted announced another one.
    more: bool = False
    #: Words in the first buffer (the whole table, when fixed).
    length: int = 0
    #: Tick from which the DMA is free to start the next buffer.
    free_at: int = 0
    #: Tick of the last TABLE_LENGTH = 0.
    cleared_at: int | None = None
    #: Tick on which a refused TABLE_LENGTH write raises its error.
    overrun_at: int | None = None

    @property
    def accepts_more(self) -> bool:
        """Whether a streamed table is waiting for another buffer."""
        return self.kind == STREAMED and self.more

    def discard(self, ts: int) -> None:
        """The loaded words are dropped; the DMA is free from the next tick."""
        self.free_at = ts + 1

    def take_overrun(self, ts: int) -> bool:
        """Whether a refused write's error is due on tick ``ts`` (once)."""
        if self.overrun_at is not None and self.overrun_at <= ts:
            self.overrun_at = None
            return True
        return False

    def write_length(
        self, ts: int, length: int, address: int, memory: TableMemory | None
    ) -> Buffer | None:
        """Apply a TABLE_LENGTH write on tick ``ts``.

        Returns the buffer to load, or None when the table was released
        (``length == 0``: the block drops its words too) or the write refused.
        """
        length &= 0xFFFFFFFF
        if length == 0:
            self.discard(ts)
            self.kind, self.more, self.cleared_at = NONE, False, ts
            return None
        more = bool(length & MORE_FLAG)
        if self.kind == NONE:
            self.kind = STREAMED if more else FIXED
            self.length = length & LENGTH_MASK
        elif not self.accepts_more:
            self.overrun_at = ts + 1
            return None
        self.more = more
        words: list[int] = []
        if memory is not None and length & LENGTH_MASK:
            words = list(memory(address & 0xFFFFFFFF, length & LENGTH_MASK))
        first = max(ts + 1, self.free_at) + DMA_LATENCY
        self.free_at = first + len(words)
        return Buffer(words, first, self.kind == STREAMED and not more)
