"""Streamed SEQ tables, fed to the PandA while it runs.

A SEQ table holds 4096 lines; the firmware (FPGA 3.0+, server API 4.0) also
takes a table as a *stream* of buffers that it consumes as it runs: the
control-port commands ``SEQ1.TABLE<<`` (a buffer, more to come) and
``SEQ1.TABLE<<|`` (the last), with ``SEQ1.TABLE.QUEUED_LINES?`` saying how
many lines are waiting. A table that runs dry stops the sequencer with
``HEALTH`` = "DMA underrun".

PandABlocks-ioc 0.11 has no table append over EPICS, so the plans open a
second client on the PandA's control port (the server takes several; the IOC
keeps its own) just for this: :class:`PandaControl` (a thin asyncio
transport, pandablocks' own client) and :class:`TableStream` (the feeding
loop: keep at least ``low_water`` lines queued, the last buffer marked). The
IOC still owns every other field, and sees the table as empty, as the server
shows streamed tables.

This replaces the double-buffered SEQ1/SEQ2 scheme pymalcolm used with
fixed tables: no hand-over between blocks (no gap in the trigger train, no
LUT to combine their outputs), the firmware itself detects a late buffer,
and one SEQ is left free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Append, CommandError, CommandException, Get, Put

__all__ = [
    "PandaControl",
    "StreamStats",
    "TableStream",
    "TableStreamError",
    "TableUnderrun",
]

log = logging.getLogger(__name__)

#: The SEQ ``HEALTH`` labels the firmware reports (seq.block.ini).
_UNDERRUN = "DMA underrun"
#: Lines the firmware's table ring holds (the driver queues buffers beyond).
RING_LINES = 4096
#: Lines kept queued by default: eight rings' worth, 1.6 s of 10 kHz frames
#: (two lines a frame), so a busy host's hiccup does not starve the SEQ (four
#: rings ran dry on this project's two loaded CI cores).
LOW_WATER = 8 * RING_LINES


class TableStreamError(RuntimeError):
    """The PandA refused a streamed buffer or could not be reached."""


class TableUnderrun(TableStreamError):
    """The sequencer needed a line that had not arrived (``HEALTH`` =
    "DMA underrun"): it stopped; no frame after ``line`` was triggered."""

    def __init__(self, block: str, line: int, why: str) -> None:
        self.block, self.line = block, line
        super().__init__(why)


class PandaControl:
    """A client of the PandA's control port (TCP 8888) of its own.

    ``host`` is the PandA's address (the simulated one: its loopback
    address). Commands are serialised; connected on first use.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self._client: AsyncioClient | None = None
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"PandaControl({self.host!r})"

    async def _connected(self) -> AsyncioClient:
        if self._client is None:
            client = AsyncioClient(self.host)
            try:
                await asyncio.wait_for(client.connect(), timeout=5)
            except (TimeoutError, OSError) as exc:
                raise TableStreamError(
                    f"no PandA answers on {self.host}:8888 ({exc!r}): table "
                    "streaming talks to the PandA's control port directly; check "
                    "the address and that this host can reach it"
                ) from exc
            self._client = client
        return self._client

    async def get(self, field: str) -> str:
        """``FIELD?``'s value."""
        client = await self._connected()
        value = await client.send(Get(field), timeout=5)
        return value if isinstance(value, str) else "\n".join(value)

    async def put_table(self, field: str, words: Iterable[int]) -> None:
        """A fixed table write (``FIELD<``); empty releases the table."""
        client = await self._connected()
        await client.send(Put(field, [str(w) for w in words]), timeout=10)

    async def append_table(self, field: str, words: np.ndarray, last: bool) -> None:
        """A streamed buffer (``FIELD<<``, ``FIELD<<|`` when ``last``)."""
        client = await self._connected()
        lines = [str(int(w)) for w in np.asarray(words, np.uint32).ravel()]
        await client.send(Append(field, lines, last), timeout=30)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


