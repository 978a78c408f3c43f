"""The detector's exposure output drives a PandA TTLIN, tick for tick.

In process (exact ticks): the detector model on a simulated PandA, triggered
by a PULSE train on TTLOUT1, its exposing or busy level on TTLIN2. Through the
real IOC: the stock ``SimDetector``, internally triggered, and ``HDFPanda``
capturing the edges of TTLIN1 (the default cable).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from beamline_helpers import sim_detector
from ophyd_async.core import (
    DetectorTrigger,
    StaticFilenameProvider,
    StaticPathProvider,
    TriggerInfo,
    init_devices,
)
from ophyd_async.fastcs.panda import HDFPanda

from panda_flyscan.app.simulated.launcher import SimulatedBeamline
from sim_ioc.detector import DetectorConfig, SimAreaDetector, decode
from sim_ioc.detector.ttl import LevelSignal
from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.panda.protocol.control import ControlParser, Session, respond
from sim_ioc.panda.server import PandaServer
from sim_ioc.world import TICKS_PER_SECOND

MS = TICKS_PER_SECOND // 1000


class Bench:
    """A simulated PandA with the detector model on it, stepped by hand."""

    def __init__(self, signal: LevelSignal) -> None:
        self.panda = panda = SimulatedPanda()
        self.detector = SimAreaDetector(
            PandaServer(panda),
            "T:DET:",
            lambda ts: 0.0,
            DetectorConfig(ttlin=2, ttlin_signal=signal),
        )
        #: (tick, level) of each change of TTLIN2.VAL, and of TTLOUT1.
        self.ttlin: list[tuple[int, int]] = []
        self.triggers: list[tuple[int, int]] = []
        # The bus shows a block's output one tick after the block set it.
        panda.engine.listen_bit(
            panda.catalog.bit_bus["TTLIN2.VAL"],
            lambda ts, index, v: self.ttlin.append((ts - 1, v)),
        )
        panda.watch_ttlout(1, lambda ts, v: self.triggers.append((ts, v)))

    def send(self, *lines: str) -> None:
        session = Session()
        for request in ControlParser().feed(("\n".join(lines) + "\n").encode()):
            assert respond(self.panda, session, request) == "OK\n", request

    def pulses(self, n: int, step_ms: float, width_ms: float) -> None:
        """PULSE1 puts ``n`` pulses on TTLOUT1 once BITS.A rises."""
        self.send(
            "BITS.A=0",
            "PULSE1.ENABLE=ONE",
            "PULSE1.TRIG=BITS.OUTA",
            "PULSE1.WIDTH.UNITS=ms",
            f"PULSE1.WIDTH={width_ms}",
            "PULSE1.STEP.UNITS=ms",
            f"PULSE1.STEP={step_ms}",
            f"PULSE1.PULSES={n}",
            "TTLOUT1.VAL=PULSE1.OUT",
        )

    async def arm(self, mode: str, exposure_ms: float, frames: int) -> None:
        det = self.detector
        await det.trigger_mode.set(mode)
        await det.acquire_time.set(exposure_ms / 1000)
        await det.num_images.set(frames)
        await det.image_mode.set("Multiple")
        self.panda.advance(self.panda.now + 1000)
        # The Acquire put handler (the put itself would wait for the frames,
        # which nothing publishes here).
        await det._put_acquire(1)  # pyright: ignore[reportPrivateUsage]

    def run(self, ms: float) -> None:
        self.panda.advance(self.panda.now + int(ms * MS))


def rises(levels: list[tuple[int, int]]) -> list[int]:
    return [ts for ts, v in levels if v]


@pytest.mark.parametrize(
    ("signal", "high_ms"), [("exposing", 2), ("busy", 2 + 1)]
)  # readout 1 ms
async def test_edge_triggered_exposures_on_ttlin_one_tick_after_they_start(
    signal: LevelSignal, high_ms: int
) -> None:
    bench = Bench(signal)
    bench.pulses(3, step_ms=5, width_ms=0.5)
    await bench.arm("Rising Edge", exposure_ms=2, frames=3)
    bench.send("BITS.A=1")
    bench.run(20)
    starts = rises(bench.triggers)
    assert len(starts) == 3 and set(np.diff(starts)) == {5 * MS}
    expected: list[tuple[int, int]] = []
    for s in starts:
        expected += [(s + 1, 1), (s + 1 + high_ms * MS, 0)]
    assert bench.ttlin == expected


async def test_busy_stays_high_when_a_trigger_comes_as_the_readout_ends() -> None:
    bench = Bench("busy")
    # Exposure 2 ms + readout 1 ms: a trigger every 3 ms is taken on the very
    # tick the detector becomes ready again, so it never stops being busy.
    bench.pulses(3, step_ms=3, width_ms=0.5)
    await bench.arm("Rising Edge", exposure_ms=2, frames=3)
    bench.send("BITS.A=1")
    bench.run(20)
    s = rises(bench.triggers)
    assert bench.ttlin == [(s[0] + 1, 1), (s[2] + 1 + 3 * MS, 0)]
    assert bench.detector.dropped.value == 0


async def test_gated_exposure_follows_the_gate_and_a_stop_drops_the_level() -> None:
    bench = Bench("exposing")
    bench.pulses(2, step_ms=5, width_ms=1.5)
    await bench.arm("Exp. Gate", exposure_ms=1, frames=5)
    bench.send("BITS.A=1")
    bench.run(12)
    gate = bench.triggers
    assert [v for _, v in gate] == [1, 0, 1, 0]
    assert bench.ttlin == [(ts + 1, v) for ts, v in gate]
    # Stopped in the middle of a third gate: the level drops on the next tick
    # and nothing is left scheduled for it.
    bench.send("BITS.A=0", "PULSE1.PULSES=1")
    bench.run(0.1)
    bench.send("BITS.A=1")
    bench.run(0.5)
    assert bench.ttlin[-1][1] == 1
    stopped = bench.panda.now
    acquire = bench.detector.acquire.setpoint
    assert acquire is not None
    await acquire.write(0)
    bench.run(10)
    assert bench.ttlin[-1] == (stopped + 1, 0)
    assert len(bench.ttlin) == 6


async def test_no_ttlin_when_the_output_is_not_cabled() -> None:
    panda = SimulatedPanda()
    det = SimAreaDetector(
        PandaServer(panda), "T:DET:", lambda ts: 0.0, DetectorConfig(ttlin=0)
    )
    assert det.exposure_output is None
    with pytest.raises(ValueError, match="TTLIN7 is not a TTL input"):
        SimAreaDetector(
            PandaServer(panda), "U:DET:", lambda ts: 0.0, DetectorConfig(ttlin=7)
        )


# -- through the real IOC ------------------------------------------------------


@pytest.mark.ioc
async def test_internal_exposures_captured_on_ttlin1_edges_through_the_ioc(
    beamline: SimulatedBeamline, tmp_path: Path
) -> None:
    """PCAP captures both edges of TTLIN1 (the detector's exposure output)
    while the stock SimDetector takes 5 internally triggered exposures of
    4 ms every 10 ms; COUNTER1 counts the rising edges."""
    frames, exposure, period = 5, 0.004, 0.010
    provider = StaticPathProvider(StaticFilenameProvider("ttlin"), tmp_path)
    async with init_devices():
        panda = HDFPanda(beamline.panda_prefix, provider)
    pcap = panda.pcap
    counter = panda.counter[1]  # type: ignore[attr-defined]
    await asyncio.gather(
        counter.enable.set("PCAP.ACTIVE"),
        counter.trig.set("TTLIN1.VAL"),
        counter.step.set(1),
        counter.out_capture.set("Value"),
        counter.out_dataset.set("exposures"),
        pcap.enable.set("ONE"),  # type: ignore[attr-defined]
        pcap.gate.set("ONE"),  # type: ignore[attr-defined]
        pcap.trig.set("TTLIN1.VAL"),  # type: ignore[attr-defined]
        pcap.trig_edge.set("Either"),  # type: ignore[attr-defined]
        pcap.ts_trig_capture.set("Value"),  # type: ignore[attr-defined]
        pcap.ts_trig_dataset.set("ts"),  # type: ignore[attr-defined]
    )
    # (sim_detector puts the shared detector back in internal trigger mode)
    det = await sim_detector(beamline, tmp_path / "det")
    (tmp_path / "det").mkdir()
    await panda.stage()
    try:
        await panda.prepare(
            TriggerInfo(
                number_of_events=2 * frames, trigger=DetectorTrigger.EXTERNAL_LEVEL
            )
        )
        await panda.kickoff()
        await det.stage()
        try:
            await det.prepare(
                TriggerInfo(
                    number_of_events=frames,
                    livetime=exposure,
                    deadtime=period - exposure,
                )
            )
            await det.kickoff()
            await det.complete()
        finally:
            await det.unstage()
        await asyncio.wait_for(panda.complete(), timeout=60)
    finally:
        await panda.unstage()
        # Through the IOC, so that its PVs (and DATASETS) follow.
        await asyncio.gather(
            counter.out_capture.set("No"),
            counter.out_dataset.set(""),
            pcap.ts_trig_capture.set("No"),  # type: ignore[attr-defined]
            pcap.ts_trig_dataset.set(""),  # type: ignore[attr-defined]
            counter.enable.set("ZERO"),
        )
    from panda_flyscan.storage.hdf5 import read_datasets

    ts, count = read_datasets(tmp_path / "ttlin.h5", "ts", "exposures")
    ticks = np.rint(np.asarray(ts) / 8e-9).astype(np.int64)
    [images] = read_datasets(tmp_path / "det" / "sim.h5", "/entry/data/data")
    starts = np.array([decode(image).tick for image in images], dtype=np.int64)
    assert len(ticks) == 2 * frames and len(starts) == frames
    rise, fall = ticks[0::2], ticks[1::2]
    # Exactly the exposure length high, exactly the period apart...
    np.testing.assert_array_equal(fall - rise, round(exposure * TICKS_PER_SECOND))
    np.testing.assert_array_equal(np.diff(rise), round(period * TICKS_PER_SECOND))
    # ...and on the very ticks the detector's frames say the exposures began:
    # one fixed offset between the detector's clock and PCAP's enable.
    assert len(set((rise - starts).tolist())) == 1
    # COUNTER1 counted each rising edge once. It sees the edge on the tick
    # PCAP captures it, and PCAP sees its new count one tick later: k - 1 at
    # the k-th rise, k at the fall that follows.
    np.testing.assert_array_equal(count[0::2], np.arange(frames))
    np.testing.assert_array_equal(count[1::2], np.arange(1, frames + 1))
