"""The event-driven simulation that wires block models together.

Time is a tick count (8 ns). The engine keeps a priority queue of events:
input changes for a block, wake-ups a block asked for, and bus writes. It
jumps from one event to the next: a 1 s idle gap costs one queue operation,
not 125 million steps.

Wiring follows the firmware: an output that changes on tick ``t`` is written
to the system bus and seen by the blocks whose ``bit_mux``/``pos_mux`` select
it on tick ``t + 1`` (plus the mux's DELAY). Constant latencies like this
cancel in everything PCAP measures relative to its enable.

Performance
-----------
A bus write is one queue entry that carries the consumers wired (without
DELAY) to that entry at the time of the write, and fans out to them when it
is delivered; only delayed consumers get entries of their own.

Trains. A block whose output is a square wave (a running CLOCK) can tell the
engine so (:meth:`~.models.base.Block.square_wave`). When such a block's next
edge heads the queue and nothing else is due for a while, the engine computes
every edge up to the next other event at once, and lets the blocks that follow
it (:meth:`~.models.base.Block.plan_train` /
:meth:`~.models.base.Block.follow_train`: COUNTER, PCAP) process them in bulk.
The result is tick for tick what event-by-event simulation gives (the tests
compare the two); whenever a follower could not guarantee that (a counter
about to roll over, PCAP summing a moving value, a world hook listening...)
the engine simply takes the event-by-event path.

Why one module of over 400 lines: scheduling, the routes of outputs to their
consumers and trains all work on the one event queue and route cache, in the
hot loop; a train must leave the queue, the wake-ups and the buses exactly as
the events it replaces would (the tests compare the two), so they are kept
together rather than spread over objects reaching into each other's state.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .models import Block, Bus
from .models.base import POS_BUS_SIZE, BusTimeline, Train

_INPUT, _WAKE, _BIT, _POS, _CALL = range(5)
#: The change name under which bus readers (PCAP) hear of a pos-bus write.
_POS_NAMES = tuple(f"POS[{i}]" for i in range(POS_BUS_SIZE))
#: At most this many edges of a train are computed at once.
MAX_TRAIN_EDGES = 1 << 15
#: Fewer edges than this are not worth a train.
MIN_TRAIN_EDGES = 4
#: After a source's train was refused, periods to go event by event.
RETRY_PERIODS = 64

#: Called with (tick, bus index, value) when a watched bit changes.
BitListener = Callable[[int, int, int], None]
#: Called with (tick, value) when a watched block input is applied.
InputListener = Callable[[int, int], None]

#: A queue entry: (tick, sequence, kind, a, b, c). By kind:
#: _INPUT (block, field, value); _WAKE (block, -, -); _BIT/_POS (bus index,
#: value, consumers without delay as (block, field) pairs); _CALL (callback).
_Entry = tuple[int, int, int, Any, Any, Any]
#: How an output reaches the buses: (kind, index, consumers without delay,
#: delayed consumers as (block, field, delay)).
_Route = tuple[int, int, tuple[tuple[str, str], ...], tuple[tuple[str, str, int], ...]]


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
    #: (block instance, output register) -> bus kind and index. Fill these
    #: before running: routes are cached per block once it has run (adding
    #: entries is noticed, changing an existing one is not).
    bit_outputs: dict[tuple[str, str], int] = field(default_factory=dict)
    pos_outputs: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Blocks that read the whole position bus (PCAP): told of every change.
    pos_bus_readers: list[str] = field(default_factory=list)
    #: Last tick processed.
    now: int = 0
    #: Events processed so far (for benchmarks and tests of event-drivenness).
    #: Trains count the events event-by-event simulation would have handled.
    events: int = 0
    #: Compute square-wave trains in bulk (see the module docstring); False
    #: forces event-by-event simulation (tests compare the two).
    trains: bool = True

    def __post_init__(self) -> None:
        self._queue: list[_Entry] = []
        self._seq = 0
        self._wake: dict[str, int] = {}
        self._bit_consumers: dict[int, list[_Consumer]] = {}
        self._pos_consumers: dict[int, list[_Consumer]] = {}
        self._sources: dict[tuple[str, str], tuple[int, int]] = {}
        self._bit_listeners: dict[int, list[BitListener]] = {}
        # World hooks (the simulated motor and detector): see "world hooks".
        self._input_listeners: dict[tuple[str, str], list[InputListener]] = {}
        self._routes: dict[str, dict[str, _Route]] = {}
        self._route_sizes = (0, 0)
        self._retry: dict[str, int] = {}
        #: Trains processed and edges they covered (for benchmarks).
        self.train_batches = 0
        self.train_edges = 0

    # -- scheduling -------------------------------------------------------------

    def _push(self, ts: int, kind: int, a: Any, b: Any = None, c: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (ts, self._seq, kind, a, b, c))

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
        # Writes already in the queue keep the consumers of their time.
        self._routes.clear()

    def listen_bit(self, index: int, listener: BitListener) -> None:
        """Call ``listener`` whenever bit bus entry ``index`` changes."""
        self._bit_listeners.setdefault(index, []).append(listener)

    def _route(self, name: str) -> dict[str, _Route]:
        """The bus entries and consumers of ``name``'s outputs (cached)."""
        routes: dict[str, _Route] = {}
        for (block, out), index in self.bit_outputs.items():
            if block == name:
                consumers = self._bit_consumers.get(index, ())
                routes[out] = (
                    _BIT,
                    index,
                    tuple((c.block, c.field) for c in consumers if not c.delay),
                    tuple((c.block, c.field, c.delay) for c in consumers if c.delay),
                )
        for (block, out), index in self.pos_outputs.items():
            if block == name and out not in routes:
                consumers = self._pos_consumers.get(index, ())
                routes[out] = (
                    _POS,
                    index,
                    tuple((c.block, c.field) for c in consumers),
                    (),
                )
        self._routes[name] = routes
        return routes

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
        self._push(max(ts, self.now + 1), _CALL, callback)

    # -- running ----------------------------------------------------------------

    def advance(self, until: int, max_events: int | None = None) -> bool:
        """Process every event up to and including tick ``until``.

        With ``max_events``, stop early (at a tick boundary) once that many
        have been handled, so a caller can keep a control port responsive;
        returns True when it got all the way to ``until``.
        """
        sizes = (len(self.bit_outputs), len(self.pos_outputs))
        if sizes != self._route_sizes:
            self._routes.clear()
            self._route_sizes = sizes
        queue = self._queue
        pop = heapq.heappop
        wakes = self._wake
        bits = self.bus.bits
        pos = self.bus.pos
        readers = self.pos_bus_readers
        bit_listeners = self._bit_listeners
        input_listeners = self._input_listeners
        trains = self.trains
        call = self._call
        handled = 0
        try:
            while queue and queue[0][0] <= until:
                if max_events is not None and handled >= max_events:
                    self.now = queue[0][0] - 1
                    return False
                head = queue[0]
                ts = head[0]
                if trains and head[2] == _WAKE and wakes.get(head[3]) == ts:
                    covered = self._train(
                        head,
                        until,
                        None if max_events is None else max_events - handled,
                    )
                    if covered:
                        handled += covered
                        continue
                batch: dict[str, dict[str, int]] = {}
                while queue and queue[0][0] == ts:
                    _, _, kind, a, b, c = pop(queue)
                    handled += 1
                    if kind == _INPUT:
                        changes = batch.get(a)
                        if changes is None:
                            batch[a] = changes = {}
                        changes[b] = c
                        if input_listeners:
                            for hook in input_listeners.get((a, b), ()):
                                hook(ts, c)
                        continue
                    if kind == _WAKE:
                        if wakes.get(a) == ts and a not in batch:
                            batch[a] = {}
                        continue
                    if kind == _BIT:
                        bits[a] = b
                        if bit_listeners:
                            for listener in bit_listeners.get(a, ()):
                                listener(ts, a, b)
                    elif kind == _POS:
                        pos[a] = b
                        name = _POS_NAMES[a]
                        for reader in readers:
                            changes = batch.get(reader)
                            if changes is None:
                                batch[reader] = changes = {}
                            changes[name] = b
                    else:
                        self.now = ts  # so a callback scheduling more sees the tick
                        a(ts)
                        continue
                    # Consumers without DELAY, as wired when the write was made.
                    for block, fld in c:
                        handled += 1
                        changes = batch.get(block)
                        if changes is None:
                            batch[block] = changes = {}
                        changes[fld] = b
                        if input_listeners:
                            for hook in input_listeners.get((block, fld), ()):
                                hook(ts, b)
                self.now = ts
                for block_name, changes in batch.items():
                    call(ts, block_name, changes)
        finally:
            self.events += handled
        self.now = max(self.now, until)
        return True

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
                self._push(wake, _WAKE, name)
        else:
            self._wake.pop(name, None)
        outputs = block.changes
        if not outputs:
            return
        routes = self._routes.get(name)
        if routes is None:
            routes = self._route(name)
        for out, value in outputs.items():
            route = routes.get(out)
            if route is not None:
                kind, index, direct, delayed = route
                self._push(ts + 1, kind, index, value, direct)
                for block_name, fld, delay in delayed:
                    self._push(ts + 1 + delay, _INPUT, block_name, fld, value)

    def kick(self, names: Iterable[str]) -> None:
        """Call blocks on the next tick with no changes, so they publish their
        reset outputs (used once at start-up)."""
        for name in names:
            self._push(self.now + 1, _WAKE, name)
            self._wake[name] = self.now + 1

    # -- trains -----------------------------------------------------------------

    def _train(self, head: _Entry, until: int, budget: int | None) -> int:
        """Process a run of square-wave edges of the block woken by ``head`` in
        bulk; return the events that covers, or 0 to go event by event."""
        ts0, name = head[0], head[3]
        if ts0 < self._retry.get(name, 0):
            return 0
        source = self.blocks.get(name)
        if source is None:
            return 0
        wave = source.square_wave()
        if wave is None:
            return 0
        queue = self._queue
        # The next other event bounds the train (a heap's second smallest is
        # one of the root's children).
        limit = until
        for i in (1, 2):
            if i < len(queue) and queue[i][0] <= limit:
                limit = queue[i][0] - 1
        out, origin, period, high = wave
        if limit - ts0 < 2 * period:
            return 0
        routes = self._routes.get(name)
        if routes is None:
            routes = self._route(name)
        route = routes.get(out)
        if route is None or route[0] != _BIT:
            return 0
        index = route[1]
        if self._bit_listeners.get(index):
            return 0
        consumers = [(b, f, 0) for b, f in route[2]] + list(route[3])
        by_block: dict[str, dict[str, int]] = {}
        for block, fld, delay in consumers:
            if self._input_listeners.get((block, fld)) or block not in self.blocks:
                return 0
            fields = by_block.setdefault(block, {})
            if fld in fields:
                return 0
            fields[fld] = delay
        readers = [r for r in self.pos_bus_readers if r in self.blocks]
        followers = [b for b in by_block if b not in readers]
        span = 2 + max((d for _, _, d in consumers), default=0)
        # The edges: alternately after `gap` and `period - gap`. The next edge
        # must come after everything the train did: a faster wave (or DELAY
        # longer than half a period) goes event by event.
        rising = (ts0 - origin) % period == 0
        gap = high if rising else period - high
        if max(gap, period - gap) <= span:
            return self._decline(name, ts0, period)
        last_allowed = limit - span
        full = (last_allowed - ts0) // period
        count = 2 * full + 1 + (ts0 + full * period + gap <= last_allowed)
        count = min(count, MAX_TRAIN_EDGES)
        if budget is not None:
            # A train costs far less than its events: one edge per event of
            # the budget keeps a call as short as the budget means it to be.
            count = min(count, budget)
        if count < MIN_TRAIN_EDGES:
            return 0
        k = np.arange(count, dtype=np.int64)
        ticks = ts0 + (k >> 1) * period + (k & 1) * gap
        values = (k & 1) ^ int(rising)

        def inputs(block: str, n: int) -> dict[str, Train]:
            return {
                f: (ticks[:n] + (1 + d), values[:n]) for f, d in by_block[block].items()
            }

        # Everything must agree before anything changes.
        may_change: dict[str, frozenset[str]] = {}
        for block in list(by_block) + [r for r in readers if r not in by_block]:
            n, outs = self.blocks[block].plan_train(
                inputs(block, count) if block in by_block else {}
            )
            count = min(count, n)
            if count < MIN_TRAIN_EDGES:
                return self._decline(name, ts0, period)
            may_change[block] = outs
        for block, outs in may_change.items():
            block_routes = self._routes.get(block) or self._route(block)
            for o in outs:
                r = block_routes.get(o)
                if r is None:
                    continue
                if block in readers or r[2] or r[3] or self._bit_listeners.get(r[1]):
                    # Only unwired bus entries, read by PCAP.
                    return self._decline(name, ts0, period)
        # The next edge must come after everything the train did: a faster
        # wave (DELAY longer than half a period) goes event by event.
        # Stop on an edge followed by a gap longer than the train's reach.
        count -= (gap if count & 1 else period - gap) <= span
        if count < MIN_TRAIN_EDGES:
            return 0
        ticks, values = ticks[:count], values[:count]

        # Followers first, then the bus readers that see what they did.
        events = count * (2 + len(consumers))
        last = int(ticks[-1]) + span - 1
        timeline = BusTimeline(bits={index: (ticks + 1, values)}, pos={})
        for block in followers:
            changed = self.blocks[block].follow_train(inputs(block, count), timeline)
            block_routes = self._routes[block]
            for o, (when, what) in changed.items():
                r = block_routes.get(o)
                if r is None or not len(when):
                    continue
                events += len(when)
                bus = timeline.bits if r[0] == _BIT else timeline.pos
                bus[r[1]] = (when + 1, what)
                last = max(last, int(when[-1]) + 1)
        called = set(followers)
        for block in readers:
            if block in by_block or timeline.pos:
                called.add(block)
                self.blocks[block].follow_train(
                    inputs(block, count) if block in by_block else {}, timeline
                )
        for i, (_, what) in timeline.bits.items():
            self.bus.bits[i] = int(what[-1])
        for i, (_, what) in timeline.pos.items():
            self.bus.pos[i] = int(what[-1])
        for block in called:
            self._wake.pop(block, None)  # followers ask for no wake-up
        source.follow_wave(int(ticks[-1]), int(values[-1]))
        heapq.heappop(queue)
        wake = ts0 + (count >> 1) * period + (count & 1) * gap
        self._wake[name] = wake
        self._push(wake, _WAKE, name)
        self.now = max(self.now, last)
        self.train_batches += 1
        self.train_edges += count
        return events

    def _decline(self, name: str, ts: int, period: int) -> int:
        """Go event by event, and do not try a train of ``name`` again for a
        while (trying costs more than a few events)."""
        self._retry[name] = ts + RETRY_PERIODS * period
        return 0
