"""A layout saved with ``pandablocks save`` loads into a fresh simulator
unchanged: save, load, save again gives the same file."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Put, Raw

from panda_flyscan.app.simulated.launcher import free_loopback_hosts
from sim_ioc.panda.server import PandaServer

PANDABLOCKS = [sys.executable, "-m", "pandablocks"]


@contextlib.asynccontextmanager
async def served_panda() -> AsyncIterator[str]:
    for host in free_loopback_hosts(100):
        try:
            server = PandaServer(host=host)
            await server.start()
        except OSError:
            continue  # taken in the meantime: try the next address
        try:
            yield host
        finally:
            await server.stop()
        return
    raise RuntimeError("no free loopback address for a simulated PandA")


async def pandablocks(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *PANDABLOCKS, *args, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return err.decode()


async def test_saved_layout_round_trips(tmp_path: Path) -> None:
    first, second = tmp_path / "first.sav", tmp_path / "second.sav"
    async with served_panda() as a, served_panda() as b:
        async with AsyncioClient(a) as client:
            for line in [
                "PULSE1.DELAY.UNITS=us",
                "PULSE1.DELAY=2.5",
                "PCAP.TRIG=SEQ1.OUTA",
                "PCAP.TRIG.DELAY=3",
                "INENC1.VAL.CAPTURE=Min Max",
                "INENC1.VAL.SCALE=0.001",
                "LUT3.FUNC=A&B|C",
                "TTLIN2.TERM=50-Ohm",
                "*METADATA.DESIGN=round trip",
            ]:
                await client.send(Raw([line]))
            await client.send(Put("SEQ1.TABLE", ["1048577", "0", "5", "5"]))
        await pandablocks("save", a, str(first))
        errors = await pandablocks("load", b, str(first))
        await pandablocks("save", b, str(second))
    assert "failed" not in errors
    saved = first.read_text()
    assert second.read_text() == saved
    # The file really carries what was set, in the server's spellings.
    lines = saved.splitlines()
    for expected in [
        "PULSE1.DELAY.UNITS=us",
        "PCAP.TRIG=SEQ1.OUTA",
        "PCAP.TRIG.DELAY=3",
        "INENC1.VAL.CAPTURE=Min Max",
        "LUT3.FUNC=A&B|C",
        "TTLIN2.TERM=50-Ohm",
        "*METADATA.DESIGN=round trip",
        "SEQ1.TABLE<B",
    ]:
        assert expected in lines
