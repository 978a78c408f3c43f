"""Replies a real PandABlocks-server gives, as the simulator must give them.

Each expectation is the server's behaviour as its source has it (file named
beside the test), not what a particular client happens to accept.
"""

from __future__ import annotations

import pytest

from sim_ioc.panda.device import APPNAME, SimulatedPanda
from sim_ioc.panda.protocol.control import ControlParser, Session, respond


@pytest.fixture
def panda() -> SimulatedPanda:
    return SimulatedPanda()


def ask(panda: SimulatedPanda, text: str, session: Session | None = None) -> list[str]:
    session = session or Session()
    parser = ControlParser()
    return [respond(panda, session, r) for r in parser.feed(text.encode())]


def lines_of(reply: str) -> list[str]:
    """The lines of a multi-line reply, without ``!`` and the closing ``.``."""
    assert reply.endswith(".\n"), reply
    return [line[1:] for line in reply.splitlines()[:-1]]


# -- metadata (server/metadata.c, the firmware's config template) ---------------


def test_metadata_keys_are_those_of_the_firmware_config(panda: SimulatedPanda) -> None:
    [keys] = ask(panda, "*METADATA.*?\n")
    names = lines_of(keys)
    assert names[:4] == ["APPNAME", "DESIGN", "LAYOUT", "EXPORTS"]
    assert {"LABEL_PCAP1", "LABEL_SEQ1", "LABEL_SEQ2"} <= set(names)
    assert all(n.startswith("LABEL_") for n in names[4:])


def test_constant_metadata_is_never_reported_as_a_change(
    panda: SimulatedPanda,
) -> None:
    for query in ("*CHANGES?\n", "*CHANGES.METADATA?\n"):
        [changes] = ask(panda, query)
        reported = lines_of(changes)
        assert not any(line.startswith("*METADATA.APPNAME") for line in reported)
        # The writeable keys are reported, multi-line ones as KEY<.
        assert "*METADATA.DESIGN=" in reported
        assert "*METADATA.LAYOUT<" in reported
        assert "*METADATA.EXPORTS<" in reported
        assert "*METADATA.LABEL_PCAP1=" in reported
    # It still reads back, but cannot be written, even with its own value.
    assert ask(panda, "*METADATA.APPNAME?\n") == [f"OK ={APPNAME}\n"]
    assert ask(panda, f"*METADATA.APPNAME={APPNAME}\n") == [
        "ERR Cannot write to this field\n"
    ]


def test_multiline_metadata_is_written_with_lines_and_read_as_lines(
    panda: SimulatedPanda,
) -> None:
    session = Session()
    ask(panda, "*CHANGES?\n", session)
    replies = ask(
        panda,
        "*METADATA.LAYOUT<\nfirst line\n  second = line\n\n*METADATA.LAYOUT?\n"
        "*CHANGES.METADATA?\n*METADATA.EXPORTS?\n",
        session,
    )
    assert replies[0] == "OK\n"
    assert lines_of(replies[1]) == ["first line", "  second = line"]
    assert lines_of(replies[2]) == ["*METADATA.LAYOUT<"]
    assert lines_of(replies[3]) == []


@pytest.mark.parametrize(
    ("request_text", "reply"),
    [
        ("*METADATA.NOPE?\n", "ERR Metadata key NOPE not found\n"),
        ("*METADATA.NOPE=1\n", "ERR Metadata key NOPE not found\n"),
        ("*METADATA.NOPE<\nx\n\n", "ERR Metadata key NOPE not found\n"),
        ("*METADATA.LAYOUT=one line\n", "ERR Cannot write to this field\n"),
        ("*METADATA.DESIGN<\nx\n\n", "ERR Not a multi-line field\n"),
        ("*METADATA.LAYOUT<B\neA==\n\n", "ERR Binary writes not supported\n"),
        ("*METADATA.LAYOUT<<\nx\n\n", "ERR Streaming mode not supported\n"),
    ],
)
def test_metadata_errors(panda: SimulatedPanda, request_text: str, reply: str) -> None:
    assert ask(panda, request_text) == [reply]


def test_string_metadata_round_trips_and_is_reported(panda: SimulatedPanda) -> None:
    session = Session()
    ask(panda, "*CHANGES?\n", session)
    replies = ask(
        panda, "*METADATA.LABEL_SEQ2=fast scan\n*CHANGES?\n*METADATA.LABEL_SEQ2?\n"
    )
    assert replies[0] == "OK\n"
    assert replies[2] == "OK =fast scan\n"
    [changes] = ask(panda, "*CHANGES?\n", session)
    assert lines_of(changes) == ["*METADATA.LABEL_SEQ2=fast scan"]


# -- capture (server/capture.c, data_server.c) ---------------------------------


def test_arming_with_nothing_to_capture(panda: SimulatedPanda) -> None:
    assert ask(panda, "*PCAP.ARM=\n") == ["ERR Nothing configured for capture\n"]
    assert panda.capture is None


