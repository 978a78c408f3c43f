"""Field values as the PandABlocks-server presents them.

Every field of every block instance is a :class:`Field`: it parses and formats
the user-facing value and attributes (``PULSE1.DELAY=1.5``,
``PULSE1.DELAY.UNITS=ms``, ``INENC1.VAL.CAPTURE=Value``) and converts them to
the firmware registers the block models take (``DELAY_L``/``DELAY_H`` ticks).
Nothing here does I/O; errors raise :class:`FieldError` whose text becomes the
``ERR`` reply.

Longer than 400 lines on purpose: one class per field type of the server
(param, read, write, time, table, bit/pos mux, ...), each small, and the
server's fixed error texts shared between them; splitting them would scatter
one concern (the server's value syntax) over several files.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from .catalog import Catalog, FieldDef

#: Seconds per FPGA clock tick (125 MHz).
TICK = 8e-9
TIME_UNITS: dict[str, float] = {"min": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
POS_CAPTURE = (
    "No", "Value", "Diff", "Sum", "Mean", "Min", "Max", "Min Max", "Min Max Mean",
)  # fmt: skip
EXT_CAPTURE = ("No", "Value")
MAX_DELAY = 31
#: Rows the firmware's DMA-fed tables accept per write. These are the
#: server's "long" tables, the only ones that can be streamed.
TABLE_MAX_LENGTH = {"SEQ": 4096, "PGEN": 8192}
#: What the server answers when the driver refuses a buffer because the FPGA
#: has completed the streamed table (run to its end, or stopped by an error):
#: PANDA_BLOCK_SEND fails with EPIPE, "Block channel was completed"
#: (driver/panda_block.c). The real reply carries the failed ioctl's errno.
TABLE_COMPLETED = "Block channel was completed"


class FieldError(Exception):
    """A request the PandA answers with ``ERR <message>``."""


class TableMode(StrEnum):
    """``BLOCK.TABLE.MODE?``: what the last table write made of the table
    (server/table.c, ``update_table_mode``)."""

    INIT = "INIT"
    FIXED = "FIXED"
    STREAMING = "STREAMING"
    STREAMING_LAST = "STREAMING_LAST"


class Group(StrEnum):
    """``*CHANGES`` groups, by the suffix the protocol uses."""

    CONFIG = ".CONFIG"
    BITS = ".BITS"
    POSN = ".POSN"
    READ = ".READ"
    ATTR = ".ATTR"
    TABLE = ".TABLE"
    METADATA = ".METADATA"


def format_number(value: float) -> str:
    """Format a float the way the server does: shortest exact-ish text."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"


def parse_int(text: str, low: int, high: int) -> int:
    try:
        value = int(text, 0) if text.strip().lower().startswith("0x") else int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            raise FieldError(f"Number {text!r} not valid") from None
        if as_float != int(as_float):
            raise FieldError(f"Number {text!r} not an integer") from None
        value = int(as_float)
    if not low <= value <= high:
        raise FieldError("Number out of range")
    return value


def parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise FieldError(f"Number {text!r} not valid") from None


def lookup_label(labels: dict[int, str], text: str) -> int:
    for index, label in labels.items():
        if label == text:
            return index
    raise FieldError("Invalid enumeration value")


