"""SEQ: the sequencer, a table of timed output patterns.

Each table line is four 32-bit words:

* word 0: ``REPEATS`` (bits 0-15, 0 = forever), ``TRIGGER`` (16-19),
  phase-1 outputs ``OUTA1..OUTF1`` (20-25), phase-2 outputs ``OUTA2..OUTF2``
  (26-31);
* word 1: ``POSITION`` (signed), compared with POSA/B/C by triggers 7-12;
* word 2: ``TIME1`` and word 3: ``TIME2``, in units of ``PRESCALE`` ticks
  (a ``PRESCALE`` of 0 counts as 1).

Running a line: wait for its trigger (state WAIT_TRIGGER; 0 = immediate,
1-6 = BITA/B/C low/high, 7-12 = POSA/B/C ``>=``/``<=`` POSITION; codes
13-15 never fire), then phase 1 for ``TIME1`` (skipped when 0), then phase 2
for ``TIME2`` (at least one prescaled unit). The outputs take the phase's
pattern when it starts and keep it while waiting for the next trigger. The
trigger is tested when the line starts and on each repeat, with the inputs of
that very tick, never during the phases. After ``REPEATS`` passes the next
line starts on the same tick its predecessor's phase 2 ends; after the last
line the table starts again until it has run ``REPEATS`` (the register; 0 =
forever) times, then ``ACTIVE`` and the outputs drop and STATE returns to
WAIT_ENABLE. ``TABLE_LINE``, ``LINE_REPEAT`` and ``TABLE_REPEAT`` count
from 1 and are zeroed by nothing: they keep their last values when the block
stops and restart at 1 on the next rising edge of ``ENABLE``.

``ENABLE``: a rising edge in WAIT_ENABLE (and only there) starts the table
from its first line and zeroes ``HEALTH``. A falling edge stops at once:
outputs and ``ACTIVE`` low; a fixed table returns to WAIT_ENABLE ready to
start again from line 1; a streamed table is discarded (UNREADY).

Loading tables (DMA). The server places the words in memory, writes
``TABLE_ADDRESS``, then ``TABLE_LENGTH`` in words; the block reads memory
when ``TABLE_LENGTH`` is written (both may be written on the same tick).
Bit 31 of ``TABLE_LENGTH`` ("more") announces that another buffer will
follow; bits 0-20 are the length.

* Fixed table: a length written without "more" when no table is loaded. The
  table is kept and replayed: ``REPEATS`` applies.
* Streamed table: a first length with "more" starts a ring of lines that are
  consumed as they run. Each further buffer is appended while the previous
  length had "more"; the buffer written without it is the last, and the run
  ends (STATE UNREADY) after its last line. ``REPEATS`` is ignored and
  ``TABLE_LINE`` keeps counting across buffers. If the sequencer needs a line
  that has not arrived, it stops with ``HEALTH`` = 1 (DMA underrun).
* ``TABLE_LENGTH`` = 0 discards the table and allows a new one. Writing a
  non-zero length at any other time (a second fixed table, a buffer after the
  last one, or any table after a run was aborted) is refused with ``HEALTH``
  = 2 on the next tick; if the sequencer was running it stops (UNREADY) and
  its table is discarded. So, as the server does, rewrite a table by writing
  ``TABLE_LENGTH`` = 0 first.
* ``HEALTH`` keeps the first error until the next rising edge of ``ENABLE``
  in WAIT_ENABLE.
* Latency: the DMA delivers one word per tick after 6 ticks, so line ``k``
  (from 0) of a buffer whose length is written on tick ``T`` is usable from
  ``T + 11 + 4k``, buffers queueing one after another. STATE goes from
  UNREADY to WAIT_ENABLE when the first line is usable (``T + 11``) and back
  to UNREADY two ticks after ``TABLE_LENGTH`` = 0 (an ``ENABLE`` rising edge
  in between is ignored). If a running fixed table catches up with its own
  loading, the firmware wraps to line 1 early; the model does too.

Not modelled: the ring's capacity (4096 lines) and the interrupt by which the
firmware asks for the next buffer (raised when it starts transferring the
previous one, which waits for room in the ring). The firmware flags an
overrun for a buffer written before that interrupt; the model accepts any
number of appended buffers while "more" is set, so a driver that paces its
appends is not penalised and one that does not is not caught. Fixed tables
longer than 4096 lines, which the firmware re-reads from memory on each pass,
are kept whole. ``PRESCALE`` is read when a phase starts.

Event driven: the block is woken at phase ends and table-readiness ticks;
triggers are evaluated only when an input changes.

Slightly over 400 lines because it is one block's state machine, table
format and loading rules; the DMA buffering it shares with PGEN is
:mod:`.dma`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from . import register
from .base import Block, Bus, TableMemory, to_int32
from .dma import FIXED, STREAMED, DmaBuffers

# STATE values.
UNREADY, WAIT_ENABLE, WAIT_TRIGGER, PHASE1, PHASE2 = range(5)
# HEALTH values.
OK, DMA_UNDERRUN, TABLE_OVERRUN = range(3)

#: Consumed lines of a streamed table are forgotten in batches this big.
_TRIM = 1024

_OUTS = ("OUTA", "OUTB", "OUTC", "OUTD", "OUTE", "OUTF")
_BITS = ("BITA", "BITB", "BITC")
_POSS = ("POSA", "POSB", "POSC")


class Line(NamedTuple):
    """One decoded table line."""

    repeats: int
    trigger: int
    position: int
    time1: int
    time2: int
    out1: int
    out2: int
    #: Last line of the last buffer of a streamed table.
    last: bool
    #: First tick on which the sequencer can use the line.
    ready: int


def decode_line(words: list[int], ready: int, last: bool = False) -> Line:
    """Decode the four words of a table line."""
    w0 = words[0] & 0xFFFFFFFF
    return Line(
        repeats=w0 & 0xFFFF,
        trigger=(w0 >> 16) & 0xF,
        position=to_int32(words[1]),
        time1=words[2] & 0xFFFFFFFF,
        time2=words[3] & 0xFFFFFFFF,
        out1=(w0 >> 20) & 0x3F,
        out2=(w0 >> 26) & 0x3F,
        last=last,
        ready=ready,
    )


@register
class Seq(Block):
    """Tick-exact model of the SEQ block (see the module docstring).

    The table is a list of :class:`Line` with, for each, the tick it becomes
    usable; ``_next`` indexes the line the next load takes. Within a tick the
    state machine runs before a ``TABLE_LENGTH`` write is handled, as in the
    firmware where the write only shows through the DMA a few ticks later.
    """

    NAME = "SEQ"
    INPUTS = (
        "ENABLE",
        "BITA",
        "BITB",
        "BITC",
        "POSA",
        "POSB",
        "POSC",
        "TABLE_ADDRESS",
        "TABLE_LENGTH",
        "PRESCALE",
        "REPEATS",
    )
    OUTPUTS = (
        "ACTIVE",
        *_OUTS,
        "TABLE_REPEAT",
        "TABLE_LINE",
        "LINE_REPEAT",
        "STATE",
        "HEALTH",
    )

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        self._lines: list[Line] = []
        self._next = 0
        #: Words of a line split across two buffers.
        self._partial: list[int] = []
        self._dma = DmaBuffers()
        self._line: Line | None = None
        self._phase_end = 0
        self._wake: int | None = None

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        # Only runs if a wake-up was skipped: replay it so outputs stay exact.
        while self._wake is not None and self._wake < ts:
            self._wake = self._tick(self._wake, {})
        self._wake = self._tick(ts, changes)
        return self._wake

    @property
    def accepts_more(self) -> bool:
        """Whether a further streamed buffer would be accepted now."""
        return self._dma.accepts_more

    # -- read-only queries (the server's QUEUED_LINES and completion) ----------

    def queued_lines(self) -> int:
        """Lines of a streamed table not yet run out, the running one included.

        What the driver's PANDA_BLOCK_NWORDS gives the server for
        ``TABLE.QUEUED_LINES`` (in lines, not words). Only meaningful for a
        streamed table: a fixed table's ring wraps. Reads state, changes none.
        """
        if self._dma.kind != STREAMED:
            return 0
        running = self.values["STATE"] in (WAIT_TRIGGER, PHASE1, PHASE2)
        return len(self._lines) - self._next + int(running)

    def stream_completed(self) -> bool:
        """Whether a streamed table is over: run to its end, or stopped by an
        error or a falling ENABLE (the DMA's completion interrupt, after which
        the driver refuses buffers until the table is reset)."""
        dma = self._dma
        return dma.kind == STREAMED and not dma.more and self.queued_lines() == 0

    # -- one tick ---------------------------------------------------------------

    def _tick(self, ts: int, changes: Mapping[str, int]) -> int | None:
        previous = self.apply_inputs(changes)
        v = self.values
        enable = v["ENABLE"] & 1
        was = previous["ENABLE"] & 1 if "ENABLE" in previous else enable
        error = OK
        if self._dma.overrun_at is not None and self._dma.overrun_at <= ts:
            error = TABLE_OVERRUN
            self._dma.overrun_at = None
        state = v["STATE"]

        if (was and not enable) or error:
            self._stop(ts, error)
        elif state == UNREADY:
            if self._frame_valid(ts):
                self.set_output("STATE", WAIT_ENABLE)
        elif state == WAIT_ENABLE:
            rising = enable and not was
            if rising:
                self.set_output("HEALTH", OK)
            if not self._frame_valid(ts):
                # The firmware takes a tick to notice a table reset.
                if self._dma.cleared_at is None or ts != self._dma.cleared_at + 1:
                    self.set_output("STATE", UNREADY)
            elif rising:
                self.set_output("ACTIVE", 1)
                self.set_output("TABLE_REPEAT", 1)
                self.set_output("TABLE_LINE", 1)
                self.set_output("LINE_REPEAT", 1)
                self._run_line(ts, load=True)
        elif state == WAIT_TRIGGER:
            assert self._line is not None
            if self._triggered(self._line):
                self._start_phases(ts, self._line)
        elif state == PHASE1:
            if ts >= self._phase_end:
                assert self._line is not None
                self._phase2(ts, self._line)
        elif state == PHASE2 and ts >= self._phase_end:
            self._end_of_line(ts)

        if "TABLE_LENGTH" in changes:
            self._write_length(ts)
        return self._next_wake(ts)

    def _next_wake(self, ts: int) -> int | None:
        wakes: list[int] = []
        if self._dma.overrun_at is not None:
            wakes.append(self._dma.overrun_at)
        state = self.values["STATE"]
        if state in (PHASE1, PHASE2):
            wakes.append(self._phase_end)
        elif state == UNREADY:
            if self._next < len(self._lines):
                wakes.append(max(self._lines[self._next].ready, ts + 1))
        elif state == WAIT_ENABLE and not self._frame_valid(ts + 1):
            cleared = self._dma.cleared_at
            wakes.append(ts + 1 if cleared is None else max(ts + 1, cleared + 2))
        return min(wakes) if wakes else None

    # -- running lines ----------------------------------------------------------

    def _frame_valid(self, ts: int) -> bool:
        """Whether the next line to load is in the table on tick ``ts``."""
        return self._next < len(self._lines) and self._lines[self._next].ready <= ts

    def _triggered(self, line: Line) -> bool:
        code = line.trigger
        if code == 0:
            return True
        v = self.values
        if code <= 6:
            # Odd codes wait for the bit low, even codes for it high.
            return v[_BITS[(code - 1) >> 1]] & 1 == (code - 1) & 1
        if code <= 12:
            pos = to_int32(v[_POSS[(code - 7) >> 1]])
            return pos >= line.position if code & 1 else pos <= line.position
        return False

    def _set_outputs(self, pattern: int) -> None:
        for i, name in enumerate(_OUTS):
            self.set_output(name, (pattern >> i) & 1)

    def _prescale(self) -> int:
        return max(self.values["PRESCALE"] & 0xFFFFFFFF, 1)

    def _run_line(self, ts: int, load: bool) -> None:
        """Start a pass of a line (the next one if ``load``), trigger first."""
        if load:
            line = self._load(ts)
            if line is None:
                return
        else:
            assert self._line is not None
            line = self._line
        if self._triggered(line):
            self._start_phases(ts, line)
        else:
            self.set_output("STATE", WAIT_TRIGGER)

    def _load(self, ts: int) -> Line | None:
        """Take the next line from the table; stop on underrun."""
        if not self._frame_valid(ts):
            self._stop(ts, DMA_UNDERRUN)
            return None
        line = self._lines[self._next]
        self._line = line
        self._next += 1
        if self._dma.kind == FIXED:
            # The ring wraps at the last line written so far.
            if not self._frame_valid(ts):
                self._next = 0
        elif self._next >= _TRIM:
            del self._lines[: self._next]
            self._next = 0
        return line

    def _start_phases(self, ts: int, line: Line) -> None:
        if line.time1:
            self._set_outputs(line.out1)
            self._phase_end = ts + line.time1 * self._prescale()
            self.set_output("STATE", PHASE1)
        else:
            self._phase2(ts, line)

    def _phase2(self, ts: int, line: Line) -> None:
        self._set_outputs(line.out2)
        self._phase_end = ts + max(line.time2, 1) * self._prescale()
        self.set_output("STATE", PHASE2)

    def _end_of_line(self, ts: int) -> None:
        v = self.values
        line = self._line
        assert line is not None
        last_repeat = line.repeats != 0 and v["LINE_REPEAT"] == line.repeats
        last_line = last_repeat and (
            (self._dma.kind == FIXED and v["TABLE_LINE"] == (self._dma.length >> 2))
            or line.last
        )
        repeats = v["REPEATS"] & 0xFFFFFFFF
        if last_line and (
            self._dma.kind == STREAMED
            or (repeats != 0 and v["TABLE_REPEAT"] == repeats)
        ):
            # Table done.
            self._set_outputs(0)
            self.set_output("ACTIVE", 0)
            self.set_output(
                "STATE", UNREADY if self._dma.kind == STREAMED else WAIT_ENABLE
            )
        elif last_repeat and not self._frame_valid(ts):
            # Underrun pre-empts the whole end-of-line update, counters too.
            self._stop(ts, DMA_UNDERRUN)
        elif last_repeat:
            self.set_output("LINE_REPEAT", 1)
            if last_line:
                self.set_output("TABLE_LINE", 1)
                if self._dma.kind == FIXED:
                    self.set_output(
                        "TABLE_REPEAT", (v["TABLE_REPEAT"] + 1) & 0xFFFFFFFF
                    )
            else:
                # The firmware's line counter is 19 bits wide.
                self.set_output("TABLE_LINE", (v["TABLE_LINE"] + 1) & 0x7FFFF)
            self._run_line(ts, load=True)
        else:
            self.set_output("LINE_REPEAT", (v["LINE_REPEAT"] + 1) & 0xFFFFFFFF)
            self._run_line(ts, load=False)

    def _stop(self, ts: int, error: int) -> None:
        """Falling ENABLE or an error: outputs low, then idle or unready."""
        self._set_outputs(0)
        self.set_output("ACTIVE", 0)
        state = self.values["STATE"]
        if state not in (UNREADY, WAIT_ENABLE):
            if self._dma.kind == FIXED and not error:
                # Ready to replay the table from its first line.
                self.set_output("STATE", WAIT_ENABLE)
                self._next = 0
            else:
                # The DMA is aborted: the table is gone until TABLE_LENGTH=0.
                self.set_output("STATE", UNREADY)
                self._discard(ts)
                self._dma.more = False
        if error and self.values["HEALTH"] == OK:
            self.set_output("HEALTH", error)

    # -- table loading ----------------------------------------------------------

    def _discard(self, ts: int) -> None:
        self._lines = []
        self._next = 0
        self._partial = []
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
        # A line is usable on the tick after its fourth word arrives.
        partial = self._partial
        final = len(buffer.words) - 1
        for i, word in enumerate(buffer.words):
            partial.append(word)
            if len(partial) == 4:
                last = buffer.last and i == final
                self._lines.append(decode_line(partial, buffer.first + i + 1, last))
                partial = []
        self._partial = partial
