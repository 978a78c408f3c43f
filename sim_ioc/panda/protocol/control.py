"""The control protocol (TCP 8888), without sockets.

:class:`ControlParser` turns received bytes into requests (a command line, or
a table write with its data lines); :func:`respond` answers one request
against a :class:`~sim_ioc.panda.device.SimulatedPanda`, returning the reply
text. Replies follow the server: ``OK``, ``OK =value``, ``!line``... ``.``
for multi-line values, or ``ERR message``. An error never closes the
connection.

Besides the PandA's own commands, the simulator answers ``*SIM.`` commands to
steer its world (documented in :data:`SIM_HELP`); a real PandA answers them
with ``ERR``.
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass, field

from ..device import IDN, SimulatedPanda
from ..fields import FieldError, Group
from ..world_control import apply_sim_command

_TABLE_WRITE = re.compile(r"^([\w*]+)\.(\w+)<(<?)(B?)(\|?)$")

SIM_HELP = (
    "*SIM.MOVE.<axis>=<target> <speed>  move an axis at constant speed (units/s)",
    "*SIM.POSITION.<axis>=<position>   set an axis position",
    "*SIM.SIGNAL.FMC_IN<ch>=<kind> [param=value ...]  what an ADC channel sees:",
    "    constant|ramp|sine|noise|axis (see docs/simulator.md)",
    "*SIM.TICK?                        the simulation's current tick",
)


@dataclass(frozen=True)
class Command:
    """A single-line request."""

    line: str


@dataclass(frozen=True)
class TableWrite:
    """``BLOCK.FIELD<`` (``<<`` append, ``B`` base64, ``|`` last) and its lines."""

    block: str
    field: str
    append: bool
    base64: bool
    lines: tuple[str, ...]


Request = Command | TableWrite


@dataclass
class ControlParser:
    """Split a byte stream into requests."""

    _buffer: bytes = b""
    _table: tuple[str, str, bool, bool] | None = None
    _lines: list[str] = field(default_factory=list)

    def feed(self, data: bytes) -> list[Request]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        out: list[Request] = []
        for raw in lines:
            line = raw.decode(errors="replace").rstrip("\r")
            if self._table is not None:
                if line:
                    self._lines.append(line)
                    continue
                block, name, append, b64 = self._table
                out.append(TableWrite(block, name, append, b64, tuple(self._lines)))
                self._table, self._lines = None, []
                continue
            if m := _TABLE_WRITE.match(line):
                self._table = (
                    m.group(1),
                    m.group(2),
                    bool(m.group(3)),
                    bool(m.group(4)),
                )
                continue
            out.append(Command(line))
        return out


@dataclass
class Session:
    """Per-connection state: what ``*CHANGES`` has already reported."""

    reported: dict[str, str | None] = field(default_factory=dict)


def ok(value: str | None = None) -> str:
    return "OK\n" if value is None else f"OK ={value}\n"


def multiline(lines: list[str]) -> str:
    return "".join(f"!{line}\n" for line in lines) + ".\n"


def respond(panda: SimulatedPanda, session: Session, request: Request) -> str:
    """Answer one request; never raises for bad input."""
    try:
        if isinstance(request, TableWrite):
            return _table_write(panda, request)
        return _command(panda, session, request.line.strip())
    except FieldError as e:
        return f"ERR {e}\n"


def _table_write(panda: SimulatedPanda, req: TableWrite) -> str:
    if req.base64:
        raw = base64.b64decode("".join(req.lines))
        if len(raw) % 4:
            raise FieldError("Base64 table data not a whole number of words")
        words = list(struct.unpack(f"<{len(raw) // 4}I", raw))
    else:
        try:
            words = [int(w, 0) & 0xFFFFFFFF for line in req.lines for w in line.split()]
        except ValueError:
            raise FieldError("Table data not numbers") from None
    panda.put_table(req.block, req.field, words, req.append)
    return ok()


def _split(target: str) -> tuple[str, str, str | None]:
    parts = target.split(".")
    if len(parts) == 2:
        return parts[0], parts[1], None
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise FieldError(f"Malformed field name {target!r}")


def _command(panda: SimulatedPanda, session: Session, line: str) -> str:
    if not line:
        raise FieldError("Empty command")
    if line.endswith("?"):
        target = line[:-1]
        if target.startswith("*"):
            return _system_get(panda, session, target)
        if target.endswith(".*"):
            return _list_fields(panda, target[:-2])
        block, name, attr = _split(target)
        f = panda.lookup(block, name)
        value = f.get() if attr is None else f.get_attr(attr)
        return multiline(value) if isinstance(value, list) else ok(value)
    if "=" in line:
        target, _, value = line.partition("=")
        if target.startswith("*"):
            return _system_put(panda, session, target, value)
        block, name, attr = _split(target)
        panda.put(block, name, attr, value)
        return ok()
    raise FieldError(f"Unknown command {line!r}")


def _list_fields(panda: SimulatedPanda, target: str) -> str:
    if "." in target:
        block, name = target.split(".", 1)
        return multiline(panda.lookup(block, name).attributes())
    blk = panda.catalog.block_of(target)
    if blk is None:
        raise FieldError(f"No such block {target}")
    return multiline([f"{f.name} {f.index} {f.type_line}" for f in blk.fields.values()])


def _system_get(panda: SimulatedPanda, session: Session, target: str) -> str:
    head, _, rest = target.partition(".")
    match head:
        case "*IDN":
            return ok(IDN)
        case "*BLOCKS":
            return multiline(
                [f"{b.name} {b.number}" for b in panda.catalog.blocks.values()]
            )
        case "*DESC":
            return ok(_describe(panda, rest))
        case "*ENUMS":
            return multiline(_enums(panda, rest))
        case "*CHANGES":
            group = Group(f".{rest}") if rest else None
            return multiline(_changes(panda, session, group))
        case "*METADATA":
            if rest == "*":
                return multiline(list(panda.metadata))
            if rest not in panda.metadata:
                raise FieldError(f"No such metadata key {rest}")
            return ok(panda.metadata[rest])
        case "*PCAP":
            return ok(_pcap_status(panda, rest))
        case "*CAPTURE":
            if rest == "*":
                return multiline(
                    [
                        f.name
                        for f in panda.fields.values()
                        if f.kind in ("pos_out", "ext_out")
                    ]
                )
            return multiline([f"{r.name} {r.mode}" for r in panda.captured_fields()])
        case "*POSITIONS":
            return multiline(list(panda.catalog.pos_bus))
        case "*WHO":
            return multiline([])
        case "*SIM":
            if rest == "TICK":
                return ok(str(panda.now))
            if rest == "HELP":
                return multiline(list(SIM_HELP))
    raise FieldError(f"Unknown command {target}?")


def _system_put(
    panda: SimulatedPanda, session: Session, target: str, value: str
) -> str:
    head, _, rest = target.partition(".")
    match head, rest:
        case "*PCAP", "ARM":
            panda.arm()
            return ok()
        case "*PCAP", "DISARM":
            panda.disarm()
            return ok()
        case "*CHANGES", _:
            # Forget what was reported: the next *CHANGES? reports everything.
            session.reported.clear()
            return ok()
        case "*CAPTURE", "":
            for f in panda.fields.values():
                if f.kind in ("pos_out", "ext_out"):
                    f.capture = "No"
            return ok()
        case "*METADATA", "APPNAME" if value == panda.metadata["APPNAME"]:
            # A constant: restoring a saved layout writes it back unchanged.
            return ok()
        case "*METADATA", key if key in panda.metadata and key != "APPNAME":
            panda.metadata[key] = value
            return ok()
        case "*SIM", _:
            apply_sim_command(panda, rest, value)
            return ok()
    raise FieldError(f"Unknown command {target}=")


def _describe(panda: SimulatedPanda, rest: str) -> str:
    parts = rest.split(".")
    if len(parts) == 1:
        blk = panda.catalog.blocks.get(parts[0])
        if blk is None:
            raise FieldError(f"No such block {parts[0]}")
        return blk.description
    block, name = parts[0], parts[1]
    if name.endswith("[]") and len(parts) == 3:
        d = panda.definition(block, name[:-2])
        for c in d.columns:
            if c.name == parts[2]:
                return c.description
        raise FieldError(f"No such table column {parts[2]}")
    return panda.definition(block, name).description


def _enums(panda: SimulatedPanda, rest: str) -> list[str]:
    parts = rest.split(".")
    if len(parts) < 2:
        raise FieldError("*ENUMS needs BLOCK.FIELD")
    block, name = parts[0], parts[1]
    if name.endswith("[]") and len(parts) == 3:
        d = panda.definition(block, name[:-2])
        for c in d.columns:
            if c.name == parts[2] and c.subtype == "enum":
                return list(c.labels.values())
        raise FieldError(f"No enumerated table column {parts[2]}")
    d = panda.definition(block, name)
    # Enumerations are per field type; ask the first instance.
    blk = panda.catalog.block_of(block)
    assert blk is not None
    f = panda.fields[f"{blk.instance_names()[0]}.{d.name}"]
    return f.enum_labels(parts[2] if len(parts) > 2 else None)


def _changes(panda: SimulatedPanda, session: Session, group: Group | None) -> list[str]:
    lines: list[str] = []
    for f in panda.fields.values():
        for g, key, value in f.snapshot():
            if group is not None and g is not group:
                continue
            if value is None:
                # Multi-line values: report when the content changed.
                token = repr(f.table)
                if session.reported.get(key) != token:
                    session.reported[key] = token
                    lines.append(f"{key}<")
            elif session.reported.get(key) != value:
                session.reported[key] = value
                lines.append(f"{key}={value}")
    if group in (None, Group.METADATA):
        for key, value in panda.metadata.items():
            name = f"*METADATA.{key}"
            if session.reported.get(name) != value:
                session.reported[name] = value
                lines.append(f"{name}={value}")
    return lines


def _pcap_status(panda: SimulatedPanda, what: str) -> str:
    cap = panda.capture
    match what:
        case "CAPTURED":
            return str(panda.captured)
        case "STATUS":
            if cap is None or cap.ended:
                return "Idle"
            return "Busy"
        case "COMPLETION":
            if cap is None:
                return "Ok"
            return "Busy" if not cap.ended else cap.end_reason
    raise FieldError(f"Unknown command *PCAP.{what}?")
