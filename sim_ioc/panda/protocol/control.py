"""The control protocol (TCP 8888), without sockets.

:class:`ControlParser` turns received bytes into requests (a command line, or
a table write with its data lines); :func:`respond` answers one request
against a :class:`~sim_ioc.panda.device.SimulatedPanda`, returning the reply
text. Replies follow the server: ``OK``, ``OK =value``, ``!line``... ``.``
for multi-line values, or ``ERR message``. An error never closes the
connection.

Besides the PandA's own commands, the simulator answers ``*SIM.`` commands to
steer its world and to inject faults (documented in :data:`SIM_HELP` and
:mod:`~sim_ioc.panda.world_control`); a real PandA answers them with ``ERR``.

No request, however malformed, goes unanswered or upsets the connection:
lines and tables are bounded (:data:`MAX_LINE`, :data:`MAX_TABLE_LINES`,
:data:`MAX_TABLE_BYTES`), and :func:`respond` turns every failure into
``ERR <why>``. (The real server, whose lines are at most 1023 bytes, drops
the connection on a longer one: config_server.c, buffered_file.c. The
simulator answers ``ERR`` and carries on, so a bad client costs one reply.)
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..device import IDN, MetadataKind, SimulatedPanda
from ..fields import FieldError, Group
from ..world_control import apply_sim_command, motor_fault

log = logging.getLogger(__name__)

# BLOCK.FIELD< <B << <<B <<| <<|B (server/config_server.c reads "|" before
# "B"; "<<B|", which this parser used to take, is still accepted).
_TABLE_WRITE = re.compile(r"^([\w*]+)\.(\w+)<(<?)(\|?)(B?)(\|?)$")

SIM_HELP = (
    "*SIM.MOVE.<axis>=<target> <speed>  move an axis at constant speed (units/s)",
    "*SIM.POSITION.<axis>=<position>   set an axis position",
    "*SIM.SIGNAL.FMC_IN<ch>=<kind> [param=value ...]  what an ADC channel sees:",
    "    constant|ramp|sine|noise|axis (see docs/simulator.md)",
    "*SIM.MOTOR_FAULT.<axis>=<fault>   fault the axis's motor:",
    "    none|stall|stall_reported|high_limit|low_limit (see sim_ioc.motor)",
    "*SIM.MOTOR_FAULT.<axis>?          the fault on the axis's motor",
    "*SIM.TICK?                        the simulation's current tick",
    "*SIM.DROP_CONNECTIONS=            reset every other control and data connection",
    "*SIM.CONNECTIONS?                 open connections: <control> <data>",
)


@dataclass(frozen=True)
class Command:
    """A single-line request."""

    line: str


@dataclass(frozen=True)
class TableWrite:
    """``BLOCK.FIELD<`` and its lines: ``<<`` a streamed buffer (``append``),
    ``<<|`` the last one (``last``), ``B`` base64 data."""

    block: str
    field: str
    append: bool
    base64: bool
    lines: tuple[str, ...]
    last: bool = False


@dataclass(frozen=True)
class Malformed:
    """A request that could not be read: answered ``ERR <why>``."""

    why: str


Request = Command | TableWrite | Malformed

#: Longest line (bytes, without its newline) the parser keeps. Real commands
#: are far shorter (the real server allows 1023 bytes) and so are table
#: lines: one word a line in ASCII, 76 characters a line in base64 (as
#: ``TABLE.B?`` gives them and ``pandablocks save/load`` send them back).
#: Anything longer is discarded as it arrives and answered with one ``ERR``.
MAX_LINE = 64 * 1024
#: Most data lines of one table write: the largest table, SEQ's 4096 rows of
#: 4 words, one word a line, twice over. Past it the rest of the table is
#: discarded and the write answered ``ERR``.
MAX_TABLE_LINES = 2 * 4096 * 4
#: Most bytes of data lines in one table write (the largest real table is
#: under 200 kB in ASCII): with :data:`MAX_TABLE_LINES` it bounds the memory
#: one table write holds, which lines alone (up to :data:`MAX_LINE` each)
#: would not.
MAX_TABLE_BYTES = 4 * 1024 * 1024


@dataclass
class _PendingTable:
    """A table write whose data lines are still arriving."""

    block: str
    name: str  # the field
    append: bool
    base64: bool
    last: bool = False
    lines: list[str] = field(default_factory=list)
    size: int = 0  # bytes in `lines`
    error: str | None = None  # set once the write is refused: lines discarded


@dataclass
class ControlParser:
    """Split a byte stream into requests.

    The work per :meth:`feed` is linear in the bytes fed: only the start of
    an unfinished line is kept (at most :data:`MAX_LINE` bytes), and only new
    data is searched for newlines.
    """

    _partial: bytearray = field(default_factory=bytearray)
    _overlong: bool = False  # the unfinished line is past MAX_LINE: discarding
    _table: _PendingTable | None = None

    def feed(self, data: bytes) -> list[Request]:
        out: list[Request] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._overlong or len(self._partial) + end - start > MAX_LINE:
                self._line(None, out)
            elif self._partial:
                self._partial += data[start:end]
                self._line(bytes(self._partial), out)
            else:
                self._line(data[start:end], out)
            self._partial.clear()
            self._overlong = False
            start = end + 1
        if not self._overlong:
            if len(self._partial) + len(data) - start > MAX_LINE:
                self._overlong = True
                self._partial.clear()
            else:
                self._partial += data[start:]
        return out

    def _line(self, raw: bytes | None, out: list[Request]) -> None:
        """Handle one whole line (None: one longer than MAX_LINE)."""
        line, problem = "", None
        if raw is None:
            problem = f"Line longer than {MAX_LINE} bytes"
        else:
            try:
                line = raw.decode().rstrip("\r")
            except UnicodeDecodeError:
                problem = "Line is not UTF-8 text"
        if self._table is not None:
            self._table_line(self._table, line, problem, out)
        elif problem is not None:
            out.append(Malformed(problem))
        elif m := _TABLE_WRITE.match(line):
            append, last = bool(m.group(3)), bool(m.group(4) or m.group(6))
            self._table = _PendingTable(
                m.group(1), m.group(2), append, bool(m.group(5)), last
            )
            if last and not append:
                # "|" only follows "<<"; the server reads and drops the data.
                self._table.error = "Unexpected character after input"
        else:
            out.append(Command(line))

    def _table_line(
        self, table: _PendingTable, line: str, problem: str | None, out: list[Request]
    ) -> None:
        """A data line of ``table``, or the blank line that ends it."""
        if not line and problem is None:
            if table.error is not None:
                out.append(Malformed(table.error))
            else:
                out.append(
                    TableWrite(
                        table.block,
                        table.name,
                        table.append,
                        table.base64,
                        tuple(table.lines),
                        table.last,
                    )
                )
            self._table = None
            return
        if table.error is not None:
            return  # refused already: the rest is read and dropped
        if problem is None and len(table.lines) >= MAX_TABLE_LINES:
            problem = f"Table longer than {MAX_TABLE_LINES} lines"
        if problem is None and table.size + len(line) > MAX_TABLE_BYTES:
            problem = f"Table longer than {MAX_TABLE_BYTES} bytes"
        if problem is not None:
            table.error = problem
            table.lines.clear()
            return
        table.lines.append(line)
        table.size += len(line)


class Connections(Protocol):
    """The server's open connections, as one control connection sees them
    (``*SIM.DROP_CONNECTIONS=``, ``*SIM.CONNECTIONS?``)."""

    def drop_others(self) -> None:
        """Reset every open control and data connection but this one."""
        ...

    def counts(self) -> tuple[int, int]:
        """How many control and data connections are open."""
        ...


@dataclass
class Session:
    """Per-connection state: what ``*CHANGES`` has already reported, and the
    server's connections (None without a server: no sockets to drop)."""

    reported: dict[str, str | None] = field(default_factory=dict)
    connections: Connections | None = None


