"""FMC_IN signals chosen with ``*SIM.SIGNAL``, captured by PCAP with Min, Max
and Mean over gates, in process with exact ticks: the captured words equal
what the documented signal, sampled at 1 MHz and converted to 18 bits, gives.

Expectations are computed here from the documentation (sampling on multiples
of 125 ticks, one tick from a conversion to PCAP through the position bus,
``floor(v / range * 2**17 + 0.5)`` left-justified), never by calling the
model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sim_ioc.panda import capture
from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.panda.protocol.control import ControlParser, Session, respond

TPS = 125_000_000
SAMPLE = 125  # ticks between conversions


def code(volts: float, full_scale: float = 10.0) -> int:
    """The 32-bit word an 18-bit conversion gives (left-justified)."""
    c = math.floor(volts / full_scale * 2**17 + 0.5)
    return max(-(2**17), min(2**17 - 1, c)) * 2**14


def program(panda: SimulatedPanda, *lines: str) -> None:
    session = Session()
    for request in ControlParser().feed(("\n".join(lines) + "\n").encode()):
        assert respond(panda, session, request) == "OK\n", request


def gated_stats(
    a: int, b: int, volts: Callable[[int], float], full_scale: float = 10.0
) -> tuple[int, int, int]:
    """(min, max, sum) of the words PCAP sees on ticks ``a``..``b - 1``: on
    tick ``t`` the conversion of tick ``(t - 1) // 125 * 125``."""
    total, words = 0, []
    first = (a - 1) // SAMPLE * SAMPLE
    for c in range(first, b - 1, SAMPLE):
        lo, hi = max(a, c + 1), min(b, c + 1 + SAMPLE)
        if hi > lo:
            w = code(volts(c), full_scale)
            words.append(w)
            total += w * (hi - lo)
    return min(words), max(words), total


