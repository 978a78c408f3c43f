"""A SEQ-triggered capture through the IOC: ophyd-async's HDFPanda driven
directly, no plan (the lowest-level end-to-end check of the IOC tests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from panda_flyscan.storage.hdf5 import read_datasets

#: SEQ prescale of :func:`capture_seq_triggered`: table times in microseconds.
PRESCALE_US = 1.0


@dataclass(frozen=True)
class SeqCapture:
    """What a SEQ-triggered capture wrote."""

    path: Path
    frames: int
    period: float
    ts_trig: np.ndarray
    counter: np.ndarray


async def capture_seq_triggered(
    prefix: str, directory: Path, frames: int, period_us: int, pulse_us: int
) -> SeqCapture:
    """Capture ``frames`` triggers ``period_us`` apart through the IOC into HDF5.

    Wiring: SEQ1 pulses OUTA (``pulse_us`` high per ``period_us``); PCAP
    captures TS_TRIG and COUNTER1.OUT on each rising edge while SEQ1 is active;
    COUNTER1 counts the same edges.
    """
    from ophyd_async.core import (
        DetectorTrigger,
        StaticFilenameProvider,
        StaticPathProvider,
        TriggerInfo,
        init_devices,
        wait_for_value,
    )
    from ophyd_async.fastcs.panda import (
        HDFPanda,
        PandaBitMux,
        PandaTimeUnits,
        SeqTable,
        SeqTrigger,
    )

    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if not 0 < pulse_us < period_us:
        raise ValueError(
            f"pulse ({pulse_us} us) must be shorter than the period ({period_us} us)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    provider = StaticPathProvider(StaticFilenameProvider("seq_capture"), directory)
    async with init_devices():
        panda = HDFPanda(prefix, provider)

    seq, pcap = panda.seq[1], panda.pcap
    counter = panda.counter[1]  # type: ignore[attr-defined]
    await asyncio.gather(
        seq.enable.set(PandaBitMux.ZERO),
        seq.prescale_units.set(PandaTimeUnits.US),
        counter.enable.set("PCAP.ACTIVE"),
        counter.trig.set("SEQ1.OUTA"),
        counter.step.set(1),
        counter.out_capture.set("Value"),
        counter.out_dataset.set("counter"),
        pcap.enable.set("SEQ1.ACTIVE"),  # type: ignore[attr-defined]
        pcap.gate.set("ONE"),  # type: ignore[attr-defined]
        pcap.trig.set("SEQ1.OUTA"),  # type: ignore[attr-defined]
        pcap.trig_edge.set("Rising"),  # type: ignore[attr-defined]
        pcap.ts_trig_capture.set("Value"),  # type: ignore[attr-defined]
        pcap.ts_trig_dataset.set("ts_trig"),  # type: ignore[attr-defined]
    )
    await seq.prescale.set(PRESCALE_US)
    await seq.repeats.set(1)
    await seq.table.set(
        SeqTable.row(
            repeats=frames,
            trigger=SeqTrigger.IMMEDIATE,
            time1=pulse_us,
            outa1=True,
            time2=period_us - pulse_us,
        )
    )
    await panda.stage()
    try:
        await panda.prepare(
            TriggerInfo(number_of_events=frames, trigger=DetectorTrigger.EXTERNAL_LEVEL)
        )
        await panda.kickoff()
        await seq.enable.set(PandaBitMux.ONE)
        await panda.complete()
        await wait_for_value(seq.active, False, timeout=10)
    finally:
        await seq.enable.set(PandaBitMux.ZERO)
        await panda.unstage()
    path = directory / "seq_capture.h5"
    ts, count = read_datasets(path, "ts_trig", "counter")
    return SeqCapture(path, frames, period_us * 1e-6, ts, count)
