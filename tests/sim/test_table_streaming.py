"""Streaming table writes (``F<<``, ``F<<|``) as PandABlocks-server takes
them: MODE transitions, DMA buffers to the SEQ model, QUEUED_LINES, errors."""

from __future__ import annotations

import base64
import dataclasses
import struct

import pytest
from pandablocks._exchange import Exchange
from pandablocks.commands import Append

from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.panda.fields import FieldError
from sim_ioc.panda.protocol.control import ControlParser, Session, respond


@pytest.fixture
def panda() -> SimulatedPanda:
    return SimulatedPanda()


def ask(panda: SimulatedPanda, text: str) -> list[str]:
    session = Session()
    return [respond(panda, session, r) for r in ControlParser().feed(text.encode())]


def one(panda: SimulatedPanda, text: str) -> str:
    [reply] = ask(panda, text)
    return reply


def line(time1: int, time2: int, outa1: int = 1) -> list[int]:
    """A SEQ line run once, immediately: OUTA ``outa1`` for time1, 0 for time2."""
    return [1 | outa1 << 20, 0, time1, time2]


def write(field: str, op: str, rows: list[list[int]]) -> str:
    body = "".join(" ".join(map(str, r)) + "\n" for r in rows)
    return f"{field}{op}\n{body}\n"


ROW = [line(1, 1)]


def mode(panda: SimulatedPanda) -> str:
    return one(panda, "SEQ1.TABLE.MODE?\n")


@pytest.mark.parametrize(
    ("setup", "op", "rows", "reply", "after"),
    [
        # INIT
        ([], "<", ROW, "OK", "FIXED"),
        ([], "<<", ROW, "OK", "STREAMING"),
        ([], "<<|", ROW, "OK", "STREAMING_LAST"),
        ([], "<", [], "OK", "INIT"),
        # FIXED
        (["<"], "<", ROW, "OK", "FIXED"),
        (["<"], "<<", ROW, "OK", "STREAMING"),
        (["<"], "<<|", ROW, "OK", "STREAMING_LAST"),
        (["<"], "<", [], "OK", "INIT"),
        # STREAMING
        (["<<"], "<", ROW, "ERR Table is in streaming mode", "STREAMING"),
        (["<<"], "<<", ROW, "OK", "STREAMING"),
        (["<<"], "<<|", ROW, "OK", "STREAMING_LAST"),
        (["<<"], "<", [], "OK", "INIT"),
        # STREAMING_LAST
        (["<<|"], "<", ROW, "ERR Last streaming table was sent", "STREAMING_LAST"),
        (["<<|"], "<<", ROW, "ERR Last streaming table was sent", "STREAMING_LAST"),
        (["<<|"], "<<|", ROW, "ERR Last streaming table was sent", "STREAMING_LAST"),
        (["<<|"], "<", [], "OK", "INIT"),
        # Empty streamed writes, whatever the mode.
        ([], "<<", [], "ERR Streaming table must have data", "INIT"),
        (["<"], "<<|", [], "ERR Streaming table must have data", "FIXED"),
    ],
)
def test_mode_transitions(
    panda: SimulatedPanda,
    setup: list[str],
    op: str,
    rows: list[list[int]],
    reply: str,
    after: str,
) -> None:
    assert mode(panda) == "OK =INIT\n"
    for previous in setup:
        assert one(panda, write("SEQ1.TABLE", previous, ROW)) == "OK\n"
    assert one(panda, write("SEQ1.TABLE", op, rows)) == reply + "\n"
    assert mode(panda) == f"OK ={after}\n"


def test_other_rejections(panda: SimulatedPanda) -> None:
    assert one(panda, "SEQ1.TABLE<<\n1 0 5\n\n") == (
        "ERR Table write is not a whole number of rows\n"
    )
    too_long = [line(1, 1)] * 4097
    assert one(panda, write("SEQ1.TABLE", "<<", too_long)) == (
        "ERR Too many points for table\n"
    )
    # "|" only after "<<": the data is read and dropped.
    assert ask(panda, "SEQ1.TABLE<|\n1 0 1 1\n\n*IDN?\n")[0] == (
        "ERR Unexpected character after input\n"
    )
    assert mode(panda) == "OK =INIT\n"
    assert one(panda, "SEQ1.TABLE.*?\n").splitlines()[5:7] == [
        "!QUEUED_LINES",
        "!MODE",
    ]


