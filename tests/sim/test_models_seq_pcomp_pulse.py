"""SEQ, PCOMP and PULSE models beyond the upstream vectors.

Long periods (millions of ticks) must cost a handful of calls per pulse, and
the behaviour must hold for scans much longer than the vectors' few ticks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sim_ioc.panda.models import Block
from sim_ioc.panda.models.base import to_int32
from sim_ioc.panda.models.dma import MORE_FLAG
from sim_ioc.panda.models.pcomp import Pcomp
from sim_ioc.panda.models.pulse import Pulse
from sim_ioc.panda.models.seq import (
    DMA_UNDERRUN,
    PHASE1,
    PHASE2,
    TABLE_OVERRUN,
    UNREADY,
    WAIT_ENABLE,
    WAIT_TRIGGER,
    Seq,
)

Events = Mapping[int, Mapping[str, int]]
Log = list[tuple[int, str, int]]


def drive(
    block: Block, events: Events, until: int, extra: Iterable[int] = ()
) -> tuple[Log, int]:
    """Run ``block`` as the engine does: at input ticks and at requested wakes.

    ``extra`` ticks add calls with no changes (being woken early is harmless).
    Returns every output change as (tick, name, value) and the number of calls.
    """
    ticks = sorted(set(events) | set(extra))
    log: Log = []
    wake: int | None = None
    calls = i = 0
    while True:
        upcoming = ticks[i] if i < len(ticks) else None
        candidates = [t for t in (wake, upcoming) if t is not None]
        if not candidates or min(candidates) > until:
            return log, calls
        ts = min(candidates)
        if i < len(ticks) and ticks[i] == ts:
            i += 1
        wake = block.on_changes(ts, events.get(ts, {}))
        calls += 1
        assert wake is None or wake > ts
        log.extend((ts, name, value) for name, value in block.changes.items())


def edges(log: Log, name: str) -> list[tuple[int, int]]:
    return [(ts, value) for ts, n, value in log if n == name]


# -- PULSE ----------------------------------------------------------------------


def test_pulse_train_with_long_period_is_event_driven() -> None:
    pulses, step, width = 200, 1_000_000, 400_000
    events = {
        1: {"WIDTH_L": width, "STEP_L": step, "PULSES": pulses},
        2: {"ENABLE": 1},
        10: {"TRIG": 1},
        20: {"TRIG": 0},
    }
    log, calls = drive(Pulse(), events, until=10**9)
    expected: list[tuple[int, int]] = []
    for k in range(pulses):
        expected += [(10 + k * step, 1), (10 + k * step + width, 0)]
    assert edges(log, "OUT") == expected
    assert edges(log, "QUEUED") == [(11, 1), (expected[-1][0], 0)]
    # Two edges per pulse plus the input and bookkeeping calls, nothing more.
    assert calls <= 2 * pulses + 6


def test_pulse_delay_line_uses_both_time_registers() -> None:
    delay = (3 << 32) + 12_345  # beyond 32 bits: DELAY_H matters
    events = {
        1: {"DELAY_L": delay & 0xFFFFFFFF, "DELAY_H": delay >> 32},
        2: {"ENABLE": 1},
        100: {"TRIG": 1},
        250: {"TRIG": 0},
    }
    log, calls = drive(Pulse(), events, until=delay + 1000)
    assert edges(log, "OUT") == [(100 + delay, 1), (250 + delay, 0)]
    assert calls < 12


def test_pulse_at_100khz_costs_a_few_calls_per_trigger() -> None:
    period, n = 1250, 1000  # 100 kHz
    events: dict[int, dict[str, int]] = {
        1: {"WIDTH_L": 100, "DELAY_L": 500},
        2: {"ENABLE": 1},
    }
    for k in range(n):
        events[1000 + k * period] = {"TRIG": 1}
        events[1000 + k * period + 10] = {"TRIG": 0}
    log, calls = drive(Pulse(), events, until=10**7)
    rises = [ts for ts, v in edges(log, "OUT") if v]
    assert rises == [1500 + k * period for k in range(n)]
    assert calls <= 5 * n + 5


def test_pulse_drops_triggers_during_a_train_and_param_write_resets() -> None:
    events = {
        1: {"WIDTH_L": 100, "STEP_L": 1000, "PULSES": 3},
        2: {"ENABLE": 1},
        10: {"TRIG": 1},
        11: {"TRIG": 0},
        # Train ends at 10 + 2 * 1000 + 100 = 2110: refused until then.
        2109: {"TRIG": 1},
        2110: {"TRIG": 0},
        2111: {"TRIG": 1},
        2112: {"TRIG": 0},
        # Same value, mid-pulse: still resets the block for a tick.
        3150: {"WIDTH_L": 100},
    }
    log, _ = drive(Pulse(), events, until=10_000)
    assert edges(log, "DROPPED") == [(2109, 1), (3151, 0)]
    rises = [ts for ts, v in edges(log, "OUT") if v]
    assert rises == [10, 1010, 2010, 2111, 3111]  # second train cut short
    assert (3150, "OUT", 0) in log
    assert (3150, "QUEUED", 0) in log


# -- SEQ ------------------------------------------------------------------------


def line(
    repeats: int,
    trigger: int = 0,
    position: int = 0,
    time1: int = 0,
    time2: int = 0,
    out1: int = 0,
    out2: int = 0,
) -> list[int]:
    word0 = repeats | trigger << 16 | out1 << 20 | out2 << 26
    return [word0, position & 0xFFFFFFFF, time1, time2]


class Memory:
    """DMA memory: tables placed at addresses, as the server does."""

    def __init__(self, **tables: list[int]) -> None:
        self.tables = {int(k[1:]): v for k, v in tables.items()}

    def __call__(self, address: int, length: int) -> list[int]:
        return self.tables[address][:length]


A, B, C = 1, 2, 4


def test_seq_position_triggers_with_prescale_follow_a_posa_ramp() -> None:
    prescale = 100_000
    table = line(1, trigger=7, position=1000, time1=2, time2=3, out1=A, out2=B)
    table += line(2, trigger=8, position=-500, time2=4, out2=C)
    seq = Seq(memory=Memory(a0=table))
    events: dict[int, dict[str, int]] = {
        1: {"PRESCALE": prescale, "REPEATS": 1},
        2: {"TABLE_ADDRESS": 0, "TABLE_LENGTH": len(table)},
        100: {"ENABLE": 1},
    }
    # POSA climbs to 1500 then falls to -1000, one count every 1000 ticks;
    # sent as an unsigned 32-bit register value, as the engine does.
    posa = [*range(1, 1501), *range(1499, -1001, -1)]
    for i, p in enumerate(posa):
        events[1000 * (i + 1)] = {"POSA": p & 0xFFFFFFFF}
    log, calls = drive(seq, events, until=10**7)

    up = 1000 * 1000  # POSA reaches 1000
    down = 1000 * (1500 + 2000)  # POSA comes back down to -500
    p2 = 4 * prescale
    assert edges(log, "STATE") == [
        (13, WAIT_ENABLE),
        (100, WAIT_TRIGGER),
        (up, PHASE1),
        (up + 2 * prescale, PHASE2),
        (up + 5 * prescale, WAIT_TRIGGER),
        (down, PHASE2),
        # Second repeat: POSA still <= -500, so phase 2 again on the same tick.
        (down + 2 * p2, WAIT_ENABLE),
    ]
    assert edges(log, "OUTA") == [(up, 1), (up + 2 * prescale, 0)]
    assert edges(log, "OUTB") == [(up + 2 * prescale, 1), (down, 0)]
    assert edges(log, "OUTC") == [(down, 1), (down + 2 * p2, 0)]
    assert edges(log, "LINE_REPEAT") == [(100, 1), (down + p2, 2)]
    # Woken only for the POSA changes and a few phase ends.
    assert calls <= len(posa) + 12


def test_seq_long_period_is_event_driven() -> None:
    repeats, half = 500, 500_000
    table = line(repeats, time1=half, time2=half, out1=A)
    seq = Seq(memory=Memory(a64=table))
    events = {
        1: {"REPEATS": 1},
        2: {"TABLE_ADDRESS": 64, "TABLE_LENGTH": 4},
        20: {"ENABLE": 1},
    }
    log, calls = drive(seq, events, until=10**10)
    expected: list[tuple[int, int]] = []
    for k in range(repeats):
        expected += [(20 + 2 * k * half, 1), (20 + (2 * k + 1) * half, 0)]
    assert edges(log, "OUTA") == expected
    assert edges(log, "ACTIVE") == [(20, 1), (20 + 2 * repeats * half, 0)]
    assert calls <= 2 * repeats + 6


def test_seq_woken_early_gives_identical_outputs() -> None:
    table = line(3, trigger=2, time1=7, time2=5, out1=A, out2=B)
    table += line(2, time2=3, out2=C)
    events = {
        1: {"REPEATS": 2, "PRESCALE": 3},
        2: {"TABLE_ADDRESS": 0, "TABLE_LENGTH": len(table)},
        30: {"ENABLE": 1},
        40: {"BITA": 1},
        200: {"BITA": 0},
        260: {"BITA": 1},
    }
    reference, _ = drive(Seq(memory=Memory(a0=table)), events, until=1000)
    noisy, _ = drive(
        Seq(memory=Memory(a0=table)), events, until=1000, extra=range(0, 1000, 7)
    )
    assert noisy == reference
    assert edges(reference, "ACTIVE")[-1][1] == 0


def test_seq_streamed_buffers_then_underrun() -> None:
    first = line(1, time2=100, out2=A) + line(1, time2=100, out2=B)
    second = line(1, time2=100, out2=C)
    seq = Seq(memory=Memory(a0=first, a100=second))
    events = {
        2: {"TABLE_ADDRESS": 0, "TABLE_LENGTH": len(first) | MORE_FLAG},
        20: {"ENABLE": 1},
        # Appended while running, still announcing more: nothing follows.
        150: {"TABLE_ADDRESS": 100, "TABLE_LENGTH": len(second) | MORE_FLAG},
    }
    log, _ = drive(seq, events, until=2000)
    assert edges(log, "TABLE_LINE") == [(20, 1), (120, 2), (220, 3)]
    assert edges(log, "OUTC") == [(220, 1), (320, 0)]
    # Line 4 never came: DMA underrun, the run is aborted.
    assert (320, "HEALTH", DMA_UNDERRUN) in log
    assert (320, "STATE", UNREADY) in log
    assert seq["TABLE_REPEAT"] == 1  # streamed tables do not repeat


def test_seq_table_rewrite_needs_a_zero_length_first() -> None:
    table = line(1, time2=10, out2=A)
    seq = Seq(memory=Memory(a0=table, a8=table))
    events = {
        1: {"REPEATS": 1},
        2: {"TABLE_ADDRESS": 0, "TABLE_LENGTH": 4},
        50: {"TABLE_ADDRESS": 8, "TABLE_LENGTH": 4},  # refused
        60: {"TABLE_LENGTH": 0},
        70: {"TABLE_ADDRESS": 8, "TABLE_LENGTH": 4},  # accepted
        100: {"ENABLE": 1},
    }
    log, _ = drive(seq, events, until=1000)
    assert edges(log, "HEALTH") == [(51, TABLE_OVERRUN), (100, 0)]
    assert edges(log, "STATE") == [
        (13, WAIT_ENABLE),
        (62, UNREADY),
        (81, WAIT_ENABLE),
        (100, PHASE2),
        (110, WAIT_ENABLE),
    ]


# -- PCOMP ----------------------------------------------------------------------


def ramp(first: int, last: int, start_tick: int) -> dict[int, dict[str, int]]:
    step = 1 if last >= first else -1
    values = range(first, last + step, step)
    return {start_tick + 2 * i: {"INP": v & 0xFFFFFFFF} for i, v in enumerate(values)}


def rising_positions(log: Log, events: Events) -> list[int]:
    rises = [ts for ts, v in edges(log, "OUT") if v]
    return [to_int32(events[ts]["INP"]) for ts in rises]


def test_pcomp_fires_at_start_plus_steps_going_up() -> None:
    events: dict[int, dict[str, int]] = {
        1: {"START": 100, "STEP": 50, "WIDTH": 10, "PULSES": 5, "DIR": 0},
        2: {"INP": 0},
        3: {"ENABLE": 1},
    }
    events.update(ramp(1, 500, 10))
    log, _ = drive(Pcomp(), events, until=2000)
    assert rising_positions(log, events) == [100, 150, 200, 250, 300]
    falls = [to_int32(events[ts]["INP"]) for ts, v in edges(log, "OUT") if not v]
    assert falls == [110, 160, 210, 260, 310]
    assert edges(log, "ACTIVE")[-1][1] == 0
    assert edges(log, "PRODUCED")[-1][1] == 5


def test_pcomp_fires_at_start_minus_steps_going_down() -> None:
    events: dict[int, dict[str, int]] = {
        1: {"START": 100, "STEP": 50, "WIDTH": 10, "PULSES": 4, "DIR": 1},
        2: {"INP": 300},
        3: {"ENABLE": 1},
    }
    events.update(ramp(299, -200, 10))
    log, _ = drive(Pcomp(), events, until=2000)
    assert rising_positions(log, events) == [100, 50, 0, -50]
    assert edges(log, "ACTIVE")[-1][1] == 0


def test_pcomp_guesses_direction_and_flags_a_jump() -> None:
    # DIR=Either, absolute: INP above START, so compare downwards.
    events: dict[int, dict[str, int]] = {
        1: {"START": 0, "STEP": 20, "WIDTH": 5, "PULSES": 0, "DIR": 2},
        2: {"INP": 30},
        3: {"ENABLE": 1},
    }
    events.update(ramp(29, -45, 10))
    events[500] = {"INP": -100 & 0xFFFFFFFF}  # skips -60 and -80
    log, _ = drive(Pcomp(), events, until=1000)
    assert rising_positions(log, events) == [0, -20, -40]
    assert edges(log, "HEALTH") == [(500, 1)]
    assert edges(log, "ACTIVE") == [(3, 1), (500, 0)]