def ok(value: str | None = None) -> str:
    return "OK\n" if value is None else f"OK ={value}\n"


def multiline(lines: list[str]) -> str:
    return "".join(f"!{line}\n" for line in lines) + ".\n"


def respond(panda: SimulatedPanda, session: Session, request: Request) -> str:
    """Answer one request; never raises: anything that fails is ``ERR <why>``."""
    try:
        if isinstance(request, Malformed):
            raise FieldError(request.why)
        if isinstance(request, TableWrite):
            return _table_write(panda, request)
        return _command(panda, session, request.line.strip())
    except FieldError as e:
        return f"ERR {e}\n"
    except Exception as e:
        # A bug, not bad input; one connection's request must still not
        # take its handler (and the client's next replies) down with it.
        log.exception("Control request %r failed", _text(request)[:80])
        return f"ERR internal error: {type(e).__name__}: {e}".replace("\n", " ") + "\n"


def _text(request: Request) -> str:
    """The request as the client sent it (its first line, for a table)."""
    match request:
        case Command(line):
            return line
        case TableWrite():
            mode = (
                ("<" if request.append else "")
                + ("|" if request.last else "")
                + ("B" if request.base64 else "")
            )
            return f"{request.block}.{request.field}<{mode}"
        case Malformed(why):
            return why


