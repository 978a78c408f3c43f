"""Firmware blocks end to end: the real PandABlocks-ioc, driven through its PVs
by ophyd-async's ``HDFPanda``, writing HDF5 read back with h5py.

* FMC_IN: a spectroscopy-style capture of four ADC channels (sine, sawtooth,
  constant on the 5 V range, seeded noise), Min Max Mean over SEQ gates,
  against the values the documented signals give after 1 MHz sampling and
  18-bit conversion;
* SRGATE: a gate opened and closed by two PULSE delays, gating PCAP's
  accumulations (gate duration, first/last gated tick, a counter's Diff);
* LUT: a trigger made of two clocks ANDed, captured on the exact ticks.

The simulator's ``*SIM.SIGNAL`` commands (not the IOC's business) go to its
control port. Each test leaves the blocks it enabled disabled, its captures
cleared (through the IOC) and the FMC channels at 0 V, for the rest of the
session.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
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
from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Raw

from panda_flyscan.app.simulated.launcher import SimulatedBeamline
from panda_flyscan.storage.hdf5 import read_datasets

pytestmark = pytest.mark.ioc

TPS = 125_000_000
#: Ticks between ADC conversions (1 MHz), on multiples of it.
SAMPLE = 125
#: One tick, in the seconds PCAP's timestamps are scaled to.
TICK = 8e-9


async def send(beamline: SimulatedBeamline, *lines: str) -> None:
    """Commands to the simulator's control port (``*SIM.`` and clean-up)."""
    async with AsyncioClient(beamline.panda_host) as client:
        for line in lines:
            await client.send(Raw([line]))


async def restore(block_fields: list[tuple[Any, str]], enables: list[Any]) -> None:
    """Through the IOC (so that its PVs and DATASETS follow): each captured
    ``(block, field)`` back to CAPTURE No and an empty DATASET, each enable to
    ZERO. (Writing the PandA behind the IOC's back leaves the IOC unaware
    until its next poll, and an IOC put of the value it believes is there
    does nothing.)"""
    await asyncio.gather(
        *(getattr(b, f"{f}_capture").set("No") for b, f in block_fields),
        *(getattr(b, f"{f}_dataset").set("") for b, f in block_fields),
        *(e.set("ZERO") for e in enables),
    )


async def connect(beamline: SimulatedBeamline, directory: Path, name: str) -> HDFPanda:
    provider = StaticPathProvider(StaticFilenameProvider(name), directory)
    async with init_devices():
        panda = HDFPanda(beamline.panda_prefix, provider)
    return panda