def test_base64_streaming_and_the_server_flag_order(panda: SimulatedPanda) -> None:
    data = base64.b64encode(struct.pack("<4I", *line(3, 3))).decode()
    assert one(panda, f"SEQ1.TABLE<<B\n{data}\n\n") == "OK\n"
    assert one(panda, f"SEQ1.TABLE<<|B\n{data}\n\n") == "OK\n"  # as the server
    assert mode(panda) == "OK =STREAMING_LAST\n"
    assert one(panda, "SEQ1.TABLE.QUEUED_LINES?\n") == "OK =2\n"


def test_pandablocks_append_is_understood(panda: SimulatedPanda) -> None:
    words = [str(w) for w in line(2, 2) + line(4, 4)]
    sent: list[str] = []
    for last in (False, True):
        exchange = next(Append("SEQ1.TABLE", words, last).execute((4, 0)))
        assert isinstance(exchange, Exchange)
        sent.append(exchange.to_send[0])
        assert ask(panda, "\n".join(exchange.to_send) + "\n") == ["OK\n"]
    assert sent == ["SEQ1.TABLE<<", "SEQ1.TABLE<<|"]
    assert mode(panda) == "OK =STREAMING_LAST\n"
    assert one(panda, "SEQ1.TABLE.QUEUED_LINES?\n") == "OK =4\n"


def test_streamed_table_is_hidden_and_reported_changed(panda: SimulatedPanda) -> None:
    session = Session()
    parser = ControlParser()

    def changes() -> str:
        [reply] = [
            respond(panda, session, r) for r in parser.feed(b"*CHANGES.TABLE?\n")
        ]
        return reply

    changes()
    assert one(panda, write("SEQ1.TABLE", "<", ROW)) == "OK\n"
    assert "!SEQ1.TABLE<" in changes()
    assert one(panda, "SEQ1.TABLE.QUEUED_LINES?\n") == "OK =1\n"
    for op in ("<<", "<<"):
        assert one(panda, write("SEQ1.TABLE", op, ROW * 2)) == "OK\n"
        # Every write is a change, even with the same (hidden) content.
        assert changes() == "!SEQ1.TABLE<\n.\n"
    assert changes() == ".\n"
    assert ask(panda, "SEQ1.TABLE?\nSEQ1.TABLE.LENGTH?\n") == [".\n", "OK =0\n"]
    assert one(panda, "SEQ1.TABLE.QUEUED_LINES?\n") == "OK =4\n"


def test_only_dma_tables_stream(panda: SimulatedPanda) -> None:
    # Every table of this firmware is a DMA one: check the rule on a copy of
    # SEQ's table put in a block that is not.
    f = panda.lookup("SEQ1", "TABLE")
    assert f.supports_streaming
    other = dataclasses.replace(f, block="PCAP")
    assert not other.supports_streaming
    with pytest.raises(FieldError, match=r"^Table do not support streaming mode$"):
        other.put_table(line(1, 1), streaming=True)
    other.put_table(line(1, 1))  # a fixed write is fine
    assert other.mode == "FIXED"


def watch_outa(panda: SimulatedPanda) -> list[tuple[int, int]]:
    log: list[tuple[int, int]] = []
    index = panda.catalog.bit_bus["SEQ1.OUTA"]
    panda.engine.listen_bit(index, lambda ts, i, v: log.append((ts, v)))
    return log


