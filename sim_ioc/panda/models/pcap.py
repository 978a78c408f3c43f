"""PCAP: position capture, the block model.

The server programs a capture as a list of ``WRITE`` words, one per 32-bit
word of a frame: a pos-bus entry in one of :class:`PosMode` or an extension
entry of :class:`Ext` (see :mod:`.pcap_words`).

Arming and the capture window
-----------------------------
``ARM`` raises ``ACTIVE`` and clears ``HEALTH``; the acquisition starts on the
first tick ``S`` on which the block is armed and ``ENABLE`` is high (the
``ARM`` tick itself if ``ENABLE`` is already high). From ``S`` on, each
``TRIG`` edge chosen by ``TRIG_EDGE`` (0 rising, 1 falling, 2 either; the
firmware sees ``TRIG AND ENABLE``) captures one frame. A frame summarises its
*window*: the ticks from the previous capture (or ``S``) up to but excluding
the capture tick ``T``. A tick of the window is *gated* when ``GATE`` is high
on it. For a pos-bus entry ``x``:

* Value: ``x`` on tick ``T`` (whatever ``GATE``);
* Diff: the sum of the changes of ``x`` that happen on a tick following a
  gated tick, i.e. over each gated run ``[a, b)`` ``x[b] - x[a]`` (a run cut
  by the capture ends at ``T``); 32-bit, wraps;
* Sum: sum of ``x`` over gated ticks, 64-bit, arithmetically shifted right by
  ``SHIFT_SUM``;
* Min / Max: over gated ticks; 0x7FFFFFFF / -0x80000000 if none;
* sum of squares: sum of ``x * x`` over gated ticks, 96-bit, shifted by
  ``SHIFT_SUM``.

Extension words: GATE_DURATION (the number of gated ticks, shifted by
``SHIFT_SUM``, 32 bits), the bit bus on tick ``T`` in four 32-bit quadrants
(``BITS0`` holds bus bits 0..31, bit ``i`` of the word being bus entry
``i``), and three 64-bit signed timestamps, in ticks relative to ``S`` (the
tick the acquisition started, which counts as 0):

* TS_TRIG: ``T - S``;
* TS_START: the first gated tick of the window, or -1 if none;
* TS_END: one past the last gated tick of the window (the tick ``GATE`` fell,
  or ``T`` if it is still high), or -1 if none.

Output, pipeline and errors
---------------------------
The firmware clocks a frame's words out one per tick, the first 4 ticks after
the capture (``DATA`` shows them, as the vectors do). Captures closer together
than the number of words abort the acquisition: 4 ticks after the offending
capture ``ACTIVE`` drops and ``HEALTH`` becomes 1; that capture produces
nothing. The falling edge of ``ENABLE`` ends the acquisition: ``ACTIVE`` drops
on that tick, or once the last word already captured has been clocked out.
``DISARM`` ends it at once. Frames captured before an end are always
delivered whole (the firmware may drop a frame whose words are still in its
4-tick pipeline at ``DISARM``); DMA overflow (``HEALTH`` 2) is not modelled.

The model is event driven: accumulations are computed lazily per stretch of
constant ``GATE`` and values (value x elapsed ticks), and the block only asks
to be woken when ``ACTIVE`` is due to drop. ``DATA`` is refreshed whenever the
block is called and asks for no wake-up of its own (nothing on the buses reads
it); :meth:`Pcap.drain` is the real stream.

The WRITE words and their encoding are :mod:`.pcap_words`'; for the server,
:mod:`.pcap_layout`'s :func:`capture_layout` turns user capture requests
(``Value``, ``Min Max Mean``...) into the ``WRITE`` list and tells which frame
words make each field of the data stream (re-exported here).

Why this module is longer than 400 lines: it is one block's state machine,
taken two ways over the same state, event by event and in bulk for trains
(:meth:`Pcap.follow_train`); the two must stay tick for tick identical (the
engine's tests compare the blocks' attributes), so they are kept side by side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from . import register
from .base import Block, Bus, BusTimeline, TableMemory, Train
from .pcap_layout import (
    EXT_SOURCES,
    POS_CAPTURE_OPTIONS,
    CaptureLayout,
    CaptureRequest,
    FrameField,
    capture_layout,
    capture_words,
    field_value,
    std_dev,
)
from .pcap_words import MASK32 as _MASK32
from .pcap_words import MASK_SIZE, MAX_FRAME_WORDS, Ext, PosMode, ext_word, pos_word

__all__ = [
    "EXT_SOURCES",
    "INT32_MAX",
    "INT32_MIN",
    "MASK_SIZE",
    "MAX_FRAME_WORDS",
    "PIPELINE",
    "POS_CAPTURE_OPTIONS",
    "CaptureLayout",
    "CaptureRequest",
    "Ext",
    "FrameField",
    "Pcap",
    "PosMode",
    "capture_layout",
    "capture_words",
    "ext_word",
    "field_value",
    "pos_word",
    "std_dev",
]

INT32_MAX = 0x7FFFFFFF
INT32_MIN = -0x80000000
#: Ticks from a capture to its first DATA word.
PIPELINE = 4
#: Entries a train may have when PCAP only watches the buses.
MAX_TRAIN = 1 << 62
#: The firmware counts gated ticks on 40 bits.
_SAMPLES_MASK = (1 << 40) - 1


def _int32(value: int) -> int:
    return ((value + 0x80000000) & _MASK32) - 0x80000000


class _Acc:
    """Running statistics of one pos-bus entry over the current window."""

    __slots__ = ("diff", "high", "index", "low", "squares", "total", "value")

    def __init__(self, index: int, value: int):
        self.index = index
        #: The entry's value since the last stretch boundary.
        self.value = value
        self.clear()

    def clear(self) -> None:
        self.total = 0
        self.squares = 0
        self.low = INT32_MAX
        self.high = INT32_MIN
        self.diff = 0


_IDLE, _ARMED, _RUNNING, _ENDING = range(4)


class Pcap(Block):
    """Tick-exact model of the PCAP block (see the module docstring).

    ``START_WRITE``, ``WRITE``, ``ARM`` and ``DISARM`` are write strobes: what
    matters is that they appear in the changes, not their value (except
    WRITE's). Pos-bus values are read from :attr:`bus` (``POS[n]`` changes
    only tell the block to look); the bit bus is read at each capture.
    """

    NAME = "PCAP"
    INPUTS = (
        "ENABLE",
        "GATE",
        "TRIG",
        "TRIG_EDGE",
        "SHIFT_SUM",
        "START_WRITE",
        "WRITE",
        "ARM",
        "DISARM",
    )
    #: ``ACTIVE`` is a bit output; ``HEALTH`` a status read (0 OK, 1 captures
    #: too close together, 2 samples overflow); ``DATA`` the last word clocked
    #: out (for the vectors; the stream is :meth:`drain`).
    OUTPUTS = ("ACTIVE", "HEALTH", "DATA")
    #: Changes that are registers (the rest, ``POS[n]``/``BIT[n]``, are buses).
    _REGISTERS: ClassVar[frozenset[str]] = frozenset(INPUTS)
    _STROBES: ClassVar[frozenset[str]] = frozenset(
        ("START_WRITE", "WRITE", "ARM", "DISARM")
    )

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        self._mask = [0] * MASK_SIZE
        self._mask_len = 0
        self._state = _IDLE
        #: Tick the acquisition started (timestamp 0).
        self._start = 0
        #: Tick ACTIVE drops while ending, and HEALTH then (None: unchanged).
        self._end_at: int | None = None
        self._end_health: int | None = None
        self._trig_en = 0
        self._last_capture: int | None = None
        # The window: statistics up to the start of the current stretch.
        self._stretch = 0
        self._gated = False
        self._samples = 0
        self._first = -1
        self._last_end = -1
        self._accs: list[_Acc] = []
        #: Frames in the output pipeline: (tick of first word, words).
        self._pipeline: deque[tuple[int, tuple[int, ...]]] = deque()
        #: Captured words not drained yet: whole chunks, then loose words.
        self._chunks: list[np.ndarray] = []
        self._stream: list[int] = []

    # -- the stream ---------------------------------------------------------------

    def drain(self) -> list[int]:
        """Return and forget the 32-bit words captured since the last call.

        Words are unsigned, in capture order: one capture appends one frame of
        as many words as the WRITE list had entries, in WRITE order (see
        :func:`capture_layout` for what they mean). A frame is available from
        its capture tick on, before the firmware would have clocked it out.
        """
        return self.drain_array().tolist()

    def drain_array(self) -> np.ndarray:
        """:meth:`drain` as a uint32 array."""
        self._flush()
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.empty(0, dtype=np.uint32)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def _flush(self) -> None:
        if self._stream:
            self._chunks.append(np.array(self._stream, dtype=np.uint32))
            self._stream = []

    # -- simulation ---------------------------------------------------------------

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        v = self.values
        registers = self._REGISTERS
        strobe = False
        for name, value in changes.items():
            if name in registers:
                v[name] = value
                if name in self._STROBES:
                    strobe = True
        if self._end_at is not None and self._end_at <= ts:
            self._stop(self._end_health)

        if strobe:
            self._strobes(changes)

        enable = v["ENABLE"] & 1
        trig_en = v["TRIG"] & enable & 1
        if self._state == _ARMED and enable:
            self._begin(ts)
        if self._state == _RUNNING:
            if enable:
                self._advance(ts, trig_en)
            else:
                self._finish(ts)
        self._trig_en = trig_en
        if self._pipeline:
            self._show_data(ts)
        return self._end_at

    def _strobes(self, changes: Mapping[str, int]) -> None:
        if "START_WRITE" in changes:
            self._mask_len = 0
        if "WRITE" in changes:
            # The RAM address is 6 bits wide and wraps, as in the firmware.
            self._mask[self._mask_len] = changes["WRITE"] & 0x3FF
            self._mask_len = (self._mask_len + 1) % MASK_SIZE
        if self._state == _RUNNING and ("START_WRITE" in changes or "WRITE" in changes):
            self._track()

        if "DISARM" in changes:
            if self._state != _IDLE:
                self._stop(None)
        elif "ARM" in changes and self._state == _IDLE:
            self._state = _ARMED
            self.set_output("ACTIVE", 1)
            self.set_output("HEALTH", 0)

    def _begin(self, ts: int) -> None:
        """Start the acquisition on tick ``ts``: timestamps count from here."""
        self._state = _RUNNING
        self._start = ts
        self._last_capture = None
        self._accs = []
        self._track()
        self._stretch = ts
        self._gated = bool(self.values["GATE"] & 1)
        self._clear_window()

    def _track(self) -> None:
        """Keep statistics for every pos-bus entry the WRITE list summarises."""
        have = {acc.index for acc in self._accs}
        for word in self._mask[: self._mask_len]:
            index = word >> 4 & 0x1F
            if not word & 0x200 and 0 < word & 0xF <= 8 and index not in have:
                have.add(index)
                self._accs.append(_Acc(index, _int32(self.bus.pos[index])))

    def _clear_window(self) -> None:
        self._samples = 0
        self._first = -1
        self._last_end = -1
        for acc in self._accs:
            acc.clear()

    def _advance(self, ts: int, trig_en: int) -> None:
        """Process tick ``ts`` of a running acquisition."""
        gate = bool(self.values["GATE"] & 1)
        pos = self.bus.pos
        if self._accs:
            moved = [acc for acc in self._accs if _int32(pos[acc.index]) != acc.value]
        else:
            moved = []
        old = self._trig_en
        if trig_en != old:
            edge = self.values["TRIG_EDGE"] & 3
            triggered = edge == 2 or edge == old  # 0: rising, 1: falling
        else:
            triggered = False
        if not (moved or triggered or gate != self._gated):
            return  # the current stretch simply goes on
        self._close_stretch(ts)
        for acc in moved:
            new = _int32(pos[acc.index])
            if self._gated:
                acc.diff += new - acc.value
            acc.value = new
        if triggered:
            self._capture(ts)
        self._gated = gate

    def _close_stretch(self, ts: int) -> None:
        """Account for ticks ``[stretch, ts)``, over which nothing changed."""
        n = ts - self._stretch
        if n > 0 and self._gated:
            self._samples += n
            if self._first < 0:
                self._first = self._stretch
            self._last_end = ts
            for acc in self._accs:
                x = acc.value
                acc.total += x * n
                acc.squares += x * x * n
                if x < acc.low:
                    acc.low = x
                if x > acc.high:
                    acc.high = x
        self._stretch = ts

    def _capture(self, ts: int) -> None:
        n = self._mask_len
        if self._last_capture is not None and ts - self._last_capture < n:
            # The previous frame is still being clocked out: the firmware
            # flags the error and aborts once this capture reaches the output.
            self._state = _ENDING
            self._end_at = ts + PIPELINE
            self._end_health = 1
            return
        self._last_capture = ts
        shift = self.values["SHIFT_SUM"] & 0x3F
        accs = {acc.index: acc for acc in self._accs}
        words = tuple(self._word(w, ts, shift, accs) for w in self._mask[:n])
        self._clear_window()
        if words:
            self._pipeline.append((ts + PIPELINE, words))
            self._stream.extend(words)

    def _word(self, word: int, ts: int, shift: int, accs: dict[int, _Acc]) -> int:
        """The value of WRITE entry ``word`` for a capture on tick ``ts``."""
        if word & 0x200:
            ext = word >> 4 & 0xF
            if ext <= Ext.TS_TRIG_H:
                start = self._start
                stamp = (
                    self._first - start if self._first >= 0 else -1,
                    self._last_end - start if self._last_end >= 0 else -1,
                    ts - start,
                )[ext >> 1]
                return stamp >> (32 * (ext & 1)) & _MASK32
            if ext == Ext.SAMPLES:
                return ((self._samples & _SAMPLES_MASK) >> shift) & _MASK32
            if ext <= Ext.BITS3:
                base = (ext - Ext.BITS0) * 32
                bits = self.bus.bits[base : base + 32]
                return sum((b & 1) << i for i, b in enumerate(bits))
            return 0
        index, mode = word >> 4 & 0x1F, word & 0xF
        if mode == PosMode.VALUE:
            return self.bus.pos[index] & _MASK32
        acc = accs.get(index)
        if acc is None:
            return 0  # modes 9-15 do not exist
        match mode:
            case PosMode.DIFF:
                return acc.diff & _MASK32
            case PosMode.SUM_L | PosMode.SUM_H:
                return acc.total >> shift >> (32 * (mode - PosMode.SUM_L)) & _MASK32
            case PosMode.MIN:
                return acc.low & _MASK32
            case PosMode.MAX:
                return acc.high & _MASK32
            case _:
                part = mode - PosMode.SUM2_L
                return acc.squares >> shift >> (32 * part) & _MASK32

    def _finish(self, ts: int) -> None:
        """ENABLE fell: stop capturing; drop ACTIVE once the output is done."""
        last = ts
        for first, words in self._pipeline:
            last = max(last, first + len(words) - 1)
        if last == ts:
            self._stop(None)
        else:
            self._state = _ENDING
            self._end_at = last
            self._end_health = None

    def _stop(self, health: int | None) -> None:
        self._state = _IDLE
        self._end_at = None
        self.set_output("ACTIVE", 0)
        if health is not None:
            self.set_output("HEALTH", health)

    def _show_data(self, ts: int) -> None:
        """DATA: the word the output pipeline shows on tick ``ts``."""
        queue = self._pipeline
        word: int | None = None
        while queue and queue[0][0] <= ts:
            first, words = queue[0]
            if ts - first < len(words):
                word = words[ts - first]
                break
            word = words[-1]
            queue.popleft()
        if word is not None:
            self.set_output("DATA", word)

    # -- trains -----------------------------------------------------------------

    def _train_captures(self, values: np.ndarray) -> np.ndarray:
        """The entries of a TRIG train that capture (while running)."""
        trig_en = values & self.values["ENABLE"] & 1
        previous = np.empty_like(trig_en)
        previous[0] = self._trig_en
        previous[1:] = trig_en[:-1]
        edge = self.values["TRIG_EDGE"] & 3
        if edge == 2:
            return np.flatnonzero(trig_en != previous)
        if edge == 3:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero((trig_en != previous) & (previous == edge))

    def plan_train(self, inputs: Mapping[str, Train]) -> tuple[int, frozenset[str]]:
        # Only the simple running case: captures of bus values and timestamps
        # with GATE and ENABLE steady; sums and the like go event by event.
        nothing: tuple[int, frozenset[str]] = (0, frozenset())
        if self._end_at is not None or set(inputs) - {"TRIG"}:
            return nothing
        if self._state == _RUNNING:
            if not self.values["ENABLE"] & 1 or self._accs:
                return nothing
            if self._gated != bool(self.values["GATE"] & 1):
                return nothing
        elif self._state != _IDLE:
            return nothing
        if "TRIG" not in inputs:
            return MAX_TRAIN, frozenset({"DATA"})
        ticks, values = inputs["TRIG"]
        n = len(ticks)
        if self._state == _RUNNING and n:
            # Captures too close together abort: leave that to the events.
            at = ticks[self._train_captures(values)]
            if len(at):
                gaps = np.diff(at, prepend=at[0] if self._last_capture is None
                               else self._last_capture)  # fmt: skip
                if self._last_capture is None:
                    gaps[0] = self._mask_len
                close = np.flatnonzero(gaps < self._mask_len)
                if len(close):
                    n = int(np.searchsorted(ticks, at[close[0]]))
        return n, frozenset({"DATA"})

    def follow_train(
        self, inputs: Mapping[str, Train], bus: BusTimeline
    ) -> dict[str, Train]:
        self.changes = {}
        v = self.values
        last_call = max((int(t[-1]) for t, _ in bus.pos.values() if len(t)), default=-1)
        trig = inputs.get("TRIG")
        if trig is not None and len(trig[0]):
            ticks, values = trig
            last_call = max(last_call, int(ticks[-1]))
            if self._state == _RUNNING:
                at = ticks[self._train_captures(values)]
                if len(at):
                    self._capture_train(at, bus)
            v["TRIG"] = int(values[-1])
            self._trig_en = v["TRIG"] & v["ENABLE"] & 1
        if last_call >= 0 and self._pipeline:
            self._show_data(last_call)
        return {}

    def _capture_train(self, at: np.ndarray, bus: BusTimeline) -> None:
        """Capture on each tick of ``at`` (running, no statistics kept, GATE
        steady), as :meth:`_capture` does."""
        n = self._mask_len
        count = len(at)
        start = self._start
        shift = self.values["SHIFT_SUM"] & 0x3F
        # The window each capture closes (see _close_stretch).
        previous = np.empty_like(at)
        previous[0] = self._stretch
        previous[1:] = at[:-1]
        if self._gated:
            samples = at - previous
            samples[0] += self._samples
            first = previous.copy()
            if self._first >= 0:
                first[0] = self._first
            last_end = at
        else:
            samples = np.zeros_like(at)
            samples[0] = self._samples
            first = np.full_like(at, -1)
            first[0] = self._first
            last_end = np.full_like(at, -1)
            last_end[0] = self._last_end
        stamps = (
            np.where(first >= 0, first - start, -1),
            np.where(last_end >= 0, last_end - start, -1),
            at - start,
        )

        def on_bus(timeline: dict[int, Train], index: int, now: int) -> np.ndarray:
            train = timeline.get(index)
            if train is None:
                return np.full(count, now, dtype=np.int64)
            ticks, values = train
            i = np.searchsorted(ticks, at, side="right") - 1
            return np.where(i >= 0, values[np.maximum(i, 0)], now)

        words = np.zeros((count, n), dtype=np.uint32)
        for col, word in enumerate(self._mask[:n]):
            value: np.ndarray | int = 0
            if word & 0x200:
                ext = word >> 4 & 0xF
                if ext <= Ext.TS_TRIG_H:
                    value = stamps[ext >> 1] >> (32 * (ext & 1))
                elif ext == Ext.SAMPLES:
                    value = (samples & _SAMPLES_MASK) >> shift
                elif ext <= Ext.BITS3:
                    base = (ext - Ext.BITS0) * 32
                    bits = self.bus.bits[base : base + 32]
                    value = sum((b & 1) << i for i, b in enumerate(bits))
                    for index in bus.bits:
                        if base <= index < base + 32:
                            level = on_bus(bus.bits, index, bits[index - base]) & 1
                            value = (value & ~(1 << (index - base))) | (
                                level << (index - base)
                            )
            elif word & 0xF == PosMode.VALUE:
                index = word >> 4 & 0x1F
                value = on_bus(bus.pos, index, self.bus.pos[index])
            words[:, col] = np.asarray(value, dtype=np.int64) & _MASK32
        last = int(at[-1])
        self._last_capture = last
        self._stretch = last
        self._clear_window()
        if n:
            self._flush()
            self._chunks.append(words.reshape(-1))
            # The output pipeline: frames still being clocked out matter,
            # and the last one done for DATA.
            first_word = at + PIPELINE
            done = np.flatnonzero(first_word + n <= last)
            keep = int(done[-1]) if len(done) else 0
            for i in range(keep, count):
                self._pipeline.append(
                    (int(first_word[i]), tuple(int(w) for w in words[i]))
                )


# Registered by a call, not the decorator: ``register`` is typed to return
# ``type[Block]``, which would hide ``drain`` from type checkers.
register(Pcap)