async def capture(
    panda: HDFPanda,
    events: int,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Arm PCAP through the IOC for ``events`` frames, run ``start`` (what
    makes the triggers), wait until the IOC has written them all, run
    ``stop``.

    (``prepare`` arms PCAP: triggers must only start after ``kickoff``.)
    """
    await panda.stage()
    try:
        await panda.prepare(
            TriggerInfo(number_of_events=events, trigger=DetectorTrigger.EXTERNAL_LEVEL)
        )
        await panda.kickoff()
        await start()
        await asyncio.wait_for(panda.complete(), timeout=60)
    finally:
        if stop is not None:
            await stop()
        await panda.unstage()


async def start_bit(panda: HDFPanda) -> tuple[Callable[[], Awaitable[None]], ...]:
    """BITS.A low now; returns (raise it, drop it): what starts and stops a
    free-running capture wired to BITS.OUTA."""
    bits = panda.bits  # type: ignore[attr-defined]
    await bits.a.set(0)

    async def start() -> None:
        await bits.a.set(1)

    async def stop() -> None:
        await bits.a.set(0)

    return start, stop


def read_h5(path: Path, *names: str) -> dict[str, np.ndarray]:
    """Datasets of a file the IOC wrote and closed, by name (the IOC lists
    only ``NAME`` for Min Max captures: ``NAME-min``/``NAME-max`` are read
    here directly)."""
    return dict(zip(names, read_datasets(path, *names), strict=True))


def ticks(seconds: np.ndarray) -> np.ndarray:
    """PCAP timestamps (s) as ticks."""
    return np.rint(np.asarray(seconds) / TICK).astype(np.int64)


# -- FMC_IN ----------------------------------------------------------------------


def adc_word(volts: float, full_scale: float = 10.0) -> int:
    """What an 18-bit conversion of ``volts`` puts in VALn: the code
    ``floor(v / range * 2**17 + 0.5)``, clipped, left-justified in 32 bits."""
    code = math.floor(volts / full_scale * 2**17 + 0.5)
    return max(-(2**17), min(2**17 - 1, code)) * 2**14


async def test_fmc_in_mean_min_max_over_gates_equal_the_analytic_signals(
    beamline: SimulatedBeamline, tmp_path: Path
) -> None:
    """Gates of 1 and 2 ms (whole periods of the 1 kHz sine and of the 1 ms
    sawtooth) see every sampled phase of them equally often, so each gate's
    Mean, Min and Max are those of one period's 1000 conversions, whatever
    the gates' phase: computed here from the documented signals."""
    panda = await connect(beamline, tmp_path, "fmc")
    fmc, pcap, seq = panda.fmc_in, panda.pcap, panda.seq[1]  # type: ignore[attr-defined]
    channels = {1: "sine", 2: "sawtooth", 3: "dc", 4: "noise"}
    await asyncio.gather(
        fmc.gain1.set("10V"),
        fmc.gain2.set("10V"),
        fmc.gain3.set("5V"),
        fmc.gain4.set("10V"),
        *(getattr(fmc, f"val{n}_capture").set("Min Max Mean") for n in channels),
        *(getattr(fmc, f"val{n}_dataset").set(name) for n, name in channels.items()),
        pcap.gate_duration_capture.set("Value"),  # type: ignore[attr-defined]
        pcap.gate_duration_dataset.set("gate"),  # type: ignore[attr-defined]
        seq.enable.set(PandaBitMux.ZERO),
        seq.prescale_units.set(PandaTimeUnits.US),
        pcap.enable.set("SEQ1.ACTIVE"),  # type: ignore[attr-defined]
        pcap.gate.set("SEQ1.OUTA"),  # type: ignore[attr-defined]
        pcap.trig.set("SEQ1.OUTA"),  # type: ignore[attr-defined]
        pcap.trig_edge.set("Falling"),  # type: ignore[attr-defined]
    )
    await seq.prescale.set(1.0)
    await seq.repeats.set(1)
    # Three 1 ms gates, then two of 2 ms, 0.5 ms apart: one frame each.
    gates_ms = [1, 1, 1, 2, 2]
    await seq.table.set(
        SeqTable.row(
            repeats=3, trigger=SeqTrigger.IMMEDIATE, time1=1000, outa1=True, time2=500
        )
        + SeqTable.row(
            repeats=2, trigger=SeqTrigger.IMMEDIATE, time1=2000, outa1=True, time2=500
        )
    )
    scale = await fmc.val1_scale.get_value()
    assert scale == pytest.approx(10 / 2**31, rel=1e-8)

    async def start() -> None:
        # The signals are chosen just before the gates run: a changing
        # signal costs the simulation a conversion every microsecond.
        await send(
            beamline,
            "*SIM.SIGNAL.FMC_IN1=sine amplitude=2 frequency=1000 offset=0.5",
            "*SIM.SIGNAL.FMC_IN2=ramp start=-1 slope=2000 period=0.001",
            "*SIM.SIGNAL.FMC_IN3=constant 1.2345",
            "*SIM.SIGNAL.FMC_IN4=noise sigma=0.1 mean=-0.3 seed=7",
        )
        await seq.enable.set(PandaBitMux.ONE)

    try:
        await capture(panda, len(gates_ms), start)
        await wait_for_value(seq.active, False, timeout=10)
    finally:
        await send(beamline, *(f"*SIM.SIGNAL.FMC_IN{n}=constant 0" for n in channels))
        await restore(
            [(fmc, f"val{n}") for n in channels] + [(pcap, "gate_duration")],
            [seq.enable, pcap.enable],  # type: ignore[attr-defined]
        )
    names = ["gate"] + [
        f"{n}{s}" for n in channels.values() for s in ("", "-min", "-max")
    ]
    data = read_h5(tmp_path / "fmc.h5", *names)
    np.testing.assert_array_equal(
        ticks(data["gate"]), [g * TPS // 1000 for g in gates_ms]
    )

    def expect(name: str, words: list[int]) -> None:
        """Every gate's Mean, Min, Max are those of ``words`` (one period)."""
        n = len(gates_ms)
        mean = sum(words) / len(words) * scale
        np.testing.assert_allclose(data[name], [mean] * n, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(data[f"{name}-min"], [min(words) * scale] * n)
        np.testing.assert_array_equal(data[f"{name}-max"], [max(words) * scale] * n)

    # offset + amplitude sin(2 pi f t), t from tick 0, sampled every 125 ticks.
    expect(
        "sine",
        [
            adc_word(0.5 + 2.0 * math.sin(2 * math.pi * 1000.0 * (125 * k / TPS)))
            for k in range(1000)
        ],
    )
    # start + slope * t, t modulo 1 ms from the first conversion after the
    # command: sampled at 0, 1, ... 999 us of each period.
    expect("sawtooth", [adc_word(-1.0 + 2000.0 * (125 * j / TPS)) for j in range(1000)])
    # 5 V range: full scale is 5 V, SCALE still 10 V / 2**31, so the reading
    # is twice the voltage (as on the hardware).
    expect("dc", [adc_word(1.2345, 5.0)])
    assert data["dc"][0] == pytest.approx(2 * 1.2345, abs=10 / 2**17)
    # Noise: 1000 or 2000 samples a gate, mean within 5 standard errors,
    # extremes beyond 2 sigma and within 6 (a pure function of seed and tick:
    # reproducible, and these bounds are met by a wide margin).
    samples = np.array(gates_ms) * 1000
    assert np.all(np.abs(data["noise"] + 0.3) < 5 * 0.1 / np.sqrt(samples))
    assert np.all((data["noise-max"] > -0.3 + 0.2) & (data["noise-max"] < -0.3 + 0.6))
    assert np.all((data["noise-min"] < -0.3 - 0.2) & (data["noise-min"] > -0.3 - 0.6))
    with h5py.File(tmp_path / "fmc.h5") as f:
        assert len(f["noise"]) == len(gates_ms)  # type: ignore[arg-type]


# -- SRGATE ----------------------------------------------------------------------


async def test_srgate_set_and_reset_by_pulses_gates_the_capture(
    beamline: SimulatedBeamline, tmp_path: Path
) -> None:
    """A start bit (BITS.A) enables PCAP and starts CLOCK1, which triggers it
    every 1 ms, and fires PULSE1 and PULSE2, which set SRGATE1 2.3 ms and
    reset it 6.7 ms later; PCAP.GATE is SRGATE1.OUT. Only the frames
    overlapping the gate accumulate: gate duration, first and last gated
    tick, and COUNTER1 (counting a 100 kHz CLOCK2) captured as Diff count
    only gated edges."""
    panda = await connect(beamline, tmp_path, "srgate")
    pcap = panda.pcap
    clock1, clock2 = panda.clock[1], panda.clock[2]  # type: ignore[attr-defined]
    # Typed by ophyd-async with the few fields its flyers use: the rest come
    # from the IOC's PVI, as for the untyped blocks.
    p1: Any = panda.pulse[1]
    p2: Any = panda.pulse[2]
    gate, counter = panda.srgate[1], panda.counter[1]  # type: ignore[attr-defined]
    period, fast, d_set, d_rst, frames = 125_000, 1250, 287_500, 837_500, 11
    start, stop = await start_bit(panda)
    await asyncio.gather(
        clock1.enable.set("ZERO"),
        clock2.enable.set("ZERO"),
        clock1.period_units.set("us"),
        clock2.period_units.set("us"),
        clock1.width.set(0),
        clock2.width.set(0),
        *(p.enable.set("ZERO") for p in (p1, p2)),
        *(p.delay_units.set("us") for p in (p1, p2)),
        *(p.width_units.set("us") for p in (p1, p2)),
        gate.enable.set("ZERO"),
        gate.when_disabled.set("Set output low"),
    )
    await asyncio.gather(
        clock1.period.set(period / 125),
        clock2.period.set(fast / 125),
        p1.delay.set(d_set / 125),
        p2.delay.set(d_rst / 125),
        *(p.width.set(10) for p in (p1, p2)),
        *(p.pulses.set(1) for p in (p1, p2)),
        *(p.trig.set("BITS.OUTA") for p in (p1, p2)),
        *(p.trig_edge.set("Rising") for p in (p1, p2)),
        gate.set_.set("PULSE1.OUT"),
        gate.rst.set("PULSE2.OUT"),
        gate.set_edge.set("Rising"),
        gate.rst_edge.set("Rising"),
        counter.enable.set("PCAP.ACTIVE"),
        counter.trig.set("CLOCK2.OUT"),
        counter.step.set(1),
        counter.out_capture.set("Diff"),
        counter.out_dataset.set("counts"),
        pcap.enable.set("BITS.OUTA"),  # type: ignore[attr-defined]
        pcap.gate.set("SRGATE1.OUT"),  # type: ignore[attr-defined]
        pcap.trig.set("CLOCK1.OUT"),  # type: ignore[attr-defined]
        pcap.trig_edge.set("Rising"),  # type: ignore[attr-defined]
        *(
            getattr(pcap, f"{f}_capture").set("Value")
            for f in ("ts_trig", "gate_duration", "ts_start", "ts_end")
        ),
        *(
            getattr(pcap, f"{f}_dataset").set(f)
            for f in ("ts_trig", "gate_duration", "ts_start", "ts_end")
        ),
    )
    # Enabled last: SRGATE1 leaves its disabled (low) state with OUT low.
    await asyncio.gather(
        clock1.enable.set("BITS.OUTA"),
        clock2.enable.set("BITS.OUTA"),
        *(p.enable.set("ONE") for p in (p1, p2)),
        gate.enable.set("ONE"),
    )
    try:
        await capture(panda, frames, start, stop)
    finally:
        await restore(
            [(counter, "out")]
            + [(pcap, f) for f in ("ts_trig", "gate_duration", "ts_start", "ts_end")],
            [
                pcap.enable,  # type: ignore[attr-defined]
                clock1.enable,
                clock2.enable,
                p1.enable,
                p2.enable,
                gate.enable,
                counter.enable,
            ],
        )
    data = read_h5(
        tmp_path / "srgate.h5",
        "ts_trig",
        "gate_duration",
        "ts_start",
        "ts_end",
        "counts",
    )
    # Ticks from the tick PCAP sees its enable (BITS.OUTA), which CLOCK1
    # sees on the same tick: its registered enable starts it a tick later and
    # PCAP sees its edge one more tick on, 2 ticks. PULSE1/2 see BITS.OUTA on
    # that tick too, SRGATE1 sees their pulse a tick after it, PCAP the gate
    # a tick after that: 2 ticks plus the delay. Frames may follow the
    # requested ones until the start bit drops: they follow the same rule.
    lag = 2
    assert len(data["ts_trig"]) >= frames
    frames = len(data["ts_trig"])
    trig = lag + period * np.arange(frames)
    on, off = lag + d_set, lag + d_rst
    np.testing.assert_array_equal(ticks(data["ts_trig"]), trig)
    windows = list(zip([0, *trig[:-1]], trig, strict=True))
    gated = [(max(a, on), min(b, off)) for a, b in windows]
    duration = [max(0, b - a) for a, b in gated]
    assert sum(duration) == d_rst - d_set
    assert [d > 0 for d in duration] == [False] * 3 + [True] * 5 + [False] * (
        frames - 8
    )
    np.testing.assert_array_equal(ticks(data["gate_duration"]), duration)
    np.testing.assert_array_equal(
        ticks(data["ts_start"]),
        [a if d else -1 for (a, _), d in zip(gated, duration, strict=True)],
    )
    np.testing.assert_array_equal(
        ticks(data["ts_end"]),
        [b if d else -1 for (_, b), d in zip(gated, duration, strict=True)],
    )
    # CLOCK2 edges reach PCAP, as CLOCK1's, `lag` ticks after each start of
    # its period; COUNTER1 counts each a tick later: a gated Diff counts the
    # edges that came on gated ticks.
    edges = lag + fast * np.arange(frames * period // fast + 1)
    counts = [int(np.count_nonzero((edges >= a) & (edges < b))) for a, b in gated]
    assert sum(counts) == (d_rst - d_set) // fast
    np.testing.assert_array_equal(data["counts"], counts)


# -- LUT ---------------------------------------------------------------------------


async def test_lut_and_of_two_clocks_triggers_on_the_coincidences(
    beamline: SimulatedBeamline, tmp_path: Path
) -> None:
    """LUT1 = A&B of CLOCK1 (300 us period, 100 us high) and CLOCK2 (500 us,
    250 us high), both started with PCAP by a start bit: PCAP triggers on the
    rising edges of the AND, COUNTER1 counts them."""
    panda = await connect(beamline, tmp_path, "lut")
    pcap = panda.pcap
    clock1, clock2 = panda.clock[1], panda.clock[2]  # type: ignore[attr-defined]
    lut, counter = panda.lut[1], panda.counter[1]  # type: ignore[attr-defined]
    frames = 9
    start, stop = await start_bit(panda)
    await asyncio.gather(
        clock1.enable.set("ZERO"),
        clock2.enable.set("ZERO"),
        clock1.period_units.set("us"),
        clock2.period_units.set("us"),
        clock1.width_units.set("us"),
        clock2.width_units.set("us"),
    )
    await asyncio.gather(
        clock1.period.set(300),
        clock1.width.set(100),
        clock2.period.set(500),
        clock2.width.set(250),
        lut.inpa.set("CLOCK1.OUT"),
        lut.inpb.set("CLOCK2.OUT"),
        *(getattr(lut, f"type{x}").set("Input-Level") for x in "ab"),
        lut.func.set("A&B"),
        counter.enable.set("PCAP.ACTIVE"),
        counter.trig.set("LUT1.OUT"),
        counter.step.set(1),
        counter.out_capture.set("Value"),
        counter.out_dataset.set("coincidences"),
        pcap.enable.set("BITS.OUTA"),  # type: ignore[attr-defined]
        pcap.gate.set("ONE"),  # type: ignore[attr-defined]
        pcap.trig.set("LUT1.OUT"),  # type: ignore[attr-defined]
        pcap.trig_edge.set("Rising"),  # type: ignore[attr-defined]
        pcap.ts_trig_capture.set("Value"),  # type: ignore[attr-defined]
        pcap.ts_trig_dataset.set("ts_trig"),  # type: ignore[attr-defined]
    )
    await asyncio.gather(clock1.enable.set("BITS.OUTA"), clock2.enable.set("BITS.OUTA"))
    try:
        await capture(panda, frames, start, stop)
    finally:
        await restore(
            [(counter, "out"), (pcap, "ts_trig")],
            [pcap.enable, clock1.enable, clock2.enable, counter.enable],  # type: ignore[attr-defined]
        )
    data = read_h5(tmp_path / "lut.h5", "ts_trig", "coincidences")
    # Both clocks start high on tick 1 after PCAP's enable (see the SRGATE
    # test); on each microsecond u after that A is high for u % 300 < 100 and
    # B for u % 500 < 250. LUT1 sees them a tick later, PCAP its output one
    # more: the AND's rising edges plus 3 ticks. (Frames may follow the
    # requested ones until the start bit drops.)
    assert len(data["ts_trig"]) >= frames
    frames = len(data["ts_trig"])
    u = np.arange(frames * 1000)
    both = (u % 300 < 100) & (u % 500 < 250)
    rising = u[both & ~np.concatenate([[False], both[:-1]])][:frames]
    assert rising[:4].tolist() == [0, 600, 1200, 1500]  # then every 1.5 ms
    np.testing.assert_array_equal(ticks(data["ts_trig"]), 3 + rising * 125)
    # COUNTER1 sees each edge on the tick PCAP captures it; PCAP sees the new
    # count a tick later.
    np.testing.assert_array_equal(data["coincidences"], np.arange(frames))
