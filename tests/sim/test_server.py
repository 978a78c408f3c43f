"""The asyncio transport: real sockets on loopback, in-process server."""

from __future__ import annotations

import asyncio
import socket

import pytest
from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Get, Raw

from panda_flyscan.app.simulated.launcher import free_loopback_hosts
from sim_ioc.panda.server import PandaServer


@pytest.fixture
async def server():
    host = next(free_loopback_hosts(150))
    server = PandaServer(host=host, overrun_bytes=256 * 1024)
    await server.start()
    yield server
    await server.stop()


async def test_slow_data_client_gets_data_overrun(server: PandaServer) -> None:
    # A client that asks for data and then does not read it.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (server.host, server.data_port))
    await loop.sock_sendall(sock, b"XML FRAMED RAW\n")
    async with AsyncioClient(server.host) as client:
        for line in [
            "PCAP.TS_TRIG.CAPTURE=Value",
            "PCAP.TS_START.CAPTURE=Value",
            "PCAP.TS_END.CAPTURE=Value",
            "PCAP.BITS0.CAPTURE=Value",
            "CLOCK1.PERIOD=2e-05",
            "CLOCK1.ENABLE=PCAP.ACTIVE",
            "PCAP.ENABLE=ONE",
            "PCAP.GATE=ONE",
            "PCAP.TRIG=CLOCK1.OUT",
            "*PCAP.ARM=",
        ]:
            assert await client.send(Raw([line]), timeout=10) == ["OK"]
        # The capture ends by itself once the client is far enough behind.
        # Polled (the server posts no event for it), bounded generously: a
        # loaded machine simulates the 50 kHz clock slower than real time.
        for _ in range(1200):
            if await client.send(Get("*PCAP.COMPLETION"), timeout=10) != "Busy":
                break
            await asyncio.sleep(0.05)
        assert await client.send(Get("*PCAP.COMPLETION"), timeout=10) == "Data overrun"
        assert await client.send(Get("PCAP.ACTIVE"), timeout=10) == "0"
    # Reading at last, the client finds END ... Data overrun.
    received = b""
    sock.setblocking(True)
    sock.settimeout(5)
    while b"END " not in received:
        chunk = await asyncio.to_thread(sock.recv, 1 << 20)
        assert chunk, "connection closed before END"
        received += chunk
    sock.close()
    assert received.rstrip().endswith(b"Data overrun")


async def test_control_port_answers_while_simulation_is_saturated(
    server: PandaServer,
) -> None:
    """A trigger rate beyond what Python simulates in real time must not stall
    the control port (the IOC drops a PandA that is silent for 1 s)."""
    async with AsyncioClient(server.host) as client:
        for line in [
            "PCAP.TS_TRIG.CAPTURE=Value",
            "CLOCK1.PERIOD=1e-06",  # 1 MHz: far more than real time allows
            "CLOCK1.ENABLE=PCAP.ACTIVE",
            "PCAP.ENABLE=ONE",
            "PCAP.TRIG=CLOCK1.OUT",
            "*PCAP.ARM=",
        ]:
            await client.send(Raw([line]))
        worst = 0.0
        loop = asyncio.get_running_loop()
        for _ in range(20):
            t0 = loop.time()
            await client.send(Get("*IDN"), timeout=1.0)
            worst = max(worst, loop.time() - t0)
        await client.send(Raw(["*PCAP.DISARM="]))
    # The IOC gives up after 1 s; stay well inside that.
    assert worst < 0.5, f"control port took {worst:.2f} s to answer"
