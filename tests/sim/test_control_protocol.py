"""The control protocol against a simulated PandA, without sockets."""

from __future__ import annotations

import base64
import struct

import pytest

from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.panda.protocol.control import (
    Command,
    ControlParser,
    Session,
    TableWrite,
    respond,
)


@pytest.fixture
def panda() -> SimulatedPanda:
    return SimulatedPanda()


def ask(panda: SimulatedPanda, text: str, session: Session | None = None) -> list[str]:
    session = session or Session()
    parser = ControlParser()
    return [respond(panda, session, r) for r in parser.feed(text.encode())]


def test_parser_splits_lines_and_table_writes_across_chunks() -> None:
    parser = ControlParser()
    assert parser.feed(b"*IDN?\nSEQ1.TAB") == [Command("*IDN?")]
    assert parser.feed(b"LE<<\n1 2\n3") == []
    assert parser.feed(b" 4\n\nPCAP.ACTIVE?\n") == [
        TableWrite("SEQ1", "TABLE", append=True, base64=False, lines=("1 2", "3 4")),
        Command("PCAP.ACTIVE?"),
    ]


def test_idn_matches_the_client_regex(panda: SimulatedPanda) -> None:
    [reply] = ask(panda, "*IDN?\n")
    assert reply.startswith("OK =PandA SW: 4.")
    assert " FPGA: " in reply and " rootfs: " in reply


def test_block_counts_match_the_acq427_panda(panda: SimulatedPanda) -> None:
    [reply] = ask(panda, "*BLOCKS?\n")
    counts = dict(line[1:].split() for line in reply.splitlines()[:-1])
    assert counts == {
        "TTLIN": "6", "TTLOUT": "10", "LVDSIN": "2", "LVDSOUT": "2", "INENC": "4",
        "OUTENC": "4", "PCAP": "1", "SYSTEM": "1", "BITS": "1", "CALC": "2",
        "CLOCK": "2", "COUNTER": "8", "DIV": "2", "FILTER": "2", "LUT": "8",
        "PCOMP": "2", "PULSE": "4", "SEQ": "2", "PGEN": "2", "SRGATE": "4",
        "FMC_IN": "1", "FMC_OUT": "1", "SFP3_SYNC_IN": "1", "SFP3_SYNC_OUT": "1",
    }  # fmt: skip


def test_time_fields_convert_units(panda: SimulatedPanda) -> None:
    replies = ask(
        panda,
        "PULSE1.WIDTH.UNITS=us\nPULSE1.WIDTH=2.5\nPULSE1.WIDTH.RAW?\n"
        "PULSE1.WIDTH.UNITS=s\nPULSE1.WIDTH?\n",
    )
    assert replies == ["OK\n", "OK\n", "OK =312\n", "OK\n", "OK =2.496e-06\n"]


def test_errors_do_not_break_the_session(panda: SimulatedPanda) -> None:
    replies = ask(
        panda,
        "PCAP.TRIG=NOT.A.BIT\nFOO1.BAR?\nSEQ1.NOPE?\nPCAP.SHIFT_SUM=9\n"
        "PULSE1.TRIG_EDGE=Sideways\nPCAP.TRIG=SEQ1.OUTA\nPCAP.TRIG?\n",
    )
    assert [r.split()[0] for r in replies[:5]] == ["ERR"] * 5
    # The real server's texts (server/bit_out.c, fields.c, types.c, enums.c).
    assert replies[:5] == [
        "ERR Invalid bit bus selection\n",
        "ERR No such block\n",
        "ERR No such field\n",
        "ERR Number out of range\n",
        "ERR Invalid enumeration value\n",
    ]
    assert replies[5:] == ["OK\n", "OK =SEQ1.OUTA\n"]


def test_table_write_read_and_base64_and_a_stream_not_shown(
    panda: SimulatedPanda,
) -> None:
    replies = ask(
        panda,
        "SEQ1.TABLE<\n1 0 5 5\n2 0 6 6\n\nSEQ1.TABLE?\n"
        "SEQ1.TABLE.LENGTH?\nSEQ1.TABLE.B?\n",
    )
    assert replies[0] == "OK\n"
    assert replies[1] == "!1\n!0\n!5\n!5\n!2\n!0\n!6\n!6\n.\n"
    assert replies[2] == "OK =2\n"
    b64 = "".join(line[1:] for line in replies[3].splitlines()[:-1])
    assert struct.unpack("<8I", base64.b64decode(b64)) == (1, 0, 5, 5, 2, 0, 6, 6)
    encoded = base64.b64encode(struct.pack("<4I", 7, 0, 1, 1)).decode()
    assert ask(panda, f"SEQ1.TABLE<B\n{encoded}\n\nSEQ1.TABLE?\n") == [
        "OK\n",
        "!7\n!0\n!1\n!1\n.\n",
    ]
    # `<<` starts a streamed table (server API 4): the server shows it empty.
    assert ask(
        panda,
        "SEQ1.TABLE<<\n2 0 6 6\n\nSEQ1.TABLE.MODE?\nSEQ1.TABLE?\nSEQ1.TABLE.LENGTH?\n",
    ) == ["OK\n", "OK =STREAMING\n", ".\n", "OK =0\n"]


def test_over_long_table_is_refused_and_old_table_kept(panda: SimulatedPanda) -> None:
    ask(panda, "SEQ1.TABLE<\n1 0 5 5\n\n")
    rows = "\n".join("1 0 1 1" for _ in range(4097))
    [reply] = ask(panda, f"SEQ1.TABLE<\n{rows}\n\n")
    assert reply == "ERR Too many points for table\n"  # server/table.c
    assert ask(panda, "SEQ1.TABLE?\n") == ["!1\n!0\n!5\n!5\n.\n"]


def test_changes_reports_everything_first_then_only_changes(
    panda: SimulatedPanda,
) -> None:
    session = Session()
    [first] = ask(panda, "*CHANGES?\n", session)
    lines = first.splitlines()
    assert "!PULSE1.DELAY.UNITS=s" in lines
    assert "!PCAP.TRIG.DELAY=0" in lines
    assert "!INENC1.VAL.CAPTURE=No" in lines
    assert "!PCAP.TS_TRIG.CAPTURE=No" in lines
    assert "!SEQ1.TABLE<" in lines
    assert "!*METADATA.LABEL_PCAP1=" in lines
    assert len(lines) > 1000
    ask(panda, "PULSE2.PULSES=3\n", session)
    [second] = ask(panda, "*CHANGES?\n", session)
    assert second == "!PULSE2.PULSES=3\n.\n"
    # Change tracking is per connection.
    [other] = ask(panda, "*CHANGES.CONFIG?\n", Session())
    assert "!PULSE2.PULSES=3" in other.splitlines()


def test_capture_attributes_and_list(panda: SimulatedPanda) -> None:
    replies = ask(
        panda,
        "INENC1.VAL.CAPTURE=Min Max\nPCAP.TS_TRIG.CAPTURE=Value\n*CAPTURE?\n"
        "INENC1.VAL.CAPTURE=Sometimes\n",
    )
    assert replies[2] == "!INENC1.VAL Min Max\n!PCAP.TS_TRIG Value\n.\n"
    assert replies[3].startswith("ERR")


def test_lut_expressions_give_truth_tables(panda: SimulatedPanda) -> None:
    replies = ask(panda, "LUT1.FUNC=A&B\nLUT1.FUNC?\nLUT2.FUNC=0xFFFF0000\n")
    assert replies == ["OK\n", "OK =A&B\n", "OK\n"]
    assert panda.fields["LUT1.FUNC"].value == 0xFF000000