@dataclass
class Field:
    """One field of one block instance, with its attributes."""

    block: str  # instance name, e.g. "SEQ1"
    definition: FieldDef
    catalog: Catalog
    #: Reads a live output (bit_out/pos_out/read) from the simulation.
    read_output: Callable[[str, str], int]
    #: Lines the hardware still has queued for a streamed table (the
    #: driver's count), given the block instance and field name.
    read_queued: Callable[[str, str], int] | None = None
    value: int = 0
    units: str = "s"
    delay: int = 0
    capture: str = "No"
    scale: float = 1.0
    offset: float = 0.0
    pos_units: str = ""
    table: list[int] = field(default_factory=list)
    text: str = ""  # lut formula
    mode: TableMode = TableMode.INIT
    #: Bumped by every accepted table write, as the server's update_index:
    #: ``*CHANGES.TABLE`` reports the table even when the data is the same.
    table_index: int = 0

    def __post_init__(self) -> None:
        d = self.definition
        if d.type == "pos_out":
            self.scale, self.offset, self.pos_units = d.scale, d.offset, d.units

    @property
    def name(self) -> str:
        return f"{self.block}.{self.definition.name}"

    @property
    def kind(self) -> str:
        return self.definition.type

    # -- values ---------------------------------------------------------------

    def get(self) -> str | list[str]:
        """The value ``BLOCK.FIELD?`` returns."""
        d = self.definition
        t, sub = d.type, d.subtype
        if t in ("bit_mux",):
            return self.catalog.bit_labels[self.value]
        if t == "pos_mux":
            return self.catalog.pos_labels[self.value]
        if t == "time":
            return format_number(self.value * TICK / TIME_UNITS[self.units])
        if t in ("bit_out", "pos_out"):
            return str(self.read_output(self.block, d.name))
        if t == "table":
            return [str(w) for w in self.table]
        if t == "ext_out":
            raise FieldError("Field not readable")
        if t == "write":
            raise FieldError("Field not readable")
        value = self.read_output(self.block, d.name) if t == "read" else self.value
        if sub == "enum":
            return d.labels.get(value, str(value))
        if sub == "time":
            return format_number(value * TICK / TIME_UNITS[self.units])
        if sub == "scalar":
            return format_number(value * d.scale + d.offset)
        if sub == "lut":
            return self.text or f"0x{value & 0xFFFFFFFF:08X}"
        if sub == "action":
            raise FieldError("Field not readable")
        if sub == "int":
            return str(value if value < 1 << 31 else value - (1 << 32))
        return str(value)

    def put(self, text: str) -> None:
        """Apply ``BLOCK.FIELD=text``."""
        d = self.definition
        t, sub = d.type, d.subtype
        if t == "bit_mux":
            self.value = self._mux(self.catalog.bit_labels, text, "bit bus")
        elif t == "pos_mux":
            self.value = self._mux(self.catalog.pos_labels, text, "position")
        elif t == "time":
            self.value = self._ticks(text, 1 << 48)
        elif t in ("param", "write"):
            if sub == "enum":
                self.value = lookup_label(d.labels, text)
            elif sub == "time":
                self.value = self._ticks(text, 1 << 32)
            elif sub == "int":
                self.value = parse_int(text, -(1 << 31), (1 << 31) - 1)
            elif sub == "bit":
                self.value = parse_int(text, 0, 1)
            elif sub == "action":
                if text:
                    raise FieldError("Action takes no value")
                self.value += 1
            elif sub == "lut":
                self.value, self.text = parse_lut(text), text
            elif sub == "scalar":
                self.value = round((parse_float(text) - d.offset) / d.scale)
            else:
                top = d.max if d.max is not None else 0xFFFFFFFF
                self.value = parse_int(text, 0, top)
        else:
            raise FieldError("Field not writeable")

    def _mux(self, labels: list[str], text: str, kind: str) -> int:
        try:
            return labels.index(text)
        except ValueError:
            # server/bit_out.c, pos_mux.c
            raise FieldError(f"Invalid {kind} selection") from None

    def _ticks(self, text: str, limit: int) -> int:
        seconds = parse_float(text) * TIME_UNITS[self.units]
        ticks = round(seconds / TICK)
        if not 0 <= ticks < limit:
            raise FieldError("Time setting out of range")
        return ticks

    # -- attributes -----------------------------------------------------------

    def attributes(self) -> list[str]:
        """Attribute names, as ``BLOCK.FIELD.*?`` lists them."""
        t, sub = self.definition.type, self.definition.subtype
        if t == "bit_mux":
            return ["DELAY", "MAX_DELAY", "INFO"]
        if t == "time" or sub == "time":
            return ["UNITS", "RAW", "MIN", "INFO"] if t == "time" else ["UNITS", "RAW"]
        if t == "bit_out":
            return ["CAPTURE_WORD", "OFFSET", "INFO"]
        if t == "pos_out":
            return ["CAPTURE", "OFFSET", "SCALE", "UNITS", "SCALED", "INFO"]
        if t == "ext_out":
            return ["CAPTURE", "BITS", "INFO"] if sub == "bits" else ["CAPTURE", "INFO"]
        if t == "table":
            return [
                "MAX_LENGTH", "LENGTH", "B", "FIELDS", "ROW_WORDS",
                "QUEUED_LINES", "MODE", "INFO",
            ]  # fmt: skip
        if sub == "uint":
            return ["MAX", "INFO"]
        if sub == "scalar":
            return ["SCALE", "OFFSET", "UNITS", "RAW", "INFO"]
        return ["INFO"]

    def get_attr(self, attr: str) -> str | list[str]:
        d = self.definition
        if attr not in self.attributes():
            raise FieldError("No such attribute")
        if attr == "INFO":
            return d.type_line
        match d.type, attr:
            case "bit_mux", "DELAY":
                return str(self.delay)
            case "bit_mux", "MAX_DELAY":
                return str(MAX_DELAY)
            case (("time" | "param" | "write" | "read"), "UNITS") if (
                d.type == "time" or d.subtype == "time"
            ):
                return self.units
            case _, "RAW" if d.subtype == "scalar":
                return str(self.read_output(self.block, d.name))
            case _, "RAW":
                return str(self.value)
            case _, "MIN":
                return format_number(TICK / TIME_UNITS[self.units])
            case "bit_out", "CAPTURE_WORD":
                return f"PCAP.BITS{self.catalog.bit_bus[self.name] // 32}"
            case "bit_out", "OFFSET":
                return str(self.catalog.bit_bus[self.name] % 32)
            case (("pos_out" | "ext_out"), "CAPTURE"):
                return self.capture
            case "pos_out", "OFFSET":
                return format_number(self.offset)
            case "pos_out", "SCALE":
                return format_number(self.scale)
            case "pos_out", "UNITS":
                return self.pos_units
            case "pos_out", "SCALED":
                raw = self.read_output(self.block, d.name)
                return format_number(raw * self.scale + self.offset)
            case "ext_out", "BITS":
                assert d.quadrant is not None
                return quadrant_labels(self.catalog, d.quadrant)
            case "table", "MAX_LENGTH":
                return str(self.max_rows)
            case "table", "LENGTH":
                return str(len(self.table) // max(d.words, 1))
            case "table", "ROW_WORDS":
                return str(d.words)
            case "table", "QUEUED_LINES":
                return str(self.queued_lines())
            case "table", "MODE":
                return self.mode.value
            case "table", "B":
                raw = struct.pack(f"<{len(self.table)}I", *self.table)
                text = base64.b64encode(raw).decode()
                return [text[i : i + 76] for i in range(0, len(text), 76)]
            case "table", "FIELDS":
                return [f"{c.high}:{c.low} {c.name} {c.subtype}" for c in d.columns]
            case _, "MAX":
                return str(d.max if d.max is not None else 0xFFFFFFFF)
            case _, "SCALE":
                return format_number(d.scale)
            case _, "OFFSET":
                return format_number(d.offset)
            case _, "UNITS":
                return d.units
        raise FieldError("Attribute not readable")

    def put_attr(self, attr: str, text: str) -> None:
        d = self.definition
        if attr not in self.attributes():
            raise FieldError("No such attribute")
        if d.type == "bit_mux" and attr == "DELAY":
            delay = parse_int(text, 0, 0xFFFFFFFF)
            if delay > MAX_DELAY:
                raise FieldError("Delay too long")  # server/bit_out.c
            self.delay = delay
        elif attr == "UNITS" and (d.type == "time" or d.subtype == "time"):
            if text not in TIME_UNITS:
                raise FieldError("Invalid time units")
            self.units = text
        elif attr == "RAW" and (d.type == "time" or d.subtype == "time"):
            self.value = parse_int(text, 0, (1 << 48) - 1)
        elif attr == "CAPTURE" and d.type in ("pos_out", "ext_out"):
            labels = POS_CAPTURE if d.type == "pos_out" else EXT_CAPTURE
            if text not in labels:
                raise FieldError("Invalid capture option")
            self.capture = text
        elif d.type == "pos_out" and attr == "SCALE":
            self.scale = parse_float(text)
        elif d.type == "pos_out" and attr == "OFFSET":
            self.offset = parse_float(text)
        elif d.type == "pos_out" and attr == "UNITS":
            self.pos_units = text
        else:
            raise FieldError("Attribute not writeable")

    def enum_labels(self, attr: str | None) -> list[str]:
        """``*ENUMS.BLOCK.FIELD[.ATTR]?``"""
        d = self.definition
        if attr is None:
            if d.type == "bit_mux":
                return self.catalog.bit_labels
            if d.type == "pos_mux":
                return self.catalog.pos_labels
            if d.subtype == "enum":
                return list(d.labels.values())
        elif attr == "UNITS" and (d.type == "time" or d.subtype == "time"):
            return list(TIME_UNITS)
        elif attr == "CAPTURE" and d.type == "pos_out":
            return list(POS_CAPTURE)
        elif attr == "CAPTURE" and d.type == "ext_out":
            return list(EXT_CAPTURE)
        if attr is None:
            raise FieldError("Field is not an enumeration")
        raise FieldError("Attribute is not an enumeration")

    # -- tables ---------------------------------------------------------------

    @property
    def max_rows(self) -> int:
        block = self.catalog.block_of(self.block)
        return TABLE_MAX_LENGTH.get(block.name if block else "", 4096)

    @property
    def supports_streaming(self) -> bool:
        """Only the DMA-fed ("long") tables, SEQ's and PGEN's, stream."""
        block = self.catalog.block_of(self.block)
        return block is not None and block.name in TABLE_MAX_LENGTH

    def queued_lines(self) -> int:
        """``TABLE.QUEUED_LINES``: a fixed table's lines; for a streamed one,
        the lines written and not yet consumed by the FPGA, the one in use
        included (server/hardware.c ``hw_get_queued_words``)."""
        if self.mode is TableMode.FIXED:
            return len(self.table) // max(self.definition.words, 1)
        if self.mode is TableMode.INIT or self.read_queued is None:
            return 0
        return self.read_queued(self.block, self.definition.name)

    def put_table(
        self,
        words: list[int],
        streaming: bool = False,
        last: bool = False,
        completed: bool = False,
    ) -> bool:
        """Apply ``F<`` (fixed), ``F<<`` (streamed buffer) or ``F<<|`` (last
        streamed buffer) with ``words``, as server/table.c does.

        ``completed`` says the FPGA has finished (or aborted) the streamed
        table: appending is then refused until a reset (an empty ``F<``).
        Returns True when the write starts a new table, so the hardware table
        must be reset (TABLE_LENGTH = 0) before the words are sent; False for
        a buffer appended to a stream. Raises :class:`FieldError` with the
        server's text, leaving the mode unchanged, when refused.
        """
        if self.kind != "table":
            raise FieldError("Field is not a table")
        row = max(self.definition.words, 1)
        # The server's order: the data as it is read, then on completion the
        # rows, the streaming support, then the mode.
        if len(words) > self.max_rows * row:
            raise FieldError("Too many points for table")
        if len(words) % row:
            raise FieldError("Table write is not a whole number of rows")
        if streaming and not self.supports_streaming:
            raise FieldError("Table do not support streaming mode")
        if not words:
            if streaming:
                raise FieldError("Streaming table must have data")
            self._set_table(TableMode.INIT, [])
            return True
        new = (
            TableMode.FIXED
            if not streaming
            else TableMode.STREAMING_LAST
            if last
            else TableMode.STREAMING
        )
        match self.mode:
            case TableMode.STREAMING:
                if not streaming:
                    raise FieldError("Table is in streaming mode")
                if completed:
                    # The server has no state for this: the driver refuses the
                    # buffer. MODE keeps its value so the client can tell.
                    raise FieldError(TABLE_COMPLETED)
                self._set_table(new, [])
                return False
            case TableMode.STREAMING_LAST:
                raise FieldError("Last streaming table was sent")
        # INIT or FIXED. (table.c leaves FIXED + "<<|" in STREAMING; the
        # documented table, followed here, says STREAMING_LAST.)
        self._set_table(new, words if new is TableMode.FIXED else [])
        return True

    def _set_table(self, mode: TableMode, words: list[int]) -> None:
        # A streamed table is not shown to the user: F? is empty, LENGTH 0.
        self.mode, self.table = mode, words
        self.table_index += 1

    # -- change reporting -----------------------------------------------------

    def snapshot(self) -> Iterator[tuple[Group, str, str | None]]:
        """Every (group, key, value) this field contributes to ``*CHANGES``.

        A value of ``None`` marks a multi-line value (reported as ``KEY<``).
        """
        d, name = self.definition, self.name
        t, sub = d.type, d.subtype
        if t == "table":
            yield Group.TABLE, name, None
            return
        if t == "ext_out":
            yield Group.ATTR, f"{name}.CAPTURE", self.capture
            return
        if t == "bit_mux":
            yield Group.ATTR, f"{name}.DELAY", str(self.delay)
        if t == "time" or sub == "time":
            yield Group.ATTR, f"{name}.UNITS", self.units
        if t == "pos_out":
            yield Group.ATTR, f"{name}.CAPTURE", self.capture
            yield Group.ATTR, f"{name}.OFFSET", format_number(self.offset)
            yield Group.ATTR, f"{name}.SCALE", format_number(self.scale)
            yield Group.ATTR, f"{name}.UNITS", self.pos_units
        if t == "write" or sub == "action":
            return
        value = self.get()
        assert isinstance(value, str)
        group = {
            "bit_out": Group.BITS,
            "pos_out": Group.POSN,
            "read": Group.READ,
        }.get(t, Group.CONFIG)
        yield group, name, value


def quadrant_labels(catalog: Catalog, quadrant: int) -> list[str]:
    """The 32 bit-bus names captured by ``PCAP.BITS<quadrant>``."""
    names = [""] * 32
    for name, index in catalog.bit_bus.items():
        if index // 32 == quadrant:
            names[index % 32] = name
    return names


def parse_lut(text: str) -> int:
    """Parse a LUT function: a hex truth table, or an expression in A..E.

    Inputs follow the firmware's truth-table layout: A is the most significant
    address bit (A=0xFFFF0000, B=0xFF00FF00, C=0xF0F0F0F0, D=0xCCCCCCCC,
    E=0xAAAAAAAA). Operators: ``~`` (not), ``&``, ``|``, ``^``, ``=`` (xnor),
    ``=>`` (implies), ``?:`` is not supported.
    """
    stripped = text.strip()
    if stripped.lower().startswith("0x"):
        return parse_int(stripped, 0, 0xFFFFFFFF)
    names = {
        "A": 0xFFFF0000,
        "B": 0xFF00FF00,
        "C": 0xF0F0F0F0,
        "D": 0xCCCCCCCC,
        "E": 0xAAAAAAAA,
    }
    expr = stripped.replace("=>", " IMP ").replace("=", " XNOR ")
    for ch in "()~&|^":
        expr = expr.replace(ch, f" {ch} ")
    tokens = expr.split()
    pos = 0
    mask = 0xFFFFFFFF

    def atom() -> int:
        nonlocal pos
        if pos >= len(tokens):
            raise FieldError(f"Invalid LUT expression {text!r}")
        tok = tokens[pos]
        pos += 1
        if tok == "~":
            return ~atom() & mask
        if tok == "(":
            value = binary(0)
            if pos >= len(tokens) or tokens[pos] != ")":
                raise FieldError(f"Invalid LUT expression {text!r}")
            pos += 1
            return value
        if tok in names:
            return names[tok]
        if tok in ("0", "1"):
            return mask if tok == "1" else 0
        raise FieldError(f"Invalid LUT expression {text!r}")

    ops: list[tuple[str, Callable[[int, int], int]]] = [
        ("IMP", lambda a, b: (~a | b) & mask),
        ("|", lambda a, b: a | b),
        ("^", lambda a, b: a ^ b),
        ("XNOR", lambda a, b: ~(a ^ b) & mask),
        ("&", lambda a, b: a & b),
    ]

    def binary(level: int) -> int:
        nonlocal pos
        if level == len(ops):
            return atom()
        left = binary(level + 1)
        while pos < len(tokens) and tokens[pos] == ops[level][0]:
            pos += 1
            left = ops[level][1](left, binary(level + 1))
        return left

    value = binary(0)
    if pos != len(tokens):
        raise FieldError(f"Invalid LUT expression {text!r}")
    return value