def _table_write(panda: SimulatedPanda, req: TableWrite) -> str:
    if req.block.startswith("*"):
        return _system_table_write(panda, req)
    # The target first, as the server checks it before reading the data.
    panda.lookup(req.block, req.field)
    if req.base64:
        try:
            raw = base64.b64decode("".join(req.lines))
        except binascii.Error as e:
            raise FieldError(f"Invalid base64 table data: {e}") from None
        if len(raw) % 4:
            raise FieldError("Base64 table data not a whole number of words")
        words = list(struct.unpack(f"<{len(raw) // 4}I", raw))
    else:
        try:
            words = [int(w, 0) & 0xFFFFFFFF for line in req.lines for w in line.split()]
        except ValueError:
            raise FieldError("Table data not numbers") from None
    panda.put_table(req.block, req.field, words, req.append, req.last)
    return ok()


def _system_table_write(panda: SimulatedPanda, req: TableWrite) -> str:
    """``*METADATA.KEY<``: the only system command taking lines, as text
    (server/system_command.c)."""
    if req.block != "*METADATA":
        raise FieldError("Unknown command" if req.block != "*PCAP" else "Not a table")
    if req.append:
        raise FieldError("Streaming mode not supported")
    if req.base64:
        raise FieldError("Binary writes not supported")
    panda.put_metadata_lines(req.field, list(req.lines))
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
        raise FieldError("Unknown command")
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
    raise FieldError("Unknown command")


def _list_fields(panda: SimulatedPanda, target: str) -> str:
    if "." in target:
        block, name = target.split(".", 1)
        return multiline(panda.lookup(block, name).attributes())
    blk = panda.catalog.block_of(target)
    if blk is None:
        raise FieldError("No such block")
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
            return multiline(_changes(panda, session, _change_group(rest)))
        case "*METADATA":
            if rest == "*":
                return multiline(list(panda.metadata))
            value = panda.get_metadata(rest)
            return multiline(value) if isinstance(value, list) else ok(value)
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
            if rest == "CONNECTIONS":
                n_control, n_data = _connections(session).counts()
                return ok(f"{n_control} {n_data}")
            if rest == "HELP":
                return multiline(list(SIM_HELP))
            if rest.partition(".")[0] == "MOTOR_FAULT":
                return ok(motor_fault(panda, rest.partition(".")[2]))
    raise FieldError("Unknown command")


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
        case "*PCAP", _:
            raise FieldError("Invalid *PCAP field")
        case "*CHANGES", _:
            _reset_changes(panda, session, _change_group(rest), value)
            return ok()
        case "*CAPTURE", "":
            for f in panda.fields.values():
                if f.kind in ("pos_out", "ext_out"):
                    f.capture = "No"
            return ok()
        case "*METADATA", key:
            panda.put_metadata(key, value)
            return ok()
        case "*SIM", "DROP_CONNECTIONS":
            if value:
                raise FieldError("*SIM.DROP_CONNECTIONS takes no value")
            _connections(session).drop_others()
            return ok()
        case "*SIM", _:
            apply_sim_command(panda, rest, value)
            return ok()
    raise FieldError("Unknown command")