@dataclass
class StreamStats:
    """What a :class:`TableStream` did."""

    lines_sent: int = 0
    buffers_sent: int = 0
    #: Fewest lines seen queued once running (how close it came to running dry).
    min_queued: int | None = None


@dataclass
class TableStream:
    """Feed ``chunks`` (``(n, 4)`` uint32 line arrays) to ``block``'s TABLE
    as a streamed table.

    :meth:`preload` resets the table and queues the first buffers (call it
    before the block is enabled); :meth:`run` keeps at least ``low_water``
    lines queued until the last buffer is sent, polling every ``poll``
    seconds, and returns once it has; :meth:`check_health` raises
    :class:`TableUnderrun` if the block ran dry.
    """

    control: PandaControl
    block: str
    chunks: Iterator[np.ndarray]
    low_water: int = LOW_WATER
    poll: float = 0.02
    stats: StreamStats = field(default_factory=StreamStats)
    _next: np.ndarray | None = field(default=None, init=False)
    _done: bool = field(default=False, init=False)

    @property
    def field(self) -> str:
        return f"{self.block}.TABLE"

    @property
    def finished(self) -> bool:
        """Whether the last buffer has been sent."""
        return self._done

    def _take(self) -> tuple[np.ndarray, bool] | None:
        """The next chunk and whether it is the last."""
        current = self._next if self._next is not None else next(self.chunks, None)
        if current is None:
            return None
        self._next = next(self.chunks, None)
        return current, self._next is None

    async def _send(self) -> bool:
        taken = self._take()
        if taken is None:
            self._done = True
            return False
        words, last = taken
        refused = None
        try:
            await self.control.append_table(self.field, words, last)
        except (CommandError, CommandException) as exc:
            refused = str(exc).rpartition("->")[2].strip()  # not the lines sent
        if refused is not None:
            # The block stopped for want of lines: say that, not the refusal.
            await self.check_health()
            raise TableStreamError(
                f"{self.field}: the PandA refused buffer {self.stats.buffers_sent + 1}"
                f" ({refused}); the scan cannot go on"
            )
        self.stats.lines_sent += len(words)
        self.stats.buffers_sent += 1
        self._done = last
        return not last

    async def preload(self, lines: int | None = None) -> None:
        """Release the table (``TABLE<`` empty) and queue about ``lines``
        (default: ``low_water``)."""
        await self.control.put_table(self.field, [])
        target = self.low_water if lines is None else lines
        while self.stats.lines_sent < target and await self._send():
            pass

    async def release(self) -> None:
        """Release the table (``TABLE<`` empty: MODE back to INIT). A
        streamed table refuses a fixed table write until then, so the IOC
        could not load the next scan's fixed table."""
        await self.control.put_table(self.field, [])

    async def queued(self) -> int:
        """Lines the PandA has waiting (the one running included)."""
        return int(await self.control.get(f"{self.field}.QUEUED_LINES"))

    async def run(self) -> None:
        """Keep the table fed until its last buffer is sent."""
        while not self._done:
            queued = await self.queued()
            if self.stats.lines_sent > 0:
                low = self.stats.min_queued
                self.stats.min_queued = queued if low is None else min(low, queued)
            if queued < self.low_water:
                await self._send()
                continue
            await self.check_health()
            await asyncio.sleep(self.poll)

    async def check_health(self) -> None:
        """Raise :class:`TableUnderrun` if the block stopped for want of lines."""
        health = await self.control.get(f"{self.block}.HEALTH")
        if health.strip() == _UNDERRUN:
            line = int(await self.control.get(f"{self.block}.TABLE_LINE"))
            raise TableUnderrun(
                self.block,
                line,
                f"{self.block} ran out of table at line {line} (HEALTH: "
                f"{_UNDERRUN}): the next lines reached the PandA too late "
                f"({self.stats.lines_sent} lines sent); the scan stopped there",
            )