def expected_edges(start: int, lines: list[list[int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    t = start
    for _, _, time1, time2 in lines:
        out += [(t, 1), (t + time1, 0)]
        t += time1 + time2
    return out


def test_three_buffers_appended_while_running(panda: SimulatedPanda) -> None:
    log = watch_outa(panda)
    first = [line(10, 5), line(20, 5), line(7, 3)]
    second = [line(4, 6), line(30, 2)]
    third = [line(9, 1), line(5, 5), line(1, 8), line(12, 4)]
    assert one(panda, write("SEQ1.TABLE", "<<", first)) == "OK\n"
    panda.advance(panda.now + 20)
    assert one(panda, "SEQ1.STATE?\n") == "OK =WAIT_ENABLE\n"
    assert one(panda, "SEQ1.ENABLE=ONE\n") == "OK\n"
    panda.advance(panda.now + 5)
    assert one(panda, "SEQ1.ACTIVE?\n") == "OK =1\n"
    assert one(panda, "SEQ1.TABLE.QUEUED_LINES?\n") == "OK =3\n"
    assert one(panda, write("SEQ1.TABLE", "<<", second)) == "OK\n"
    assert one(panda, "SEQ1.TABLE.QUEUED_LINES?\n") == "OK =5\n"
    panda.advance(panda.now + 30)  # into the second line
    assert one(panda, "SEQ1.TABLE.QUEUED_LINES?\n") == "OK =4\n"
    assert one(panda, write("SEQ1.TABLE", "<<|", third)) == "OK\n"
    queued = []
    for _ in range(30):
        queued.append(int(one(panda, "SEQ1.TABLE.QUEUED_LINES?\n")[4:]))
        panda.advance(panda.now + 10)
    assert queued[0] == 8 and queued[-1] == 0
    assert queued == sorted(queued, reverse=True) and len(set(queued)) > 5
    assert log == expected_edges(log[0][0], first + second + third)
    assert ask(panda, "SEQ1.ACTIVE?\nSEQ1.HEALTH?\nSEQ1.TABLE.MODE?\n") == [
        "OK =0\n",
        "OK =OK\n",
        "OK =STREAMING_LAST\n",
    ]
    # The table is over: only a reset is accepted.
    assert one(panda, write("SEQ1.TABLE", "<<", ROW)) == (
        "ERR Last streaming table was sent\n"
    )
    assert one(panda, "SEQ1.TABLE<\n\n") == "OK\n"
    assert panda.table_buffers() == 0


def test_underrun_stops_the_sequencer_until_reset(panda: SimulatedPanda) -> None:
    log = watch_outa(panda)
    first = [line(10, 5), line(6, 4)]
    assert one(panda, write("SEQ1.TABLE", "<<", first)) == "OK\n"
    panda.advance(panda.now + 20)
    assert one(panda, "SEQ1.ENABLE=ONE\n") == "OK\n"
    panda.advance(panda.now + 100)  # the first buffer runs dry
    assert one(panda, "SEQ1.HEALTH?\n") == "OK =DMA underrun\n"
    assert one(panda, "SEQ1.ACTIVE?\n") == "OK =0\n"
    assert log == expected_edges(log[0][0], first)
    assert one(panda, "SEQ1.TABLE.QUEUED_LINES?\n") == "OK =0\n"
    # Too late: refused, MODE kept, and nothing more comes out.
    assert one(panda, write("SEQ1.TABLE", "<<", first)) == (
        "ERR Block channel was completed\n"
    )
    assert one(panda, write("SEQ1.TABLE", "<<|", first)) == (
        "ERR Block channel was completed\n"
    )
    assert one(panda, write("SEQ1.TABLE", "<", first)) == (
        "ERR Table is in streaming mode\n"
    )
    assert mode(panda) == "OK =STREAMING\n"
    panda.advance(panda.now + 200)
    assert len(log) == 4
    # Reset, then a new stream runs (on the next ENABLE edge).
    assert one(panda, "SEQ1.TABLE<\n\n") == "OK\n"
    assert mode(panda) == "OK =INIT\n"
    assert one(panda, write("SEQ1.TABLE", "<<", first[:1])) == "OK\n"
    assert one(panda, write("SEQ1.TABLE", "<<|", first[1:])) == "OK\n"
    assert ask(panda, "SEQ1.ENABLE=ZERO\n") == ["OK\n"]
    panda.advance(panda.now + 20)
    assert ask(panda, "SEQ1.ENABLE=ONE\n") == ["OK\n"]
    panda.advance(panda.now + 100)
    assert len(log) == 8
    assert one(panda, "SEQ1.HEALTH?\n") == "OK =OK\n"


def test_long_stream_keeps_buffers_bounded(panda: SimulatedPanda) -> None:
    # 1000 lines of 8 ticks: the DMA loads a line in 4.
    block = [1, 0, 0, 8] * 1000
    data = base64.b64encode(struct.pack(f"<{len(block)}I", *block)).decode()
    chunked = "\n".join(data[i : i + 76] for i in range(0, len(data), 76))
    request = f"SEQ1.TABLE<<B\n{chunked}\n\n"
    assert one(panda, request) == "OK\n"
    panda.advance(panda.now + 20)
    assert one(panda, "SEQ1.ENABLE=ONE\n") == "OK\n"
    sent, held = 1, []
    seq = panda.engine.blocks["SEQ1"]
    while sent < 200:
        queued = int(one(panda, "SEQ1.TABLE.QUEUED_LINES?\n")[4:])
        if queued < 2500:
            last = sent == 199
            text = request.replace("<<B", "<<|B") if last else request
            assert one(panda, text) == "OK\n"
            sent += 1
        else:
            panda.advance(panda.now + 4000)
        held.append(panda.table_buffers())
        assert len(seq._lines) < 5000  # type: ignore[attr-defined]
    panda.advance(panda.now + 40_000)
    assert max(held) <= 2 and panda.table_buffers() == 0  # 200 written
    assert ask(panda, "SEQ1.HEALTH?\nSEQ1.ACTIVE?\nSEQ1.TABLE_LINE?\n") == [
        "OK =OK\n",
        "OK =0\n",
        "OK =200000\n",
    ]