def test_arming_twice(panda: SimulatedPanda) -> None:
    replies = ask(panda, "PCAP.TS_TRIG.CAPTURE=Value\n*PCAP.ARM=\n*PCAP.ARM=\n")
    assert replies == ["OK\n", "OK\n", "ERR Data capture already in progress\n"]


# -- change reporting (server/system_command.c, fields.c) ----------------------


def test_changes_reset_to_end_and_to_start(panda: SimulatedPanda) -> None:
    session = Session()
    # "=" and "=E" mark everything as reported; "=S" reports everything again.
    assert ask(panda, "*CHANGES=\n*CHANGES?\n", session) == ["OK\n", ".\n"]
    ask(panda, "PULSE1.PULSES=4\n", session)
    assert ask(panda, "*CHANGES.CONFIG=E\n*CHANGES?\n", session) == ["OK\n", ".\n"]
    [ok, everything] = ask(panda, "*CHANGES.CONFIG=S\n*CHANGES?\n", session)
    assert ok == "OK\n"
    reported = lines_of(everything)
    assert "PULSE1.PULSES=4" in reported
    # Only the CONFIG group was reset to the start.
    assert not any(line.startswith("*METADATA.") for line in reported)
    assert "PULSE1.DELAY.UNITS=s" not in reported


@pytest.mark.parametrize(
    ("request_text", "reply"),
    [
        ("*CHANGES.BOGUS?\n", "ERR Unknown changes selection\n"),
        ("*CHANGES=X\n", "ERR Invalid reset option\n"),
    ],
)
def test_changes_errors(panda: SimulatedPanda, request_text: str, reply: str) -> None:
    assert ask(panda, request_text) == [reply]


def test_read_only_attributes_are_not_change_reported(panda: SimulatedPanda) -> None:
    # Only DELAY, UNITS, CAPTURE, SCALE and OFFSET are in the server's change
    # sets; MAX_DELAY, INFO, RAW, SCALED, CAPTURE_WORD, LENGTH... are not.
    [changes] = ask(panda, "*CHANGES.ATTR?\n")
    attrs = {line.split("=")[0].rsplit(".", 1)[1] for line in lines_of(changes)}
    assert attrs == {"DELAY", "UNITS", "CAPTURE", "SCALE", "OFFSET"}


# -- common failures (server/config_server.c, config_command.c, fields.c, ...) --


@pytest.mark.parametrize(
    ("request_text", "reply"),
    [
        ("*NOPE?\n", "ERR Unknown command\n"),
        ("*NOPE=1\n", "ERR Unknown command\n"),
        ("PCAP.ACTIVE\n", "ERR Unknown command\n"),
        ("*PCAP.NOPE?\n", "ERR Invalid *PCAP field\n"),
        ("*PCAP.NOPE=\n", "ERR Invalid *PCAP field\n"),
        ("NOPE1.VAL?\n", "ERR No such block\n"),
        ("SEQ1.NOPE?\n", "ERR No such field\n"),
        ("SEQ.TABLE?\n", "ERR Missing block number\n"),
        ("SEQ3.TABLE?\n", "ERR Invalid block number\n"),
        ("PCAP.TRIG.NOPE?\n", "ERR No such attribute\n"),
        ("PCAP.TRIG=NOPE\n", "ERR Invalid bit bus selection\n"),
        ("INENC1.CLK=NOPE\n", "ERR Invalid bit bus selection\n"),
        ("PCOMP1.INP=NOPE\n", "ERR Invalid position selection\n"),
        ("PULSE1.TRIG_EDGE=Sideways\n", "ERR Invalid enumeration value\n"),
        ("PCAP.SHIFT_SUM=99\n", "ERR Number out of range\n"),
        ("PCAP.TRIG.DELAY=99\n", "ERR Delay too long\n"),
        ("PULSE1.DELAY.UNITS=h\n", "ERR Invalid time units\n"),
        ("PULSE1.DELAY=-1\n", "ERR Time setting out of range\n"),
        ("INENC1.VAL.CAPTURE=Sometimes\n", "ERR Invalid capture option\n"),
        ("PCAP.TS_TRIG.CAPTURE=Mean\n", "ERR Invalid capture option\n"),
        ("PCAP.TS_TRIG?\n", "ERR Field not readable\n"),
        ("PCAP.ACTIVE=1\n", "ERR Field not writeable\n"),
        ("PCAP.TRIG.MAX_DELAY=3\n", "ERR Attribute not writeable\n"),
        ("*ENUMS.PULSE1.WIDTH?\n", "ERR Field is not an enumeration\n"),
        ("*ENUMS.PULSE1.WIDTH.RAW?\n", "ERR Attribute is not an enumeration\n"),
        ("*ENUMS.PULSE1?\n", "ERR Missing field name\n"),
        ("*DESC.NOPE?\n", "ERR No such block\n"),
        ("*DESC.SEQ.TABLE[].NOPE?\n", "ERR Table sub-field not found\n"),
        (
            "*ENUMS.SEQ.TABLE[].REPEATS?\n",
            "ERR Table sub-field is not an enumeration\n",
        ),
    ],
)
def test_common_failures(panda: SimulatedPanda, request_text: str, reply: str) -> None:
    assert ask(panda, request_text) == [reply]
