"""``panda-flyscan demo``: a SEQ-triggered PandA acquisition on the simulated beamline.

Starts the simulated PandA and the real PandABlocks-ioc, connects ophyd-async's
``HDFPanda``, captures ``frames`` SEQ-timed triggers (TS_TRIG and a COUNTER)
into HDF5 through the IOC, and prints a summary read back from the file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

#: SEQ prescale: table times are in microseconds.
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


def read_datasets(path: Path, *names: str, timeout: float = 10.0) -> list[np.ndarray]:
    """Read whole 1-D datasets from an HDF5 file the PandA IOC wrote.

    The IOC closes the file on its own thread after capture stops, and HDF5
    refuses an open that races the close, so retry until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with h5py.File(path, "r", swmr=True) as f:
                out = []
                for name in names:
                    dataset = f[name]
                    if not isinstance(dataset, h5py.Dataset):
                        raise KeyError(f"{path} has no dataset {name!r}")
                    out.append(np.asarray(dataset[()]))
            return out
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run_demo(frames: int = 1000, period_us: int = 1000, prefix: str = "DEMO") -> None:
    """Start the simulated beamline, capture, print a summary, stop everything."""
    from sim_ioc.launcher import simulated_beamline

    with simulated_beamline(prefix=prefix) as beamline:
        os.environ.update(beamline.env)
        print(f"Simulated PandA at {beamline.panda_host}")
        print(f"IOC serving it as {beamline.panda_prefix}")
        directory = Path(tempfile.mkdtemp(prefix="panda-flyscan-demo-"))
        result = asyncio.run(
            capture_seq_triggered(
                beamline.panda_prefix, directory, frames, period_us, period_us // 2
            )
        )
    spacing = np.diff(result.ts_trig)
    print(f"Wrote {result.path}")
    print(f"  frames captured : {len(result.ts_trig)} (asked for {frames})")
    print(f"  TS_TRIG first   : {result.ts_trig[0]:.9f} s")
    if len(spacing):
        print(
            f"  TS_TRIG spacing : {spacing.mean() * 1e6:.3f} us mean, "
            f"{np.ptp(spacing) * 1e9:.1f} ns peak-to-peak (programmed {period_us} us)"
        )
    print(f"  COUNTER1.OUT    : {result.counter[0]:g} .. {result.counter[-1]:g}")
