"""Faults on the control port: bad requests, floods, lost connections.

One client's bad input must cost it an ``ERR``, never its connection, and
must never stall the other clients (the IOC gives up on a PandA silent for
1 s). ``*SIM.DROP_CONNECTIONS=`` makes the network fault on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.panda.protocol.control import (
    MAX_LINE,
    MAX_TABLE_BYTES,
    MAX_TABLE_LINES,
    Command,
    ControlParser,
    Malformed,
    Session,
    TableWrite,
    respond,
)
from sim_ioc.panda.server import PandaServer

#: Longest a client may wait for an answer while another floods the port:
#: the 1 s after which the IOC drops a PandA, halved for a loaded machine.
LATENCY_BOUND = 0.5
#: How long a test waits for an expected reply or EOF before failing.
TIMEOUT = 10.0

LINE_ERR = f"ERR Line longer than {MAX_LINE} bytes"


@pytest.fixture
async def server() -> AsyncIterator[PandaServer]:
    # Port 0: free ports chosen by the kernel, so parallel runs cannot clash.
    server = PandaServer(host="127.0.0.1", control_port=0, data_port=0)
    await server.start()
    yield server
    await server.stop()


class Client:
    """A raw control-port connection: bytes out, reply lines in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, server: PandaServer, port: int | None = None) -> Client:
        reader, writer = await asyncio.open_connection(
            server.host, port or server.control_port, limit=1 << 20
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert raw.endswith(b"\n"), f"connection closed (read {raw!r})"
        return raw.decode().rstrip("\n")

    async def ask(self, text: str) -> str:
        """Send one single-line request; its (single-line) reply."""
        await self.send(f"{text}\n".encode())
        return await self.line()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def assert_idn(client: Client) -> None:
    reply = await client.ask("*IDN?")
    assert reply.startswith("OK =PandA SW: "), reply


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Wait for the server to end the connection: True on EOF or reset."""
    try:
        rest = await asyncio.wait_for(reader.read(), TIMEOUT)
    except ConnectionResetError:
        return True
    return rest == b""


# -- the parser, sans-IO ---------------------------------------------------------


def test_a_line_of_max_line_bytes_is_kept_and_one_more_is_refused() -> None:
    parser = ControlParser()
    longest = b"x" * MAX_LINE
    assert parser.feed(longest[:1000]) == []
    assert parser.feed(longest[1000:] + b"\n") == [Command("x" * MAX_LINE)]
    assert parser.feed(longest + b"y\n*IDN?\n") == [
        Malformed(f"Line longer than {MAX_LINE} bytes"),
        Command("*IDN?"),
    ]


def test_an_overlong_line_is_discarded_as_it_streams_in() -> None:
    parser = ControlParser()
    chunk = b"x" * 65536
    for _ in range(64):  # 4 MB without a newline
        assert parser.feed(chunk) == []
        # White box: no more than a line's worth is ever held.
        assert len(parser._partial) <= MAX_LINE  # pyright: ignore[reportPrivateUsage]
    assert parser.feed(b"tail\nPCAP.ACTIVE?\n") == [
        Malformed(f"Line longer than {MAX_LINE} bytes"),
        Command("PCAP.ACTIVE?"),
    ]


def test_a_line_that_is_not_utf8_is_refused() -> None:
    assert ControlParser().feed(b"PCAP.\xff\xfe?\n*IDN?\n") == [
        Malformed("Line is not UTF-8 text"),
        Command("*IDN?"),
    ]


def test_a_table_of_max_table_lines_is_kept_and_one_more_is_refused() -> None:
    parser = ControlParser()
    longest = b"SEQ1.TABLE<\n" + b"0\n" * MAX_TABLE_LINES + b"\n"
    [write] = parser.feed(longest)
    assert isinstance(write, TableWrite) and len(write.lines) == MAX_TABLE_LINES
    too_long = b"SEQ1.TABLE<\n" + b"0\n" * (MAX_TABLE_LINES + 1) + b"\n*IDN?\n"
    assert parser.feed(too_long) == [
        Malformed(f"Table longer than {MAX_TABLE_LINES} lines"),
        Command("*IDN?"),
    ]


def test_a_table_of_too_many_bytes_is_refused() -> None:
    line = b"1 " * (MAX_LINE // 2) + b"\n"  # MAX_LINE bytes, allowed as a line
    lines = MAX_TABLE_BYTES // MAX_LINE + 1
    assert ControlParser().feed(b"SEQ1.TABLE<\n" + line * lines + b"\n") == [
        Malformed(f"Table longer than {MAX_TABLE_BYTES} bytes")
    ]


def test_a_bad_line_inside_a_table_refuses_the_whole_table_once() -> None:
    parser = ControlParser()
    data = b"SEQ1.TABLE<\n1\n" + b"x" * (MAX_LINE + 1) + b"\n2\n\xff\n\n*IDN?\n"
    assert parser.feed(data) == [Malformed(LINE_ERR[4:]), Command("*IDN?")]


# -- respond, sans-IO ------------------------------------------------------------


def answer(panda: SimulatedPanda, data: bytes) -> list[str]:
    session = Session()
    return [respond(panda, session, r) for r in ControlParser().feed(data)]


def test_malformed_table_writes_are_answered_err() -> None:
    panda = SimulatedPanda()
    replies = answer(
        panda,
        b"SEQ1.TABLE<B\nabc\n\n"  # not base64
        b"NOSUCH1.TABLE<\n1\n\n"
        b"SEQ1.NOSUCH<B\nabc\n\n"
        b"PCAP.TRIG<\n1\n\n"  # not a table
        b"SEQ1.TABLE<\n1 two\n\n",
    )
    assert replies == [
        "ERR Invalid base64 table data: Incorrect padding\n",
        "ERR No such block\n",
        "ERR No such field\n",
        "ERR Field is not a table\n",
        "ERR Table data not numbers\n",
    ]
    assert answer(panda, b"SEQ1.TABLE?\n") == [".\n"]  # unchanged


def test_an_unexpected_exception_is_answered_err_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    panda = SimulatedPanda()

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(panda, "put", broken)
    request = "CLOCK1.PERIOD=" + "1" * 200
    with caplog.at_level(logging.ERROR):
        assert answer(panda, f"{request}\n*IDN?\n".encode())[0] == (
            "ERR internal error: RuntimeError: boom\n"
        )
    [record] = caplog.records
    assert repr(request[:80]) in record.getMessage()
    assert repr(request[:81]) not in record.getMessage()


def test_drop_connections_needs_a_server_and_no_value() -> None:
    panda = SimulatedPanda()
    assert (
        answer(panda, b"*SIM.DROP_CONNECTIONS=\n*SIM.CONNECTIONS?\n")
        == ["ERR No connections here (not served on a socket)\n"] * 2
    )
    assert answer(panda, b"*SIM.DROP_CONNECTIONS=now\n") == [
        "ERR *SIM.DROP_CONNECTIONS takes no value\n"
    ]


# -- over sockets ----------------------------------------------------------------


async def test_bad_base64_table_is_err_and_the_connection_serves_on(
    server: PandaServer,
) -> None:
    client = await Client.connect(server)
    await client.send(b"SEQ1.TABLE<B\nabc\n\n")
    assert (await client.line()).startswith("ERR Invalid base64 table data")
    await assert_idn(client)
    await client.close()


async def test_binary_garbage_gets_only_err_replies(server: PandaServer) -> None:
    rng = random.Random(1)
    garbage = rng.randbytes(256 * 1024) + b"\n"
    # As many replies as the parser finds requests, and no table left open.
    parser = ControlParser()
    expected = len(parser.feed(garbage))
    assert expected > 100 and parser.feed(b"*IDN?\n") == [Command("*IDN?")]
    client = await Client.connect(server)
    await client.send(garbage)
    replies = [await client.line() for _ in range(expected)]
    assert all(r.startswith("ERR ") for r in replies), [
        r for r in replies if not r.startswith("ERR ")
    ]
    await assert_idn(client)
    await client.close()


async def test_a_1mb_line_gets_one_err_then_idn(server: PandaServer) -> None:
    client = await Client.connect(server)
    await client.send(b"x" * (1 << 20) + b"\n")
    assert await client.line() == LINE_ERR
    await assert_idn(client)  # the very next reply: only one ERR
    await client.close()


async def test_a_table_with_too_many_lines_is_err(server: PandaServer) -> None:
    client = await Client.connect(server)
    await client.send(b"SEQ1.TABLE<\n" + b"1\n" * (MAX_TABLE_LINES + 1) + b"\n")
    assert await client.line() == f"ERR Table longer than {MAX_TABLE_LINES} lines"
    await assert_idn(client)
    await client.send(b"SEQ1.TABLE?\n")
    assert await client.line() == "."  # nothing of it was written
    await client.close()


async def test_a_64mb_line_does_not_stall_another_client(server: PandaServer) -> None:
    """A second client's answers keep coming while the first floods the port
    (before the bound on lines, each chunk re-split everything buffered: one
    64 MB line stalled the whole simulator for over a second)."""
    flood_replies: list[bytes] = []

    def flood() -> None:
        # A thread with a blocking socket: the flood costs the event loop
        # (the server's and the pinger's) only what the server does with it.
        with socket.create_connection((server.host, server.control_port)) as sock:
            sock.settimeout(60)
            chunk = b"x" * (1 << 20)
            for _ in range(64):
                sock.sendall(chunk)
            sock.sendall(b"\n*IDN?\n")
            with sock.makefile("rb") as replies:
                flood_replies.extend(replies.readline() for _ in range(2))

    pinger = await Client.connect(server)
    await assert_idn(pinger)
    flooder = asyncio.ensure_future(asyncio.to_thread(flood))
    loop = asyncio.get_running_loop()
    waits: list[float] = []
    while not flooder.done():
        t0 = loop.time()
        await assert_idn(pinger)
        waits.append(loop.time() - t0)
        await asyncio.sleep(0.003)  # pacing: a ping every few ms
    await flooder
    error, idn = (r.decode().rstrip("\n") for r in flood_replies)
    assert error == LINE_ERR
    assert idn.startswith("OK =PandA SW: ")
    assert len(waits) >= 5, "the flood ended before the pings overlapped it"
    assert max(waits) < LATENCY_BOUND, f"worst wait {max(waits):.3f} s"
    await pinger.close()


async def test_repeated_arm_is_answered_each_time(server: PandaServer) -> None:
    client = await Client.connect(server)
    assert await client.ask("PCAP.TS_TRIG.CAPTURE=Value") == "OK"
    assert await client.ask("*PCAP.ARM=") == "OK"
    # As PandABlocks-server: a second ARM while armed is an error.
    for _ in range(3):
        assert await client.ask("*PCAP.ARM=") == "ERR Data capture already in progress"
    assert await client.ask("*PCAP.DISARM=") == "OK"
    assert await client.ask("*PCAP.DISARM=") == "OK"
    assert await client.ask("*PCAP.ARM=") == "OK"
    assert await client.ask("*PCAP.DISARM=") == "OK"
    await assert_idn(client)
    await client.close()


async def test_drop_connections_resets_the_others_and_not_the_sender(
    server: PandaServer,
) -> None:
    victim = await Client.connect(server)
    await assert_idn(victim)
    data = await Client.connect(server, server.data_port)
    assert await data.ask("XML FRAMED RAW") == "OK"
    sender = await Client.connect(server)
    assert await sender.ask("*SIM.CONNECTIONS?") == "OK =2 1"

    assert await sender.ask("*SIM.DROP_CONNECTIONS=") == "OK"
    assert await closed_by_server(victim.reader)
    assert await closed_by_server(data.reader)
    await assert_idn(sender)
    assert await sender.ask("*SIM.CONNECTIONS?") == "OK =1 0"
    # The server still listens: the IOC can reconnect.
    again = await Client.connect(server)
    await assert_idn(again)
    for client in (victim, data, sender, again):
        await client.close()


async def test_a_client_leaving_mid_line_or_mid_table_is_quiet(
    server: PandaServer, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = await Client.connect(server)
    for partial in (b"SEQ1.TAB", b"SEQ1.TABLE<\n1\n2"):
        for reset in (False, True):
            client = await Client.connect(server)
            await client.send(partial)
            if reset:  # a reset rather than an orderly close
                sock = client.writer.get_extra_info("socket")
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            await client.close()
    # Each handler ends: the server is back to the watcher alone.
    async with asyncio.timeout(TIMEOUT):
        while await watcher.ask("*SIM.CONNECTIONS?") != "OK =1 0":
            await asyncio.sleep(0.01)
    await assert_idn(watcher)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    await watcher.close()
