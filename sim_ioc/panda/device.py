"""The simulated PandABox: fields, block models, world and capture, wired up.

:class:`SimulatedPanda` is what a PandABlocks-server would be on real
hardware, minus the sockets: it answers field reads and writes, arms and
disarms PCAP, and turns PCAP's captured words into :mod:`capture <.capture>`
events for the data port. It is pure: the caller passes the current tick.
"""

from __future__ import annotations

import datetime
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from ..world import Encoder, World
from . import capture
from .catalog import Catalog, FieldDef, load_catalog
from .engine import Engine
from .fields import Field, FieldError
from .models import MODELS
from .models.dma import MORE_FLAG

#: What ``*IDN?`` answers. SW >= 4.0 selects the newer table protocol.
IDN = (
    "PandA SW: 4.0.0-sim FPGA: 0.1.9 00000000 00000000 rootfs: panda-flyscan simulator"
)
APPNAME = "PandABox-fmc_acq427"


class MetadataKind(StrEnum):
    """How the firmware's config declares a ``*METADATA`` key."""

    #: Read-only; the server never reports it in ``*CHANGES``.
    CONSTANT = "constant"
    #: One line, written with ``*METADATA.KEY=value``.
    STRING = "string"
    #: Lines, written with ``*METADATA.KEY<`` and read as a multi-line reply.
    MULTILINE = "multiline"


@dataclass
class Metadata:
    """One ``*METADATA`` key and its value (lines when multi-line)."""

    kind: MetadataKind
    value: str | list[str]


CaptureListener = Callable[[capture.Event], None]


@dataclass(frozen=True)
class _DmaWrite:
    """A table buffer handed to a block: its words stay in the simulated
    memory until the block has read them (on its TABLE_LENGTH tick)."""

    tick: int
    address: int
    lines: int


@dataclass
class _TableDma:
    """The driver's side of one DMA-fed table."""

    #: Buffers whose TABLE_LENGTH write the block may not have seen yet.
    writes: deque[_DmaWrite] = field(default_factory=deque)
    #: Tick of the last register write scheduled, so writes stay in order.
    last_tick: int = -1
    #: Tick of the last TABLE_LENGTH = 0: earlier buffers no longer count.
    reset_tick: int = -1


