"""Square-wave trains computed in bulk give exactly what event-by-event
simulation gives: the same frames, bus, block states, queue and event count.

Each scenario runs two simulated PandAs side by side, one with trains and one
without, through the same commands on the same ticks, and compares them at
every step.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from sim_ioc.panda.capture import Frames
from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.panda.engine import Engine
from sim_ioc.panda.models.clock import Clock
from sim_ioc.panda.models.counter import Counter
from sim_ioc.panda.models.pcap import Pcap
from sim_ioc.panda.protocol import control

#: Fields that only the model's own bookkeeping uses (compared through drain).
_SKIP = {"changes", "_chunks", "_stream", "bus", "memory", "encoder"}


def _state(panda: SimulatedPanda) -> dict[str, Any]:
    engine = panda.engine
    blocks = {
        name: {k: v for k, v in vars(block).items() if k not in _SKIP}
        for name, block in engine.blocks.items()
        if isinstance(block, Clock | Counter | Pcap)
    }
    for state in blocks.values():
        if "_accs" in state:
            state["_accs"] = [
                (a.index, a.value, a.total, a.squares, a.low, a.high, a.diff)
                for a in state["_accs"]
            ]
        if "_pipeline" in state:
            state["_pipeline"] = list(state["_pipeline"])
    queue = sorted((e[0], e[2], e[3], e[4], e[5]) for e in engine._queue)
    return {
        "now": engine.now,
        "events": engine.events,
        "bits": list(engine.bus.bits),
        "pos": list(engine.bus.pos),
        "wake": dict(engine._wake),
        "queue": queue,
        "blocks": blocks,
    }


class Twin:
    """Two simulated PandAs, with and without trains, driven alike."""

    def __init__(self) -> None:
        self.pandas = [SimulatedPanda(), SimulatedPanda()]
        self.pandas[1].engine.trains = False
        self.frames: list[list[np.ndarray]] = [[], []]
        for panda, frames in zip(self.pandas, self.frames, strict=True):
            panda.subscribe(
                lambda e, f=frames: (
                    f.append(e.frames) if isinstance(e, Frames) else None
                )
            )
        self.sessions = [control.Session(), control.Session()]

    def command(self, line: str) -> None:
        replies = [
            control.respond(p, s, control.Command(line))
            for p, s in zip(self.pandas, self.sessions, strict=True)
        ]
        assert replies[0] == replies[1]
        assert replies[0].startswith("OK"), (line, replies[0])

    def advance(self, ticks: int) -> None:
        until = self.pandas[0].now + ticks
        for panda in self.pandas:
            panda.advance(until)
        self.check()

    def check(self) -> None:
        fast, slow = (_state(p) for p in self.pandas)
        assert fast == slow
        got = [np.concatenate(f) if f else np.empty((0, 0)) for f in self.frames]
        assert got[0].shape == got[1].shape
        assert (got[0] == got[1]).all()

    @property
    def trains(self) -> int:
        return self.pandas[0].engine.train_batches


def _scenario(seed: int) -> Twin:
    rng = random.Random(seed)
    twin = Twin()
    period = rng.choice([3, 7, 10, 33, 60, 125, 1250, 1250])
    width = rng.choice([0, 0, 1, 2, period // 3])
    fields = rng.sample(
        [
            "PCAP.TS_TRIG",
            "PCAP.TS_START",
            "PCAP.TS_END",
            "PCAP.GATE_DURATION",
            "PCAP.BITS1",
            "COUNTER1.OUT",
            "COUNTER2.OUT",
            "COUNTER3.OUT",
            "INENC1.VAL",
        ],
        rng.randint(1, 6),
    )
    lines = ["*CAPTURE="]
    for f in fields:
        lines.append(f"{f}.CAPTURE=Value")
    if rng.random() < 0.15:
        lines.append("INENC1.VAL.CAPTURE=Mean")  # statistics: no trains
    lines += [
        "CLOCK1.ENABLE=ZERO",
        "CLOCK1.PERIOD.UNITS=s",
        f"CLOCK1.PERIOD={period * 8e-9:.12g}",
        f"CLOCK1.WIDTH={width * 8e-9:.12g}",
        f"PCAP.TRIG_EDGE={rng.choice(['Rising', 'Falling', 'Either'])}",
        f"PCAP.GATE={rng.choice(['ONE', 'ONE', 'ZERO', 'CLOCK1.OUT'])}",
        f"PCAP.SHIFT_SUM={rng.choice([0, 0, 3])}",
        "PCAP.ENABLE=ONE",
        "PCAP.TRIG=CLOCK1.OUT",
        f"PCAP.TRIG.DELAY={rng.choice([0, 0, 1, 3])}",
        f"CLOCK1.ENABLE={rng.choice(['PCAP.ACTIVE', 'ONE'])}",
    ]
    for n in (1, 2, 3):
        if rng.random() < 0.2:
            continue  # not wired to the clock
        mode = rng.choice(["On-Change", "On-Change", "On-Disable"])
        lines += [
            f"COUNTER{n}.TRIG=CLOCK1.OUT",
            f"COUNTER{n}.TRIG.DELAY={rng.choice([0, 0, 2])}",
            f"COUNTER{n}.ENABLE={rng.choice(['PCAP.ACTIVE', 'ONE', 'ZERO'])}",
            f"COUNTER{n}.TRIG_EDGE={rng.choice(['Rising', 'Falling', 'Either'])}",
            f"COUNTER{n}.STEP={rng.choice([0, 1, 1, 3, 4294967294])}",
            f"COUNTER{n}.DIR={rng.choice(['ZERO', 'ZERO', 'ONE'])}",
            f"COUNTER{n}.OUT_MODE={mode}",
        ]
        if rng.random() < 0.4:
            # A small range: rollovers (and CARRY) within the run.
            lines += [f"COUNTER{n}.MAX={rng.randint(5, 400)}", f"COUNTER{n}.MIN=-7"]
            lines.append(f"COUNTER{n}.START={rng.randint(-7, 5)}")
    for line in lines:
        twin.command(line)
    twin.advance(100)
    twin.command("*PCAP.ARM=")
    for _ in range(rng.randint(3, 8)):
        twin.advance(rng.choice([1, 5, 50, 999, 20_000, 77_777]))
        roll = rng.random()
        if roll < 0.1:
            twin.command(f"COUNTER1.SET={rng.randint(-5, 50)}")
        elif roll < 0.15:
            twin.command(f"CLOCK1.PERIOD={rng.choice([10, 1250]) * 8e-9:.12g}")
        elif roll < 0.2:
            twin.command("*SIM.POSITION.INENC1=123")
    twin.command("*PCAP.DISARM=")
    twin.advance(5000)
    return twin


@pytest.mark.parametrize("seed", range(80))
def test_trains_match_event_by_event_simulation(seed: int) -> None:
    _scenario(seed)


def test_the_scenarios_exercise_trains() -> None:
    used = [_scenario(seed).trains for seed in range(20)]
    assert sum(n > 0 for n in used) >= 5


def test_trains_are_used_for_the_benchmark_setup() -> None:
    twin = Twin()
    for line in [
        "*CAPTURE=",
        "PCAP.TS_TRIG.CAPTURE=Value",
        "COUNTER1.OUT.CAPTURE=Value",
        "COUNTER2.OUT.CAPTURE=Value",
        "INENC1.VAL.CAPTURE=Value",
        "CLOCK1.PERIOD.UNITS=s",
        "CLOCK1.PERIOD=1e-5",
        "COUNTER1.TRIG=CLOCK1.OUT",
        "COUNTER1.ENABLE=PCAP.ACTIVE",
        "COUNTER2.TRIG=CLOCK1.OUT",
        "COUNTER2.ENABLE=PCAP.ACTIVE",
        "PCAP.ENABLE=ONE",
        "PCAP.GATE=ONE",
        "PCAP.TRIG=CLOCK1.OUT",
        "CLOCK1.ENABLE=PCAP.ACTIVE",
        "*PCAP.ARM=",
    ]:
        twin.command(line)
    for _ in range(5):
        twin.advance(1_250_000)  # 10 ms: 1000 frames
    assert twin.trains >= 5
    frames = np.concatenate(twin.frames[0])
    assert len(frames) == 5000
    # Bus order: INENC1.VAL, COUNTER1.OUT, COUNTER2.OUT, then TS_TRIG (2 words).
    assert (np.diff(frames[:, 3]) == 1250).all()
    assert (frames[:, 1] == np.arange(len(frames))).all()


def test_a_world_hook_on_a_follower_input_disables_trains() -> None:
    engine = Engine()
    engine.blocks["CLOCK"] = Clock(engine.bus)
    engine.blocks["COUNTER"] = Counter(engine.bus)
    engine.bit_outputs[("CLOCK", "OUT")] = 5
    engine.pos_outputs[("COUNTER", "OUT")] = 3
    engine.connect_bit("COUNTER", "TRIG", 5)
    engine.set_input("COUNTER", "ENABLE", 1)
    engine.set_input("CLOCK", "PERIOD_L", 100)
    engine.set_input("CLOCK", "ENABLE", 1)
    seen: list[int] = []
    engine.listen_input("COUNTER", "TRIG", lambda ts, v: seen.append(ts))
    engine.advance(100_000)
    assert engine.train_batches == 0
    # Connection, then rises (counted) from tick 3 and falls from 53.
    assert len(seen) == 1 + 2 * 1000
    assert engine.bus.pos[3] == 1000
