"""SRGATE, LUT, CALC, DIV, FILTER, PGEN, FMC and housekeeping models beyond
the upstream vectors.

Expected values are computed here independently of the models (truth tables
from Python expressions, closed-form sums, analytic signals), and long runs
check that the models stay event driven.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pytest

from sim_ioc.panda.engine import Engine
from sim_ioc.panda.models import Block
from sim_ioc.panda.models.calc import Calc
from sim_ioc.panda.models.clock import Clock
from sim_ioc.panda.models.div import Div
from sim_ioc.panda.models.dma import MORE_FLAG
from sim_ioc.panda.models.filter import (
    ACCUMULATOR_OVERFLOW,
    DIVIDE_TICKS,
    DIVIDER_RETRIGGER,
    Filter,
)
from sim_ioc.panda.models.fmc import (
    AxisSignal,
    Constant,
    FmcIn,
    FmcOut,
    Noise,
    Ramp,
    Sine,
)
from sim_ioc.panda.models.lut import Lut
from sim_ioc.panda.models.misc import (
    SENSORS,
    Outenc,
    Sfp3SyncIn,
    System,
)
from sim_ioc.panda.models.pgen import (
    DMA_UNDERRUN,
    RUNNING,
    TABLE_OVERRUN,
    UNREADY,
    WAIT_ENABLE,
    Pgen,
)
from sim_ioc.panda.models.srgate import Srgate
from sim_ioc.world import TICKS_PER_SECOND, World

Events = Mapping[int, Mapping[str, int]]
Log = list[tuple[int, str, int]]


def drive(block: Block, events: Events, until: int) -> tuple[Log, list[int]]:
    """Run ``block`` as the engine does: at input ticks and at requested wakes.

    Returns every output change as (tick, name, value) and the called ticks.
    """
    ticks = sorted(events)
    log: Log = []
    called: list[int] = []
    wake: int | None = None
    i = 0
    while True:
        upcoming = ticks[i] if i < len(ticks) else None
        candidates = [t for t in (wake, upcoming) if t is not None]
        if not candidates or min(candidates) > until:
            return log, called
        ts = min(candidates)
        if upcoming == ts:
            i += 1
        wake = block.on_changes(ts, events.get(ts, {}))
        called.append(ts)
        assert wake is None or wake > ts
        log.extend((ts, name, value) for name, value in block.changes.items())


def edges(log: Log, name: str) -> list[tuple[int, int]]:
    return [(ts, value) for ts, n, value in log if n == name]


# -- SRGATE -----------------------------------------------------------------------


def test_srgate_force_registers_are_strobes_whatever_the_value() -> None:
    events = {
        1: {"ENABLE": 1},
        2: {"SET": 1},
        3: {"FORCE_RST": 0},  # a write of 0 still resets
        5: {"FORCE_SET": 0},  # and a write of 0 still sets
    }
    log, _ = drive(Srgate(), events, until=10)
    assert edges(log, "OUT") == [(2, 1), (3, 0), (5, 1)]


def test_srgate_when_disabled_applies_at_once_while_disabled() -> None:
    events = {
        1: {"ENABLE": 1},
        2: {"SET": 1},
        3: {"WHEN_DISABLED": 2, "ENABLE": 0},  # keep: stays high
        4: {"WHEN_DISABLED": 0},  # low, at once
        5: {"WHEN_DISABLED": 1},  # high, at once
        6: {"SET": 0, "RST": 1},  # ignored while disabled
    }
    log, _ = drive(Srgate(), events, until=10)
    assert edges(log, "OUT") == [(2, 1), (4, 0), (5, 1)]


# -- LUT --------------------------------------------------------------------------

Expr = Callable[[int, int, int, int, int], int]

EXPRESSIONS: dict[str, Expr] = {
    "A&B&C&D&E": lambda a, b, c, d, e: a & b & c & d & e,
    "~A&~B&~C&~D&~E": lambda a, b, c, d, e: (
        (1 - a) & (1 - b) & (1 - c) & (1 - d) & (1 - e)
    ),
    "A": lambda a, b, c, d, e: a,
    "A&B|C&~D": lambda a, b, c, d, e: (a & b) | (c & (1 - d)),
    "A^B^C^D^E": lambda a, b, c, d, e: a ^ b ^ c ^ d ^ e,
    "E|~C&D": lambda a, b, c, d, e: e | ((1 - c) & d),
}


def bits_of(row: int) -> tuple[int, int, int, int, int]:
    """Inputs (A..E) of truth-table row ``row``: A is the most significant."""
    a, b, c, d, e = ((row >> shift) & 1 for shift in (4, 3, 2, 1, 0))
    return a, b, c, d, e


def compile_lut(expr: Expr) -> int:
    return sum(expr(*bits_of(row)) << row for row in range(32))


def test_lut_compiler_matches_the_documented_functions() -> None:
    # The upstream documentation's FUNC values for these expressions.
    assert compile_lut(EXPRESSIONS["A&B&C&D&E"]) == 0x80000000
    assert compile_lut(EXPRESSIONS["~A&~B&~C&~D&~E"]) == 0x00000001
    assert compile_lut(EXPRESSIONS["A"]) == 0xFFFF0000
    assert compile_lut(EXPRESSIONS["A&B|C&~D"]) == 0xFF303030


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_lut_output_equals_the_expression_for_all_32_inputs(name: str) -> None:
    expr = EXPRESSIONS[name]
    lut = Lut()
    assert lut.on_changes(1, {"FUNC": compile_lut(expr)}) is None
    # Visit the rows in Gray-code order too, so single inputs change at a time.
    order = list(range(32)) + [i ^ (i >> 1) for i in range(32)]
    for k, row in enumerate(order):
        a, b, c, d, e = bits_of(row)
        inputs = {"INPA": a, "INPB": b, "INPC": c, "INPD": d, "INPE": e}
        # Level inputs need no wake-up: the output is a pure function.
        assert lut.on_changes(10 + k, inputs) is None
        assert lut["OUT"] == expr(a, b, c, d, e), f"row {row:05b}"


def test_lut_edge_types_give_one_tick_pulses() -> None:
    a_rising_and_b_falling = compile_lut(lambda a, b, c, d, e: a & b)
    events = {
        1: {"FUNC": a_rising_and_b_falling, "TYPEA": 1, "TYPEB": 2},
        3: {"INPB": 1},
        5: {"INPA": 1, "INPB": 0},  # both edges on one tick: pulse
        9: {"INPA": 0},
        12: {"INPA": 1},  # B has no edge: no pulse
        20: {"TYPEA": 3, "TYPEB": 0, "INPB": 1},
        22: {"INPA": 0},  # either edge of A, level B: pulse
    }
    log, called = drive(Lut(), events, until=50)
    assert edges(log, "OUT") == [(5, 1), (6, 0), (22, 1), (23, 0)]
    # Woken only to end pulses of edge-selected inputs.
    assert set(called) - set(events) == {4, 6, 10, 13, 23}


# -- CALC -------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0, 1, 2])
@pytest.mark.parametrize("negate", [(0, 0, 0, 0), (1, 0, 1, 0), (0, 1, 1, 1)])
def test_calc_is_the_signed_scaled_sum(shift: int, negate: tuple[int, ...]) -> None:
    inputs = (1000, -7, 123457, -99999)
    calc = Calc()
    changes: dict[str, int] = {"SHIFT": shift}
    changes |= dict(zip(("INPA", "INPB", "INPC", "INPD"), inputs, strict=True))
    changes |= dict(zip(("TYPEA", "TYPEB", "TYPEC", "TYPED"), negate, strict=True))
    calc.on_changes(1, changes)
    total = sum(-x if n else x for x, n in zip(inputs, negate, strict=True))
    # A right shift floors, also for negative sums.
    assert calc["OUT"] == math.floor(total / 2**shift)


def test_calc_adds_in_34_bits_and_keeps_32() -> None:
    big = 2**31 - 1
    calc = Calc()
    calc.on_changes(1, {"INPA": big, "INPB": big})
    assert calc["OUT"] == -2  # 2**32 - 2 wraps with SHIFT = 0
    calc.on_changes(2, {"SHIFT": 1})
    assert calc["OUT"] == big  # no wrap: the adder is wider
    calc.on_changes(3, {"SHIFT": 3})  # only two bits wired: 3 shifts by 2
    assert calc["OUT"] == (2 * big) >> 2
    calc.on_changes(4, {"INPA": 0xFFFFFFFB, "INPB": 0, "SHIFT": 0})  # unsigned -5
    assert calc["OUT"] == -5


# -- DIV --------------------------------------------------------------------------


def pulse_events(
    first: int, count: int, period: int, width: int
) -> dict[int, dict[str, int]]:
    events: dict[int, dict[str, int]] = {}
    for k in range(count):
        events[first + k * period] = {"INP": 1}
        events[first + k * period + width] = {"INP": 0}
    return events


@pytest.mark.parametrize(
    ("first_pulse", "divisor", "pattern"),
    [
        (0, 4, "NNNDNNNDNN"),
        (1, 4, "DNNNDNNNDN"),
        (0, 1, "DDDDDDDDDD"),
        (0, 0, "DDDDDDDDDD"),  # 0 acts as 1
        (1, 3, "DNNDNNDNND"),
    ],
)
def test_div_routes_pulses_by_first_pulse(
    first_pulse: int, divisor: int, pattern: str
) -> None:
    events = {1: {"DIVISOR": divisor, "FIRST_PULSE": first_pulse}, 2: {"ENABLE": 1}}
    events |= pulse_events(10, len(pattern), period=10, width=3)
    log, _ = drive(Div(), events, until=200)
    outd = [ts for ts, v in edges(log, "OUTD") if v]
    outn = [ts for ts, v in edges(log, "OUTN") if v]
    got = "".join("D" if 10 + 10 * k in outd else "N" for k in range(len(pattern)))
    assert got == pattern
    assert len(outd) + len(outn) == len(pattern)
    # Outputs copy the input's width.
    assert all((ts + 3, 0) in edges(log, "OUTD") for ts in outd)


def test_div_reset_mid_pulse_drops_the_output_and_presets_count() -> None:
    events = {1: {"DIVISOR": 5}, 2: {"ENABLE": 1}, 10: {"INP": 1}}
    events |= {12: {"FIRST_PULSE": 1}, 20: {"INP": 0}, 30: {"INP": 1}}
    log, _ = drive(Div(), events, until=40)
    # The write resets: OUTN drops with the pulse still high, COUNT = 4.
    assert edges(log, "OUTN") == [(10, 1), (12, 0)]
    assert (12, "COUNT", 4) in log
    # The next pulse finds COUNT = DIVISOR - 1: it goes to OUTD.
    assert edges(log, "OUTD") == [(30, 1)]


def test_div_fed_by_a_slow_clock_is_woken_only_at_its_edges() -> None:
    period = 10**6
    engine = Engine()
    engine.blocks["CLOCK"] = Clock(engine.bus)
    engine.blocks["DIV"] = div = Div(engine.bus)
    engine.bit_outputs[("CLOCK", "OUT")] = 5
    engine.connect_bit("DIV", "INP", 5)
    engine.set_input("DIV", "DIVISOR", 3)
    engine.set_input("DIV", "ENABLE", 1)
    engine.set_input("CLOCK", "PERIOD_L", period)
    engine.set_input("CLOCK", "ENABLE", 1)
    called: list[int] = []
    outd: list[int] = []
    on_changes = div.on_changes

    def spy(ts: int, changes: Mapping[str, int]) -> int | None:
        called.append(ts)
        wake = on_changes(ts, changes)
        if div.changes.get("OUTD"):
            outd.append(ts)
        return wake

    div.on_changes = spy  # type: ignore[method-assign]
    engine.advance(30 * period)
    # Clock starts on tick 2 (registered enable); DIV sees it a tick later.
    rises = [3 + k * period for k in range(30)]
    falls = [r + period // 2 for r in rises[:-1]] + [rises[-1] + period // 2]
    edge_ticks = sorted(t for t in rises + falls if t <= 30 * period)
    assert called == [1, *edge_ticks]
    assert outd == rises[2::3]


# -- FILTER -----------------------------------------------------------------------


def staircase_sum(n: int, step: int) -> int:
    """sum(u // step for u in 1..n), in closed form."""
    q, r = divmod(n, step)
    return step * q * (q - 1) // 2 + q * (r + 1)


def test_filter_mean_of_a_staircase_ramp_is_the_analytic_mean() -> None:
    step, enable_at, n_steps = 1000, 10, 3000
    # INP(t) = (t - E) // step from the tick of the enable edge.
    events: dict[int, dict[str, int]] = {1: {"MODE": 1}, enable_at: {"ENABLE": 1}}
    for k in range(1, n_steps):
        events[enable_at + k * step] = {"INP": k}
    triggers = [enable_at + 1 + 12345, enable_at + 1_234_567, enable_at + 2_999_999]
    for t in triggers:
        events.setdefault(t, {})["TRIG"] = 1
        events.setdefault(t + 1, {})["TRIG"] = 0
    log, _ = drive(Filter(), events, until=enable_at + (n_steps + 1) * step)
    results = [(ts, v) for ts, v in edges(log, "OUT")]
    expected = []
    for t in triggers:
        n = t - 1 - enable_at  # ticks E+1 .. T-1
        expected.append((t + DIVIDE_TICKS, staircase_sum(n, step) // n))
    assert results == expected
    assert edges(log, "READY") == [x for t, _ in expected for x in ((t, 1), (t + 1, 0))]


def test_filter_accumulates_lazily_and_truncates_toward_zero() -> None:
    events = {
        1: {"MODE": 1, "INP": -3},
        2: {"ENABLE": 1},
        3 + 10**9: {"INP": -2},  # -3 for 10**9 + 1 ticks (3 .. 10**9 + 2)
        3 + 2 * 10**9: {"TRIG": 1},  # then -2 for 10**9 ticks + the trigger's
    }
    log, called = drive(Filter(), events, until=4 * 10**9)
    n = 2 * 10**9 + 1
    total = -3 * (10**9 + 1) - 2 * 10**9
    # -2.5 and a bit: the firmware divides magnitudes.
    assert edges(log, "OUT") == [(3 + 2 * 10**9 + DIVIDE_TICKS, -(-total // n))]
    assert -(-total // n) == -2
    assert len(called) <= 8


def test_filter_overflow_is_flagged_two_ticks_after_the_crossing() -> None:
    value = 2**31 - 1
    events = {1: {"MODE": 1, "INP": value}, 5: {"ENABLE": 1}}
    log, called = drive(Filter(), events, until=2**33)
    k = -(-(2**62) // value)  # first tick count reaching 2**62
    assert edges(log, "HEALTH") == [(5 + k + 2, ACCUMULATOR_OVERFLOW)]
    assert len(called) <= 4


def test_filter_retrigger_loses_the_result_until_reenabled() -> None:
    events = {
        1: {"MODE": 1, "INP": 7},
        2: {"ENABLE": 1},
        10: {"TRIG": 1},
        11: {"TRIG": 0},
        20: {"TRIG": 1},  # division still running
        21: {"TRIG": 0},
        100: {"TRIG": 1},  # stopped: no result
        101: {"TRIG": 0},
        200: {"ENABLE": 0},
        201: {"ENABLE": 1},
        210: {"TRIG": 1},
    }
    log, _ = drive(Filter(), events, until=400)
    assert edges(log, "HEALTH") == [(22, DIVIDER_RETRIGGER), (201, 0)]
    assert edges(log, "READY") == [(210 + DIVIDE_TICKS, 1), (211 + DIVIDE_TICKS, 0)]
    assert edges(log, "OUT") == [(210 + DIVIDE_TICKS, 7)]


def test_filter_difference_mode_outputs_each_step() -> None:
    events = {1: {"INP": 100}, 2: {"ENABLE": 1}, 5: {"INP": 130}, 6: {"TRIG": 1}}
    events |= {7: {"TRIG": 0, "INP": 90}, 9: {"TRIG": 1}}
    log, _ = drive(Filter(), events, until=20)
    assert edges(log, "OUT") == [(6, 30), (9, -40)]
    assert edges(log, "READY") == [(6, 1), (7, 0), (9, 1), (10, 0)]


# -- PGEN -------------------------------------------------------------------------


class Memory:
    """DMA memory: a table per address."""

    def __init__(self, tables: Mapping[int, list[int]]):
        self.tables = tables

    def __call__(self, address: int, length: int) -> list[int]:
        return self.tables[address][:length]


def triggers(first: int, count: int, every: int = 4) -> dict[int, dict[str, int]]:
    events: dict[int, dict[str, int]] = {}
    for k in range(count):
        events[first + k * every] = {"TRIG": 1}
        events[first + k * every + 1] = {"TRIG": 0}
    return events


def test_pgen_steps_through_a_fixed_table_repeats_times() -> None:
    table = [5, -7, 100, 0x7FFFFFFF]
    pgen = Pgen(memory=Memory({64: table}))
    events = {1: {"REPEATS": 3, "TABLE_ADDRESS": 64, "TABLE_LENGTH": 4}}
    events |= {20: {"ENABLE": 1}} | triggers(30, 14)
    log, _ = drive(pgen, events, until=200)
    outs = [v for _, v in edges(log, "OUT")]
    # Consecutive equal words would not show as changes; this table has none.
    assert outs == (table * 3)[: len(outs)] and len(outs) == 12
    assert edges(log, "STATE") == [
        (9, WAIT_ENABLE),
        (20, RUNNING),
        (30 + 11 * 4, WAIT_ENABLE),
    ]
    assert edges(log, "ACTIVE") == [(20, 1), (30 + 11 * 4, 0)]


def test_pgen_enable_fall_restarts_a_fixed_table_from_its_first_word() -> None:
    pgen = Pgen(memory=Memory({64: [1, 2, 3]}))
    events = {1: {"REPEATS": 0, "TABLE_ADDRESS": 64, "TABLE_LENGTH": 3}}
    events |= {20: {"ENABLE": 1}} | triggers(30, 5)  # 1 2 3 1 2
    events |= {60: {"ENABLE": 0}, 70: {"ENABLE": 1}} | triggers(80, 8)
    log, _ = drive(pgen, events, until=200)
    assert [v for _, v in edges(log, "OUT")] == [1, 2, 3, 1, 2, 1, 2, 3, 1, 2, 3, 1, 2]
    assert pgen["STATE"] == RUNNING  # REPEATS = 0: forever


def test_pgen_streams_buffers_then_underruns_and_stops() -> None:
    pgen = Pgen(memory=Memory({1: [10, 11], 2: [12, 13], 3: [14]}))
    events = {
        1: {"TABLE_ADDRESS": 1, "TABLE_LENGTH": 2 | MORE_FLAG},
        2: {"TABLE_ADDRESS": 2, "TABLE_LENGTH": 2 | MORE_FLAG},
        20: {"ENABLE": 1},
    } | triggers(30, 5)
    log, _ = drive(pgen, events, until=100)
    # Four words, then the fifth trigger finds nothing: underrun.
    assert [v for _, v in edges(log, "OUT")] == [10, 11, 12, 13]
    assert (46, "HEALTH", DMA_UNDERRUN) in log
    assert (46, "STATE", UNREADY) in log and (46, "ACTIVE", 0) in log
    # The last buffer makes a run end cleanly in UNREADY.
    pgen2 = Pgen(memory=Memory({1: [10, 11], 3: [14]}))
    events2 = {
        1: {"TABLE_ADDRESS": 1, "TABLE_LENGTH": 2 | MORE_FLAG},
        2: {"TABLE_ADDRESS": 3, "TABLE_LENGTH": 1},
        20: {"ENABLE": 1},
    } | triggers(30, 4)
    log2, _ = drive(pgen2, events2, until=100)
    assert [v for _, v in edges(log2, "OUT")] == [10, 11, 14]
    assert edges(log2, "STATE")[-1] == (38, UNREADY)
    assert pgen2["HEALTH"] == 0


def test_pgen_refuses_a_second_table_until_length_is_zeroed() -> None:
    pgen = Pgen(memory=Memory({1: [1, 2], 2: [7]}))
    events = {
        1: {"TABLE_ADDRESS": 1, "TABLE_LENGTH": 2},
        20: {"TABLE_ADDRESS": 2, "TABLE_LENGTH": 1},  # refused
        30: {"TABLE_LENGTH": 0},
        31: {"TABLE_LENGTH": 1},  # accepted
        50: {"ENABLE": 1},
        55: {"TRIG": 1},
    }
    log, _ = drive(pgen, events, until=100)
    assert edges(log, "HEALTH") == [(21, TABLE_OVERRUN), (50, 0)]
    assert edges(log, "STATE") == [
        (9, WAIT_ENABLE),
        (32, UNREADY),
        (39, WAIT_ENABLE),
        (50, RUNNING),
    ]
    assert edges(log, "OUT") == [(55, 7)]


# -- FMC --------------------------------------------------------------------------


def code18(volts: float, full_scale: float = 10.0) -> int:
    """An 18-bit conversion left-justified in a signed 32-bit word."""
    code = math.floor(volts / full_scale * 2**17 + 0.5)
    code = max(-(2**17), min(2**17 - 1, code))
    return code * 2**14


def test_fmc_sine_sampled_at_conversion_ticks_equals_the_analytic_value() -> None:
    fmc = FmcIn()
    fmc.set_signal(2, Sine(amplitude=3.0, frequency=12_345.0, phase=0.5, offset=-1.0))
    log, called = drive(fmc, {0: {"RESYNC": 1}}, until=125 * 2000)
    assert called == [125 * k for k in range(2001)]
    got = dict(edges(log, "VAL2"))
    for k in (1, 17, 250, 1999):
        t = 125 * k / TICKS_PER_SECOND
        v = -1.0 + 3.0 * math.sin(2 * math.pi * 12_345.0 * t + 0.5)
        last = max(ts for ts in got if ts <= 125 * k)
        assert got[last] == code18(v)
    # Other channels stay at the default 0 V.
    assert fmc["VAL1"] == 0 and not edges(log, "VAL1")


def test_fmc_defaults_cost_no_events_and_gain_scales_full_range() -> None:
    fmc = FmcIn()
    assert fmc.on_changes(1, {}) is None
    fmc.set_signal(1, Constant(3.0))
    fmc.set_signal(8, Constant(-20.0))
    wake = fmc.on_changes(7, {"RESYNC": 1, "GAIN1": 1})  # 5 V range
    assert wake == 125  # the next conversion takes them
    assert fmc["VAL1"] == 0
    assert fmc.on_changes(125, {}) is None  # constants: no more wakes
    assert fmc["VAL1"] == code18(3.0, 5.0)
    assert fmc["VAL8"] == -(2**31)  # clipped
    assert fmc["VAL1"] * 4.65661287e-9 == pytest.approx(6.0, abs=1e-4)


def test_fmc_noise_is_deterministic_with_the_requested_statistics() -> None:
    noise = Noise(sigma=0.5, mean=1.0, seed=42)
    samples = [noise.volts(125 * k) for k in range(20_000)]
    assert samples == [
        Noise(sigma=0.5, mean=1.0, seed=42).volts(125 * k) for k in range(20_000)
    ]
    assert samples != [
        Noise(sigma=0.5, mean=1.0, seed=43).volts(125 * k) for k in range(20_000)
    ]
    mean = sum(samples) / len(samples)
    sd = math.sqrt(sum((s - mean) ** 2 for s in samples) / len(samples))
    assert mean == pytest.approx(1.0, abs=0.02)
    assert sd == pytest.approx(0.5, rel=0.03)


def test_fmc_ramp_and_axis_signals() -> None:
    ramp = Ramp(start=-1.0, slope=2.0, t0=1000, period=0.5)
    assert ramp.volts(0) == -1.0
    assert ramp.volts(1000 + TICKS_PER_SECOND // 4) == pytest.approx(-0.5)
    assert ramp.volts(1000 + TICKS_PER_SECOND // 2 + 5) == pytest.approx(-1.0, abs=1e-6)

    world = World()
    axis = world.axis("X")
    end = axis.move(0, 2.0, 1000.0)  # 2 units in 2 ms
    fmc = FmcIn()
    fmc.set_signal(4, AxisSignal(axis, gain=0.5, offset=0.25))
    log, called = drive(fmc, {0: {"RESYNC": 1}}, until=10 * end)
    assert fmc["VAL4"] == code18(1.25)
    # Sampling stops once the axis stands still.
    assert called[-1] <= end + 2 * 125
    mid = 125 * 1000
    assert dict(edges(log, "VAL4"))[mid] == code18(0.25 + 0.5 * axis.position(mid))
    peak = AxisSignal(axis, func=lambda x: math.exp(-((x - 2.0) ** 2)))
    assert peak.volts(end) == pytest.approx(1.0)


def test_fmc_out_reports_dac_volts() -> None:
    dac = FmcOut()
    dac.on_changes(1, {"VAL1": 2**30, "VAL2": 0xC0000000, "GAIN2": 1})
    assert dac.volts(1) == pytest.approx(2.5)
    assert dac.volts(2) == pytest.approx(-5.0)


# -- OUTENC, SYSTEM, SFP -----------------------------------------------------------


def test_outenc_quadrature_tracks_val_and_reports_qstate() -> None:
    events = {1: {"VAL": 50, "QPERIOD": 100}, 10: {"ENABLE": 1}, 20: {"VAL": 60}}
    enc = Outenc()
    log, called = drive(enc, events, until=10_000)
    assert edges(log, "QSTATE") == [(10, 1), (20, 2), (20 + 10 * 100, 1)]
    assert called == [1, 10, 20, 1020]
    assert enc.count(20 + 350) == 53
    a_b = [enc.connector(20 + 100 * k)[:2] for k in range(4)]
    # Counts 50..53, i.e. 2, 3, 0, 1 modulo 4.
    assert a_b == [(1, 1), (0, 1), (0, 0), (1, 0)]
    enc.on_changes(20_000, {"PROTOCOL": 4, "A": 1, "Z": 1})
    assert enc.connector(20_000) == (1, 0, 1, 0)


def test_system_and_sfp_read_plausible_constants() -> None:
    system = System()
    for name, (reading, scale) in SENSORS.items():
        assert system[name] * scale == pytest.approx(reading, rel=1e-3)
    assert 20 <= system["TEMP_PSU"] <= 60
    system.on_changes(1, {"CLOCK_SOURCE": 1})
    assert system["HEALTH"] == 1 and system["CLK_SEL_STAT"] == 0
    system.on_changes(2, {"CLOCK_SOURCE": 0})
    assert system["HEALTH"] == 0
    sfp = Sfp3SyncIn()
    assert sfp.on_changes(1, {"SYNC_RESET": 1}) is None
    assert (sfp["LINKUP"], sfp["HEALTH"], sfp["POS1"]) == (0, 1, 0)