@dataclass
class SimulatedPanda:
    """A PandABox with the ACQ427 FMC card, simulated tick for tick."""

    catalog: Catalog = field(default_factory=load_catalog)
    world: World = field(default_factory=World)

    def __post_init__(self) -> None:
        self.engine = Engine()
        self.fields: dict[str, Field] = {}
        # The keys the firmware's config template declares, in its order.
        self.metadata: dict[str, Metadata] = {
            "APPNAME": Metadata(MetadataKind.CONSTANT, APPNAME),
            "DESIGN": Metadata(MetadataKind.STRING, ""),
            "LAYOUT": Metadata(MetadataKind.MULTILINE, []),
            "EXPORTS": Metadata(MetadataKind.MULTILINE, []),
        }
        self._memory: dict[int, list[int]] = {}
        self._addresses = itertools.count(0x1000, 0x1000)
        self._tables: dict[str, _TableDma] = {}
        self._listeners: list[CaptureListener] = []
        self.capture: capture.Capture | None = None
        self.captured = 0
        for inst, block, number in self.catalog.instances():
            model = MODELS.get(block.name)
            if model is not None:
                self.engine.blocks[inst] = model(self.engine.bus, self._read_memory)
            for f in block.fields.values():
                key = f"{inst}.{f.name}"
                self.fields[key] = Field(
                    inst, f, self.catalog, self._read_output, self._queued_lines
                )
                if f.type == "bit_out":
                    self.engine.bit_outputs[(inst, f.name)] = self.catalog.bit_bus[key]
                elif f.type == "pos_out":
                    self.engine.pos_outputs[(inst, f.name)] = self.catalog.pos_bus[key]
            # Labels always carry the number, PCAP1 included, as on real PandAs.
            self.metadata[f"LABEL_{block.name}{number}"] = Metadata(
                MetadataKind.STRING, ""
            )
            if block.name == "INENC":
                axis = self.world.axis(f"INENC{number}")
                inenc = self.engine.blocks.get(inst)
                if inenc is not None:
                    inenc.encoder = Encoder(axis)  # type: ignore[attr-defined]
        if "PCAP" in self.engine.blocks:
            self.engine.pos_bus_readers.append("PCAP")
        for f in self.fields.values():
            self._sync(f)
        self.engine.kick(self.engine.blocks)
        pcap_active = self.catalog.bit_bus["PCAP.ACTIVE"]
        self.engine.listen_bit(pcap_active, self._on_pcap_active)

    # -- time -------------------------------------------------------------------

    def advance(self, ts: int, max_events: int | None = None) -> bool:
        """Run the simulation up to tick ``ts`` and publish captured data."""
        done = self.engine.advance(ts, max_events)
        self._free_tables()
        self._drain()
        return done

    @property
    def now(self) -> int:
        return self.engine.now

    # -- fields -----------------------------------------------------------------

    def lookup(self, block: str, name: str) -> Field:
        """Find ``BLOCK.FIELD``; single blocks also answer to ``BLOCK1``."""
        f = self.fields.get(f"{block}.{name}")
        if f is None and block.endswith("1"):
            f = self.fields.get(f"{block[:-1]}.{name}")
            if f is not None and self.catalog.blocks[block[:-1]].number != 1:
                f = None
        if f is None:
            # The server's texts and order of checks (server/fields.c,
            # config_command.c): block, field, then the instance number.
            blk = self.catalog.block_of(block)
            if blk is None:
                raise FieldError("No such block")
            if name not in blk.fields:
                raise FieldError("No such field")
            if block == blk.name:
                raise FieldError("Missing block number")
            raise FieldError("Invalid block number")
        return f

    def get_metadata(self, key: str) -> str | list[str]:
        """``*METADATA.KEY?``: a string, or the lines of a multi-line key."""
        entry = self._metadata_entry(key)
        value = entry.value
        return list(value) if isinstance(value, list) else value

    def put_metadata(self, key: str, value: str) -> None:
        """``*METADATA.KEY=value``: only string keys are writeable."""
        entry = self._metadata_entry(key)
        if entry.kind is not MetadataKind.STRING:
            raise FieldError("Cannot write to this field")
        entry.value = value

    def put_metadata_lines(self, key: str, lines: list[str]) -> None:
        """``*METADATA.KEY<`` and its lines: only multi-line keys take them."""
        entry = self._metadata_entry(key)
        if entry.kind is not MetadataKind.MULTILINE:
            raise FieldError("Not a multi-line field")
        entry.value = list(lines)

    def _metadata_entry(self, key: str) -> Metadata:
        entry = self.metadata.get(key)
        if entry is None:
            raise FieldError(f"Metadata key {key} not found")
        return entry

    def definition(self, block: str, name: str) -> FieldDef:
        """A field's definition by block type or instance (for ``*ENUMS``...)."""
        blk = self.catalog.block_of(block)
        if blk is None:
            raise FieldError("No such block")
        if name not in blk.fields:
            raise FieldError("No such field")
        return blk.fields[name]

    def put(self, block: str, name: str, attr: str | None, text: str) -> None:
        f = self.lookup(block, name)
        if attr is None:
            f.put(text)
        else:
            f.put_attr(attr, text)
        self._sync(f)

    def put_table(
        self,
        block: str,
        name: str,
        words: list[int],
        streaming: bool = False,
        last: bool = False,
    ) -> None:
        """``BLOCK.FIELD<`` (fixed), ``<<`` (streamed buffer), ``<<|`` (last
        streamed buffer): check the write as the server does, then hand the
        words to the block as one DMA buffer.

        Not held back: the reply does not wait for a free buffer (see
        docs/simulator.md, "Streaming tables"); clients pace themselves by
        ``QUEUED_LINES``.
        """
        f = self.lookup(block, name)
        new_table = f.put_table(words, streaming, last, self._table_completed(f))
        self._send_table(f, words, new_table, more=streaming and not last)

    def table_buffers(self) -> int:
        """Table buffers held in the simulated DMA memory (all tables)."""
        return len(self._memory)

    def _table_completed(self, f: Field) -> bool:
        """Whether the FPGA has completed the field's streamed table."""
        model = self.engine.blocks.get(f.block)
        completed = getattr(model, "stream_completed", None)
        dma = self._tables.get(f.name)
        if completed is None or (dma and dma.writes and dma.writes[-1].tick > self.now):
            # A buffer the block has not seen yet: it cannot be over.
            return False
        return bool(completed())

    def _queued_lines(self, block: str, name: str) -> int:
        """Lines queued in the block plus those of buffers still in flight."""
        model = self.engine.blocks.get(block)
        queued = getattr(model, "queued_lines", None)
        lines = int(queued()) if queued is not None else 0
        dma = self._tables.get(f"{block}.{name}")
        if dma is not None:
            since = max(self.now, dma.reset_tick)
            lines += sum(w.lines for w in dma.writes if w.tick > since)
        return lines

    def _send_table(
        self, f: Field, words: list[int], new_table: bool, more: bool
    ) -> None:
        """As the server and driver do: (reset,) place the buffer in memory,
        point the block at it, then write its length (bit 31: more follow)."""
        model = self.engine.blocks.get(f.block)
        if model is None or "TABLE_ADDRESS" not in model.INPUTS:
            return
        dma = self._tables.setdefault(f.name, _TableDma())
        self._free_tables()
        t = max(self.engine.now + 1, dma.last_tick + 1)
        if new_table:
            # The firmware refuses a new table unless the length was zeroed
            # on an earlier tick. The server resets only from FIXED; from
            # INIT the table is reset already, so the extra zero is harmless.
            self.engine.set_input(f.block, "TABLE_LENGTH", 0, t)
            dma.last_tick = dma.reset_tick = t
            t += 1
        if not words:
            return
        address = next(self._addresses)
        self._memory[address] = list(words)
        length = len(words) | (MORE_FLAG if more else 0)
        self.engine.set_input(f.block, "TABLE_ADDRESS", address, t)
        self.engine.set_input(f.block, "TABLE_LENGTH", length, t)
        dma.last_tick = t
        dma.writes.append(
            _DmaWrite(t, address, len(words) // max(f.definition.words, 1))
        )

    def _free_tables(self) -> None:
        """Free the buffers blocks have read (on their TABLE_LENGTH tick),
        so a long stream holds only the buffers still in flight."""
        now = self.engine.now
        for dma in self._tables.values():
            while dma.writes and dma.writes[0].tick <= now:
                self._memory.pop(dma.writes.popleft().address, None)

    def _read_output(self, block: str, name: str) -> int:
        key = f"{block}.{name}"
        if (i := self.catalog.bit_bus.get(key)) is not None:
            return self.engine.bus.bits[i]
        if (i := self.catalog.pos_bus.get(key)) is not None:
            return self.engine.bus.pos[i]
        model = self.engine.blocks.get(block)
        return model.values.get(name, 0) if model is not None else 0

    def _read_memory(self, address: int, length: int) -> list[int]:
        return self._memory.get(address, [])[:length]

    def _sync(self, f: Field) -> None:
        """Push a field's value to its block model's registers."""
        model = self.engine.blocks.get(f.block)
        if model is None:
            return
        d, name = f.definition, f.definition.name
        if d.type == "bit_mux":
            source = None if f.value == 0 else -1 if f.value == 1 else f.value - 2
            self.engine.connect_bit(f.block, name, source, f.delay)
        elif d.type == "pos_mux":
            self.engine.connect_pos(
                f.block, name, None if f.value == 0 else f.value - 1
            )
        elif d.type == "time" or d.subtype == "time":
            # 48-bit times are split over two registers; "param time" is one.
            if name in model.INPUTS:
                self.engine.set_input(f.block, name, f.value & 0xFFFFFFFF)
            elif f"{name}_L" in model.INPUTS:
                self.engine.set_input(f.block, f"{name}_L", f.value & 0xFFFFFFFF)
                self.engine.set_input(f.block, f"{name}_H", f.value >> 32)
        elif d.type == "table":
            pass  # tables reach the block through put_table's DMA buffers
        elif d.type in ("param", "write") and name in model.INPUTS:
            self.engine.set_input(f.block, name, f.value & 0xFFFFFFFF)

    # -- world ------------------------------------------------------------------

    def resync_encoders(self) -> None:
        """Tell the blocks that follow an axis (INENC, FMC_IN signals of an
        axis) that the world's motion was replanned."""
        for inst, model in self.engine.blocks.items():
            if "RESYNC" in model.INPUTS:
                self.engine.set_input(inst, "RESYNC", 1)

    def watch_ttlout(
        self, number: int, callback: Callable[[int, int], None]
    ) -> Callable[[], None]:
        """Call ``callback(tick, level)`` whenever the level TTLOUT<number>
        drives changes: what a cable from that connector carries.

        Follows the block's VAL input on the tick the block sees it, whatever
        it is wired to (rewiring included). Runs inside :meth:`advance`, so it
        must be quick and must not call back into the simulation. Returns a
        function that stops watching.
        """
        block = f"TTLOUT{number}"
        model = self.engine.blocks.get(block)
        if model is None:
            raise FieldError(f"No such block {block}")
        level = [model.values.get("VAL", 0) & 1]

        def on_input(ts: int, value: int) -> None:
            if value & 1 != level[0]:
                level[0] = value & 1
                callback(ts, level[0])

        return self.engine.listen_input(block, "VAL", on_input)

    # -- capture ----------------------------------------------------------------

    def subscribe(self, listener: CaptureListener) -> Callable[[], None]:
        """Receive capture events (start, frames, end); returns unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, event: capture.Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    def captured_fields(self) -> list[capture.Request]:
        """What PCAP will capture, from the CAPTURE attributes, in bus order."""
        requests: list[capture.Request] = []
        for f in self.fields.values():
            if f.kind in ("pos_out", "ext_out") and f.capture != "No":
                requests.append(
                    capture.Request(
                        f.name,
                        f.definition,
                        f.capture,
                        f.scale,
                        f.offset,
                        f.pos_units,
                        self.catalog.pos_bus.get(f.name),
                    )
                )
        return requests

    def arm(self) -> None:
        if self.capture is not None and not self.capture.ended:
            raise FieldError("Data capture already in progress")
        plan = capture.plan(self.captured_fields())
        arm_time = datetime.datetime.now(datetime.UTC).isoformat()
        self.capture = capture.Capture(plan, arm_time)
        self.captured = 0
        t = self.engine.now + 1
        self.engine.set_input("PCAP", "START_WRITE", 0, t)
        for i, word in enumerate(plan.write_words):
            self.engine.set_input("PCAP", "WRITE", word, t + 1 + i)
        self.engine.set_input("PCAP", "ARM", 0, t + 1 + len(plan.write_words))
        self._emit(capture.Start(plan, arm_time))

    def disarm(self, reason: str = "Disarmed") -> None:
        """Stop the acquisition; its END carries ``reason``."""
        if self.capture is not None and not self.capture.ended:
            self.capture.end_reason = reason
        self.engine.set_input("PCAP", "DISARM", 0)

    def overrun(self) -> None:
        """A data client fell too far behind: the capture ends at once with
        ``Data overrun``, as when the hardware's capture buffer overflows."""
        cap = self.capture
        if cap is None or cap.ended:
            return
        self.disarm("Data overrun")
        cap.ended = True
        self._emit(capture.End(self.captured, "Data overrun"))

    def _on_pcap_active(self, ts: int, index: int, value: int) -> None:
        cap = self.capture
        if cap is None:
            return
        if value:
            cap.started = True
        elif cap.started and not cap.ended:
            self._drain()
            cap.ended = True
            self._emit(capture.End(self.captured, cap.end_reason))

    def _drain(self) -> None:
        pcap = self.engine.blocks.get("PCAP")
        cap = self.capture
        if pcap is None or cap is None:
            return
        words = pcap.drain_array()  # type: ignore[attr-defined]
        if len(words) and not cap.ended:
            frames = cap.add_words(words)
            if frames is not None and len(frames):
                self.captured += len(frames)
                self._emit(capture.Frames(frames))
