"""PGEN: a position generator stepping through a table on each trigger.

The table is a list of signed 32-bit positions. While the block runs, each
rising edge of ``TRIG`` puts the next position on ``OUT``.

States (``STATE``): UNREADY (0) until the table's first word has arrived;
WAIT_ENABLE (1) with a table ready; RUNNING (2, ``ACTIVE`` high) from a rising
edge of ``ENABLE`` in WAIT_ENABLE. A ``TRIG`` edge on the tick ``ENABLE``
rises is not a trigger (``ACTIVE`` was still low).

Fixed tables (``TABLE_LENGTH`` written without bit 31) are replayed from the
first word: the run ends after ``REPEATS`` passes (0 = forever), on the
trigger that outputs the last word of the last pass: ``ACTIVE`` drops and
STATE returns to WAIT_ENABLE, ready for the next rising edge of ``ENABLE``,
which restarts at the first word. A falling edge of ``ENABLE`` stops a run
the same way.

Streamed tables (bit 31, "more", set in ``TABLE_LENGTH``) are consumed as
they are output: each further buffer is appended while the previous one
announced more; the buffer written without the flag is the last and the run
ends (UNREADY) on the trigger that outputs its last word. ``REPEATS`` is
ignored. A falling edge of ``ENABLE`` aborts a streamed run: the table is
discarded (UNREADY).

DMA. The server writes ``TABLE_ADDRESS`` then ``TABLE_LENGTH`` in words
(bits 0-20); the block reads memory when ``TABLE_LENGTH`` is written. Word
``k`` of a buffer written on tick ``T`` is usable from ``T + 8 + k`` (six
ticks of DMA latency, then a word per tick, buffers queueing). ``TABLE_LENGTH``
= 0 discards the table (STATE drops to UNREADY two ticks later) and allows a
new one.

Errors (``HEALTH``, first error kept; any rising edge of ``ENABLE`` clears
it): 1, DMA underrun, when a trigger finds no word available (a streamed
table not fed in time): the run stops at once and the table is discarded;
2, "not ready for table", one tick after a non-zero ``TABLE_LENGTH`` is
written when none is accepted (a second fixed table, a buffer after the last
one, any table after an aborted run): a run in progress stops and its table
is discarded. Rewrite a table as the server does, zeroing the length first.

Not modelled (as in the SEQ model): the 4096-word ring's capacity and the
interrupt pacing streamed buffers (any number of appended buffers is accepted
while "more" is set); fixed tables longer than the ring, which the firmware
re-reads on each pass, are kept whole; after ``TABLE_LENGTH`` = 0 the old
words are gone at once (the firmware can still serve them for a tick).

Event driven: the block is woken only when the first word of a table
becomes usable, for a delayed error and for the UNREADY transition after a
table is discarded; triggers cost one call each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from . import register
from .base import Block, Bus, TableMemory, to_int32
from .dma import FIXED, STREAMED, DmaBuffers

# STATE values.
UNREADY, WAIT_ENABLE, RUNNING = range(3)
# HEALTH values.
OK, DMA_UNDERRUN, TABLE_OVERRUN = range(3)

#: Consumed words of a streamed table are forgotten in batches this big.
_TRIM = 4096


class Word(NamedTuple):
    """One table entry."""

    value: int
    #: First tick on which the block can output it.
    ready: int
    #: Last word of the last buffer of a streamed table.
    last: bool


@register
class Pgen(Block):
    """Tick-exact model of the PGEN block (see the module docstring).

    ``_words`` holds the table with each word's arrival; ``_next`` indexes the
    word the next trigger outputs. Within a tick the state machine runs
    before a ``TABLE_LENGTH`` write is handled, as in the firmware where the
    write only shows through the DMA later.
    """

    NAME = "PGEN"
    INPUTS = ("ENABLE", "TRIG", "TABLE_ADDRESS", "TABLE_LENGTH", "REPEATS")
    OUTPUTS = ("ACTIVE", "OUT", "STATE", "HEALTH")

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        self._words: list[Word] = []
        self._next = 0
        self._dma = DmaBuffers()
        #: Position in the table (from 1) and pass number of a fixed table.
        self._line = 0
        self._repeat = 0
        self._wake: int | None = None

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        # Only runs if a wake-up was skipped: replay it so outputs stay exact.
        while self._wake is not None and self._wake < ts:
            self._wake = self._tick(self._wake, {})
        self._wake = self._tick(ts, changes)
        return self._wake

    # -- read-only queries (the server's QUEUED_LINES and completion) ----------

    def queued_lines(self) -> int:
        """Words (PGEN's table rows) of a streamed table not yet output.

        What the driver's PANDA_BLOCK_NWORDS gives the server for
        ``TABLE.QUEUED_LINES``. Only meaningful for a streamed table.
        Reads state, changes none.
        """
        if self._dma.kind != STREAMED:
            return 0
        return len(self._words) - self._next

    def stream_completed(self) -> bool:
        """Whether a streamed table is over: output to its end, or stopped by
        an error or a falling ENABLE (after which the driver refuses buffers
        until the table is reset)."""
        dma = self._dma
        return dma.kind == STREAMED and not dma.more and self.queued_lines() == 0

    def _tick(self, ts: int, changes: Mapping[str, int]) -> int | None:
        previous = self.apply_inputs(changes)
        v = self.values
        enable = v["ENABLE"] & 1
        was = previous["ENABLE"] & 1 if "ENABLE" in previous else enable
        rising, falling = enable and not was, was and not enable
        # ACTIVE as it stood before this tick gates the trigger.
        trig = "TRIG" in previous and v["TRIG"] & 1 and v["ACTIVE"]
        overrun = self._dma.overrun_at is not None and self._dma.overrun_at <= ts
        if overrun:
            self._dma.overrun_at = None
        underrun = bool(trig) and not self._word_valid(ts)
        state = v["STATE"]

        if falling or overrun or underrun:
            self._stop(ts, error=overrun or underrun)
            if v["HEALTH"] == OK and (overrun or underrun):
                self.set_output("HEALTH", DMA_UNDERRUN if underrun else TABLE_OVERRUN)
        elif state == UNREADY:
            if self._word_valid(ts):
                self.set_output("STATE", WAIT_ENABLE)
        elif state == WAIT_ENABLE:
            if not self._word_valid(ts):
                # The firmware takes a tick to notice a discarded table.
                if self._dma.cleared_at is None or ts != self._dma.cleared_at + 1:
                    self.set_output("STATE", UNREADY)
            elif rising:
                self.set_output("STATE", RUNNING)
                self.set_output("ACTIVE", 1)
                self._line = self._repeat = 1
                if self._dma.kind == FIXED:
                    self._next = 0
        elif state == RUNNING and trig:
            self._output(ts)
        if rising:
            self.set_output("HEALTH", OK)

        if "TABLE_LENGTH" in changes:
            self._write_length(ts)
        return self._next_wake(ts)

    def _next_wake(self, ts: int) -> int | None:
        wakes: list[int] = []
        if self._dma.overrun_at is not None:
            wakes.append(self._dma.overrun_at)
        state = self.values["STATE"]
        if state == UNREADY:
            if self._next < len(self._words):
                wakes.append(max(self._words[self._next].ready, ts + 1))
        elif state == WAIT_ENABLE and not self._word_valid(ts + 1):
            cleared = self._dma.cleared_at
            wakes.append(ts + 1 if cleared is None else max(ts + 1, cleared + 2))
        return min(wakes) if wakes else None

    # -- running ----------------------------------------------------------------

    def _word_valid(self, ts: int) -> bool:
        """Whether the next word to output is in the table on tick ``ts``."""
        return self._next < len(self._words) and self._words[self._next].ready <= ts

    def _output(self, ts: int) -> None:
        """A trigger while running: output the next word, maybe end the run."""
        word = self._words[self._next]
        self.set_output("OUT", to_int32(word.value))
        self._next += 1
        fixed = self._dma.kind == FIXED
        if fixed:
            # The ring wraps at the table's end, or early at the last word
            # loaded so far.
            if self._next >= self._dma.length or not self._word_valid(ts):
                self._next = 0
        elif self._next >= _TRIM:
            del self._words[: self._next]
            self._next = 0
        last_line = (fixed and self._line == self._dma.length) or word.last
        repeats = self.values["REPEATS"] & 0xFFFFFFFF
        if last_line and (not fixed or (repeats != 0 and self._repeat == repeats)):
            self.set_output("ACTIVE", 0)
            self.set_output("STATE", WAIT_ENABLE if fixed else UNREADY)
        elif last_line:
            self._line = 1
            self._repeat += 1
        else:
            self._line += 1

    def _stop(self, ts: int, error: bool) -> None:
        """Falling ENABLE or an error: ACTIVE low, then idle or unready."""
        self.set_output("ACTIVE", 0)
        if self.values["STATE"] != RUNNING:
            return
        if self._dma.kind == FIXED and not error:
            # Ready to replay the table from its first word.
            self.set_output("STATE", WAIT_ENABLE)
            self._next = 0
        else:
            # The DMA is aborted: the table is gone until TABLE_LENGTH = 0.
            self.set_output("STATE", UNREADY)
            self._discard(ts)
            self._dma.more = False

    # -- table loading ----------------------------------------------------------

    def _discard(self, ts: int) -> None:
        self._words = []
        self._next = 0
        self._dma.discard(ts)

    def _write_length(self, ts: int) -> None:
        v = self.values
        buffer = self._dma.write_length(
            ts, v["TABLE_LENGTH"], v["TABLE_ADDRESS"], self.memory
        )
        if buffer is None:
            if v["TABLE_LENGTH"] & 0xFFFFFFFF == 0:
                self._discard(ts)
            return
        final = len(buffer.words) - 1
        for i, value in enumerate(buffer.words):
            last = buffer.last and i == final
            self._words.append(Word(value, buffer.first + i + 1, last))