def _connections(session: Session) -> Connections:
    if session.connections is None:
        raise FieldError("No connections here (not served on a socket)")
    return session.connections


def _describe(panda: SimulatedPanda, rest: str) -> str:
    parts = rest.split(".")
    if len(parts) == 1:
        blk = panda.catalog.blocks.get(parts[0])
        if blk is None:
            raise FieldError("No such block")
        return blk.description
    block, name = parts[0], parts[1]
    if name.endswith("[]") and len(parts) == 3:
        d = panda.definition(block, name[:-2])
        for c in d.columns:
            if c.name == parts[2]:
                return c.description
        raise FieldError("Table sub-field not found")
    return panda.definition(block, name).description


def _enums(panda: SimulatedPanda, rest: str) -> list[str]:
    parts = rest.split(".")
    if len(parts) < 2:
        raise FieldError("Missing field name")
    block, name = parts[0], parts[1]
    if name.endswith("[]") and len(parts) == 3:
        d = panda.definition(block, name[:-2])
        for c in d.columns:
            if c.name == parts[2]:
                if c.subtype != "enum":
                    raise FieldError("Table sub-field is not an enumeration")
                return list(c.labels.values())
        raise FieldError("Table sub-field not found")
    d = panda.definition(block, name)
    # Enumerations are per field type; ask the first instance.
    blk = panda.catalog.block_of(block)
    assert blk is not None
    f = panda.fields[f"{blk.instance_names()[0]}.{d.name}"]
    return f.enum_labels(parts[2] if len(parts) > 2 else None)


def _change_group(rest: str) -> Group | None:
    """The group of ``*CHANGES[.GROUP]``; None for all of them."""
    if not rest:
        return None
    try:
        return Group(f".{rest}")
    except ValueError:
        raise FieldError("Unknown changes selection") from None


def _current(
    panda: SimulatedPanda, group: Group | None
) -> Iterator[tuple[str, str, str]]:
    """(key, change token, report line) of everything ``group`` reports.

    Multi-line values are reported as ``KEY<`` when their content changes.
    Constant metadata is never reported: the server gives it change index
    zero to keep it out of every change set (server/metadata.c).
    """
    for f in panda.fields.values():
        for g, key, value in f.snapshot():
            if group is not None and g is not group:
                continue
            if value is None:
                # Every accepted write counts, as the server's update_index.
                yield key, str(f.table_index), f"{key}<"
            else:
                yield key, value, f"{key}={value}"
    if group in (None, Group.METADATA):
        for key, entry in panda.metadata.items():
            name = f"*METADATA.{key}"
            match entry.kind:
                case MetadataKind.STRING:
                    yield name, str(entry.value), f"{name}={entry.value}"
                case MetadataKind.MULTILINE:
                    yield name, repr(entry.value), f"{name}<"
                case MetadataKind.CONSTANT:
                    pass


def _changes(panda: SimulatedPanda, session: Session, group: Group | None) -> list[str]:
    lines: list[str] = []
    for key, token, line in _current(panda, group):
        if session.reported.get(key) != token:
            session.reported[key] = token
            lines.append(line)
    return lines


def _reset_changes(
    panda: SimulatedPanda, session: Session, group: Group | None, option: str
) -> None:
    """``*CHANGES[.GROUP]=[S|E]``: ``E`` (the default) marks everything as
    reported, ``S`` makes the next ``*CHANGES?`` report everything
    (server/system_command.c, fields.c)."""
    if option not in ("", "E", "S"):
        raise FieldError("Invalid reset option")
    for key, token, _ in _current(panda, group):
        if option == "S":
            session.reported.pop(key, None)
        else:
            session.reported[key] = token


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
    raise FieldError("Invalid *PCAP field")