def test_sine_ramp_and_gain_over_gates_equal_the_analytic_words() -> None:
    panda = SimulatedPanda()
    events: list[capture.Event] = []
    panda.subscribe(events.append)
    panda.advance(98_765)  # not a multiple of anything in particular
    command_tick = panda.now + 1
    program(
        panda,
        "*SIM.SIGNAL.FMC_IN1=sine amplitude=2 frequency=1000 offset=0.5 phase=0.3",
        "*SIM.SIGNAL.FMC_IN2=ramp start=-5 slope=1000",
        "*SIM.SIGNAL.FMC_IN3=constant 1.2345",
        "FMC_IN.GAIN3=5V",
        # Gates of 0.3 ms every 0.7 ms: not whole periods of anything.
        "CLOCK1.PERIOD.UNITS=us",
        "CLOCK1.PERIOD=700",
        "CLOCK1.WIDTH.UNITS=us",
        "CLOCK1.WIDTH=300",
        "CLOCK1.ENABLE=PCAP.ACTIVE",
        "PCAP.ENABLE=ONE",
        "PCAP.GATE=CLOCK1.OUT",
        "PCAP.TRIG=CLOCK1.OUT",
        "PCAP.TRIG_EDGE=Falling",
        "FMC_IN.VAL1.CAPTURE=Min Max Mean",
        "FMC_IN.VAL2.CAPTURE=Min Max Mean",
        "FMC_IN.VAL3.CAPTURE=Min Max Mean",
        "PCAP.GATE_DURATION.CAPTURE=Value",
    )
    # When PCAP sees its gate rise and fall (the engine's world hook).
    gate: list[tuple[int, int]] = []
    panda.engine.listen_input("PCAP", "GATE", lambda ts, v: gate.append((ts, v)))
    panda.advance(panda.now + 1000)
    panda.arm()
    panda.advance(panda.now + 6 * 87_500 - 1000)
    [start] = [e for e in events if isinstance(e, capture.Start)]
    frames = np.concatenate([e.frames for e in events if isinstance(e, capture.Frames)])
    cols = {f"{c.name}.{c.capture}": c.values(frames) for c in start.plan.columns}
    levels = [0] + [v for _, v in gate]
    edges = [
        (ts, v) for (ts, v), before in zip(gate, levels, strict=False) if v != before
    ]
    rises = [ts for ts, v in edges if v]
    falls = [ts for ts, v in edges if not v]
    windows = list(zip(rises, falls, strict=False))[: len(frames)]
    assert len(frames) == len(windows) == 6

    def sine(c: int) -> float:
        return 0.5 + 2.0 * math.sin(2 * math.pi * 1000.0 * (c / TPS) + 0.3)

    t0 = -(-command_tick // SAMPLE) * SAMPLE  # the first conversion after it

    def ramp(c: int) -> float:
        return -5.0 + 1000.0 * (max(c - t0, 0) / TPS)

    for i, (a, b) in enumerate(windows):
        assert cols["PCAP.GATE_DURATION.Value"][i] == b - a == 37_500
        for name, volts, full in [
            ("FMC_IN.VAL1", sine, 10.0),
            ("FMC_IN.VAL2", ramp, 10.0),
            ("FMC_IN.VAL3", lambda c: 1.2345, 5.0),
        ]:
            lo, hi, total = gated_stats(a, b, volts, full)
            got = (
                int(cols[f"{name}.Min"][i]),
                int(cols[f"{name}.Max"][i]),
                int(cols[f"{name}.Mean"][i]),  # raw Mean: the sum over the gate
            )
            assert got == (lo, hi, total), (name, i)
    # The ramp climbs 0.7 V between gates; the 5 V range doubles the reading
    # (SCALE does not follow the gain).
    scale = 10 / 2**31
    ramp_mean = cols["FMC_IN.VAL2.Mean"] / 37_500 * scale
    np.testing.assert_allclose(np.diff(ramp_mean), 0.7, atol=2 * 10 / 2**17)
    assert (
        cols["FMC_IN.VAL3.Min"][0] * scale == np.float64(code(1.2345, 5.0) * scale)
        and abs(cols["FMC_IN.VAL3.Min"][0] * scale - 2 * 1.2345) < 5 / 2**17
    )


def test_noise_over_a_gate_has_the_requested_statistics_and_is_reproducible() -> None:
    def run() -> np.ndarray:
        panda = SimulatedPanda()
        events: list[capture.Event] = []
        panda.subscribe(events.append)
        program(
            panda,
            "*SIM.SIGNAL.FMC_IN4=noise sigma=0.1 mean=-0.3 seed=7",
            "CLOCK1.PERIOD.UNITS=ms",
            "CLOCK1.PERIOD=3",
            "CLOCK1.WIDTH.UNITS=ms",
            "CLOCK1.WIDTH=2",
            "CLOCK1.ENABLE=PCAP.ACTIVE",
            "PCAP.ENABLE=ONE",
            "PCAP.GATE=CLOCK1.OUT",
            "PCAP.TRIG=CLOCK1.OUT",
            "PCAP.TRIG_EDGE=Falling",
            "FMC_IN.VAL4.CAPTURE=Min Max Mean",
        )
        panda.advance(1000)
        panda.arm()
        panda.advance(4 * 375_000)
        [start] = [e for e in events if isinstance(e, capture.Start)]
        frames = np.concatenate(
            [e.frames for e in events if isinstance(e, capture.Frames)]
        )
        scale = 10 / 2**31
        cols = {f"{c.capture}": c.values(frames) for c in start.plan.columns}
        return np.stack(
            [
                cols["Min"] * scale,
                cols["Max"] * scale,
                cols["Mean"] / 250_000 * scale,
            ]
        )

    lo, hi, mean = first = run()
    assert len(mean) == 4
    # 2000 samples per gate: the mean within 5 standard errors (a pure
    # function of seed and tick, so this never flickers), extremes beyond 2
    # sigma and within 6.
    sigma, centre = 0.1, -0.3
    assert np.all(np.abs(mean - centre) < 5 * sigma / math.sqrt(2000))
    assert np.all(hi > centre + 2 * sigma) and np.all(hi < centre + 6 * sigma)
    assert np.all(lo < centre - 2 * sigma) and np.all(lo > centre - 6 * sigma)
    assert len(set(mean.tolist())) == 4  # fresh samples in every gate
    np.testing.assert_array_equal(run(), first)  # same seed, same ticks
