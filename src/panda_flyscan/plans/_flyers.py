"""The PandA's trigger sources as ophyd-async flyers, tolerant of slow polling.

ophyd-async's ``StaticSeqTableFlyableLogic`` and ``StaticPcompFlyableLogic``
program SEQ and PCOMP; we use them, and change one thing: their ``kickoff``
waits (1 s at most) for the block's ACTIVE bit to read high. PandABlocks-ioc
learns of bit changes by polling ``*CHANGES?`` every 0.1 s, so a block active
for less than about 0.2 s may never read high, and kickoff then fails although
the scan ran. Here kickoff only waits for ACTIVE when the block will be active
long enough to be seen (:data:`ACTIVE_VISIBLE`); plans learn that a scan is
done from the captured data (PCAP's frame count), which no polling can miss.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ophyd_async.core import FlyableLogic, wait_for_value
from ophyd_async.fastcs.panda import (
    PandaBitMux,
    PandaTimeUnits,
    SeqTable,
    SeqTableInfo,
    SeqTrigger,
    StaticPcompFlyableLogic,
    StaticSeqTableFlyableLogic,
)

from ..devices.table_stream import TableStream, TableUnderrun
from .errors import TableRanDry

__all__ = [
    "ACTIVE_VISIBLE",
    "IOC_POLL_PERIOD",
    "MAX_ROW_REPEATS",
    "MAX_SEQ_ROWS",
    "TICK",
    "PcompFlyLogic",
    "SeqFlyLogic",
    "StreamedSeqFlyLogic",
    "StreamedSeqInfo",
    "pulse_table",
]

#: One FPGA clock tick (125 MHz).
TICK = 8e-9
#: How often PandABlocks-ioc polls the PandA for changed fields.
IOC_POLL_PERIOD = 0.1
#: A bit high for at least this long is seen by EPICS clients (several polls).
ACTIVE_VISIBLE = 5 * IOC_POLL_PERIOD
#: SEQ table limits (firmware): rows, repeats per row (0 means forever).
MAX_SEQ_ROWS = 4096
MAX_ROW_REPEATS = 65535
#: TIME1/TIME2 are 32-bit counts of prescaled ticks.
MAX_SEQ_TIME = 2**32 - 1


def pulse_table(frames: int, high: int, low: int) -> SeqTable:
    """A table for ``frames`` pulses: OUTA high ``high`` units then low ``low``.

    Split into rows of at most :data:`MAX_ROW_REPEATS` repeats (the sequencer
    goes from one row to the next without a gap).
    """
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    rows = -(-frames // MAX_ROW_REPEATS)
    if rows > MAX_SEQ_ROWS:
        raise ValueError(
            f"{frames} frames need {rows} rows, the table has {MAX_SEQ_ROWS}"
        )
    repeats = np.full(rows, MAX_ROW_REPEATS, dtype=np.uint16)
    repeats[-1] = frames - MAX_ROW_REPEATS * (rows - 1)
    zeros = np.zeros(rows, dtype=np.bool_)
    return SeqTable(
        repeats=repeats,
        trigger=[SeqTrigger.IMMEDIATE] * rows,
        position=np.zeros(rows, dtype=np.int32),
        time1=np.full(rows, high, dtype=np.uint32),
        outa1=np.ones(rows, dtype=np.bool_),
        outb1=zeros,
        outc1=zeros,
        outd1=zeros,
        oute1=zeros,
        outf1=zeros,
        time2=np.full(rows, low, dtype=np.uint32),
        outa2=zeros,
        outb2=zeros,
        outc2=zeros,
        outd2=zeros,
        oute2=zeros,
        outf2=zeros,
    )


def _table_seconds(info: SeqTableInfo) -> float:
    table = info.sequence_table
    units = np.asarray(table.repeats, dtype=np.float64) * (
        np.asarray(table.time1, dtype=np.float64) + np.asarray(table.time2, np.float64)
    )
    return float(units.sum()) * max(info.repeats, 1) * info.prescale_as_us * 1e-6


@dataclass
class SeqFlyLogic(StaticSeqTableFlyableLogic):
    """ophyd-async's SEQ table flyer, with a kickoff that copes with polling.

    Also records the host clock just before and just after the ENABLE write
    (:attr:`enabled_between`), the anchor of the PandA's timestamps in host
    time for the asynchronous plan.
    """

    #: Seconds the loaded table runs for (set by prepare).
    duration: float = field(default=0.0, init=False)
    #: Host ``time.time()`` before and after the SEQ was enabled.
    enabled_between: tuple[float, float] | None = field(default=None, init=False)

    async def on_prepare(self, value: SeqTableInfo) -> None:
        self.enabled_between = None
        self.duration = _table_seconds(value)
        await super().on_prepare(value)

    async def on_kickoff(self, ctx: None) -> None:
        before = time.time()
        await self.seq.enable.set(PandaBitMux.ONE)
        self.enabled_between = (before, time.time())
        if self.duration >= ACTIVE_VISIBLE:
            await wait_for_value(self.seq.active, True, timeout=1)


@dataclass
class PcompFlyLogic(StaticPcompFlyableLogic):
    """ophyd-async's PCOMP flyer, with a kickoff that copes with polling.

    ``duration`` is how long the block will be active (motion from run-up
    start to the last point); the plan knows it, the block does not.
    """

    duration: float = 0.0

    async def on_kickoff(self, ctx: None) -> None:
        await self.pcomp.enable.set(PandaBitMux.ONE)
        if self.duration >= ACTIVE_VISIBLE:
            await wait_for_value(self.pcomp.active, True, timeout=1)


@dataclass(frozen=True)
class StreamedSeqInfo:
    """What :class:`StreamedSeqFlyLogic` is prepared with (the lines come
    from its stream)."""

    prescale_as_us: float


@dataclass
class StreamedSeqFlyLogic(FlyableLogic[StreamedSeqInfo, None]):
    """A SEQ whose table is streamed while it runs (:class:`TableStream`).

    Prepare sets the prescale through the IOC, releases the table and queues
    its first lines through the PandA's control port; kickoff enables the
    SEQ and starts feeding; complete waits for the last buffer, then for the
    SEQ to finish. A table that ran dry fails complete with
    :class:`~.errors.TableRanDry` naming the first frame not triggered
    (``frame_of_line`` maps a table line, from 0, to it).
    """

    seq: Any
    stream: TableStream
    frame_of_line: Callable[[int], int]
    #: Seconds the table runs for, at the least (for kickoff's ACTIVE check).
    duration: float = 0.0
    enabled_between: tuple[float, float] | None = field(default=None, init=False)
    _feeding: asyncio.Task[None] | None = field(default=None, init=False)

    async def on_prepare(self, value: StreamedSeqInfo) -> None:
        await asyncio.gather(
            self.seq.prescale_units.set(PandaTimeUnits.US),
            self.seq.enable.set(PandaBitMux.ZERO),
            # Once: a table that is one buffer (its first TABLE<<| is its
            # last) is loaded as a fixed one, so REPEATS applies, and at 0
            # the SEQ would run it again for ever.
            self.seq.repeats.set(1),
        )
        await self.seq.prescale.set(value.prescale_as_us)
        await self._named(self.stream.preload())

    async def on_kickoff(self, ctx: None) -> None:
        before = time.time()
        await self.seq.enable.set(PandaBitMux.ONE)
        self.enabled_between = (before, time.time())
        self._feeding = asyncio.ensure_future(self._named(self.stream.run()))
        if self.duration >= ACTIVE_VISIBLE:
            await wait_for_value(self.seq.active, True, timeout=1)

    async def on_complete(self, ctx: None) -> None:
        if self._feeding is not None:
            await self._feeding
        await wait_for_value(self.seq.active, False, timeout=None)
        try:
            await self._named(self.stream.check_health())
        finally:
            await self.stream.release()

    async def stop(self) -> None:
        if self._feeding is not None:
            self._feeding.cancel()
        await self.seq.enable.set(PandaBitMux.ZERO)
        await self.stream.release()

    async def _named(self, step: Awaitable[None]) -> None:
        try:
            await step
        except TableUnderrun as exc:
            frame = self.frame_of_line(max(exc.line - 1, 0))
            raise TableRanDry(
                exc.block,
                f"{exc} (frame {frame} was the first not triggered): the host "
                "fed the table too slowly (a busy or distant host); lengthen "
                "the frames or keep more lines queued (TableStream.low_water)",
                frame=frame,
            ) from exc
