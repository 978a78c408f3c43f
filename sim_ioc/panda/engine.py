"""The event-driven simulation that wires block models together.

Time is a tick count (8 ns). The engine keeps a priority queue of events:
input changes for a block, wake-ups a block asked for, and bus writes. It
jumps from one event to the next: a 1 s idle gap costs one queue operation,
not 125 million steps.

Wiring follows the firmware: an output that changes on tick ``t`` is written
to the system bus and seen by the blocks whose ``bit_mux``/``pos_mux`` select
it on tick ``t + 1`` (plus the mux's DELAY). Constant latencies like this
cancel in everything PCAP measures relative to its enable.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .models import Block, Bus

_INPUT, _WAKE, _BIT, _POS, _CALL = range(5)

#: Called with (tick, bus index, value) when a watched bit changes.
BitListener = Callable[[int, int, int], None]
#: Called with (tick, value) when a watched block input is applied.
InputListener = Callable[[int, int], None]


@dataclass
class _Consumer:
    block: str
    field: str
    delay: int = 0


@dataclass
class Engine:
    """Runs block models against a shared bus, event by event."""

    blocks: dict[str, Block] = field(default_factory=dict)
    bus: Bus = field(default_factory=Bus)
    #: (block instance, output register) -> bus kind and index.
    bit_outputs: dict[tuple[str, str], int] = field(default_factory=dict)
    pos_outputs: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Blocks that read the whole position bus (PCAP): told of every change.
    pos_bus_readers: list[str] = field(default_factory=list)
    #: Last tick processed.
    now: int = 0
    #: Events processed so far (for benchmarks and tests of event-drivenness).
    events: int = 0

    def __post_init__(self) -> None:
        self._queue: list[tuple[int, int, int, str, str, int]] = []
        self._seq = 0
        self._wake: dict[str, int] = {}
        self._bit_consumers: dict[int, list[_Consumer]] = {}
        self._pos_consumers: dict[int, list[_Consumer]] = {}
        self._sources: dict[tuple[str, str], tuple[int, int]] = {}
        self._bit_listeners: dict[int, list[BitListener]] = {}
        # World hooks (the simulated motor and detector): see "world hooks".
        self._input_listeners: dict[tuple[str, str], list[InputListener]] = {}
        self._calls: dict[int, Callable[[int], None]] = {}

    # -- scheduling -------------------------------------------------------------

    def _push(self, ts: int, kind: int, target: str, name: str, value: int) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (ts, self._seq, kind, target, name, value))

    def set_input(
        self, block: str, name: str, value: int, ts: int | None = None
    ) -> None:
        """Write a register of ``block``; it takes effect on the next tick."""
        self._push(self.now + 1 if ts is None else ts, _INPUT, block, name, value)

    def next_event(self) -> int | None:
        """Tick of the next pending event, if any."""
        return self._queue[0][0] if self._queue else None

    # -- wiring -----------------------------------------------------------------

    def connect_bit(
        self, block: str, name: str, source: int | None, delay: int = 0
    ) -> None:
        """Feed input ``block.name`` from bit bus entry ``source`` (None: ZERO,
        -1: ONE)."""
        self._rewire(self._bit_consumers, block, name, source, delay)
        value = 1 if source == -1 else 0 if source is None else self.bus.bits[source]
        self.set_input(block, name, value)

    def connect_pos(self, block: str, name: str, source: int | None) -> None:
        """Feed input ``block.name`` from pos bus entry ``source`` (None: ZERO)."""
        self._rewire(self._pos_consumers, block, name, source, 0)
        self.set_input(block, name, 0 if source is None else self.bus.pos[source])

    def _rewire(
        self,
        table: dict[int, list[_Consumer]],
        block: str,
        name: str,
        source: int | None,
        delay: int,
    ) -> None:
        kind = 0 if table is self._bit_consumers else 1
        old = self._sources.pop((block, name), None)
        if old is not None and old[0] == kind and old[1] in table:
            table[old[1]] = [
                c for c in table[old[1]] if (c.block, c.field) != (block, name)
            ]
        if source is not None and source >= 0:
            table.setdefault(source, []).append(_Consumer(block, name, delay))
            self._sources[(block, name)] = (kind, source)

    def listen_bit(self, index: int, listener: BitListener) -> None:
        """Call ``listener`` whenever bit bus entry ``index`` changes."""
        self._bit_listeners.setdefault(index, []).append(listener)

    # -- world hooks --------------------------------------------------------------
    # For things outside the PandA that share its clock: a detector watching a
    # TTL output, a timer that must run in tick order with the blocks.

    def listen_input(
        self, block: str, name: str, listener: InputListener
    ) -> Callable[[], None]:
        """Call ``listener(tick, value)`` whenever input ``block.name`` is
        applied (on the tick the block sees it, after wiring and DELAY, from
        whichever source it is wired to at the time); returns unsubscribe.

        Called for every write, including ones that leave the value unchanged.
        """
        listeners = self._input_listeners.setdefault((block, name), [])
        listeners.append(listener)
        return lambda: listeners.remove(listener)

    def call_at(self, ts: int, callback: Callable[[int], None]) -> None:
        """Call ``callback(tick)`` when the simulation reaches tick ``ts``
        (not before the next tick), in order with the blocks' events."""
        self._seq += 1
        self._calls[self._seq] = callback
        self._push(max(ts, self.now + 1), _CALL, "", str(self._seq), 0)

    # -- running ----------------------------------------------------------------

    def advance(self, until: int, max_events: int | None = None) -> bool:
        """Process every event up to and including tick ``until``.

        With ``max_events``, stop early (at a tick boundary) once that many
        have been handled, so a caller can keep a control port responsive;
        returns True when it got all the way to ``until``.
        """
        queue = self._queue
        handled = 0
        while queue and queue[0][0] <= until:
            if max_events is not None and handled >= max_events:
                self.now = queue[0][0] - 1
                return False
            ts = queue[0][0]
            batch: dict[str, dict[str, int]] = {}
            while queue and queue[0][0] == ts:
                _, _, kind, target, name, value = heapq.heappop(queue)
                handled += 1
                if kind == _INPUT:
                    batch.setdefault(target, {})[name] = value
                    if self._input_listeners:
                        for hook in self._input_listeners.get((target, name), ()):
                            hook(ts, value)
                elif kind == _WAKE:
                    if self._wake.get(target) == ts:
                        batch.setdefault(target, {})
                elif kind == _BIT:
                    self._write_bit(ts, int(name), value)
                elif kind == _POS:
                    self._write_pos(int(name), value, batch)
                else:
                    self.now = ts  # so a callback scheduling more sees the tick
                    self._calls.pop(int(name))(ts)
            self.now = ts
            for block_name, changes in batch.items():
                self._call(ts, block_name, changes)
        self.events += handled
        self.now = max(self.now, until)
        return True

    def _write_bit(self, ts: int, index: int, value: int) -> None:
        self.bus.bits[index] = value
        for listener in self._bit_listeners.get(index, ()):
            listener(ts, index, value)

    def _write_pos(
        self, index: int, value: int, batch: dict[str, dict[str, int]]
    ) -> None:
        self.bus.pos[index] = value
        for reader in self.pos_bus_readers:
            batch.setdefault(reader, {})[f"POS[{index}]"] = value

    def _call(self, ts: int, name: str, changes: dict[str, int]) -> None:
        block = self.blocks.get(name)
        if block is None:
            return
        wake = block.on_changes(ts, changes)
        if wake is not None:
            if wake <= ts:
                raise RuntimeError(f"{name} asked to be woken at {wake} on tick {ts}")
            if self._wake.get(name) != wake:
                self._wake[name] = wake
                self._push(wake, _WAKE, name, "", 0)
        else:
            self._wake.pop(name, None)
        for out, value in block.changes.items():
            if (index := self.bit_outputs.get((name, out))) is not None:
                self._push(ts + 1, _BIT, "", str(index), value)
                for c in self._bit_consumers.get(index, ()):
                    self._push(ts + 1 + c.delay, _INPUT, c.block, c.field, value)
            elif (index := self.pos_outputs.get((name, out))) is not None:
                self._push(ts + 1, _POS, "", str(index), value)
                for c in self._pos_consumers.get(index, ()):
                    self._push(ts + 1, _INPUT, c.block, c.field, value)

    def kick(self, names: Iterable[str]) -> None:
        """Call blocks on the next tick with no changes, so they publish their
        reset outputs (used once at start-up)."""
        for name in names:
            self._push(self.now + 1, _WAKE, name, "", 0)
            self._wake[name] = self.now + 1
