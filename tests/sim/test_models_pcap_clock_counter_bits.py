"""Unit tests of the PCAP, CLOCK, COUNTER and BITS models beyond the vectors.

The blocks are driven the way the engine drives them: called on the ticks
their inputs change and on the ticks they ask to be woken, never tick by tick.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

import pytest

from sim_ioc.panda.models import MODELS, Block
from sim_ioc.panda.models.base import to_int32
from sim_ioc.panda.models.bits import Bits
from sim_ioc.panda.models.clock import Clock, clock_shape
from sim_ioc.panda.models.counter import Counter
from sim_ioc.panda.models.pcap import (
    PIPELINE,
    CaptureRequest,
    Ext,
    Pcap,
    PosMode,
    capture_layout,
    capture_words,
    ext_word,
    field_value,
    pos_word,
    std_dev,
)

Events = Mapping[int, Mapping[str, int]]


def drive(block: Block, events: Events, until: int) -> list[int]:
    """Call ``block`` on every event tick and every wake-up it asks for, up to
    ``until``; return the ticks it was called on. ``POS[n]``/``BIT[n]``
    inputs are written to the bus first, as the engine does."""
    calls: list[int] = []
    pending = sorted(events)
    wake: int | None = None
    while True:
        ts = min(t for t in (pending[0] if pending else None, wake) if t is not None)
        if ts > until:
            return calls
        changes = dict(events.get(ts, {})) if pending and pending[0] == ts else {}
        if pending and pending[0] == ts:
            pending.pop(0)
        for name, value in changes.items():
            if name.startswith("POS["):
                block.bus.pos[int(name[4:-1])] = to_int32(value)
            elif name.startswith("BIT["):
                block.bus.bits[int(name[4:-1])] = value
        calls.append(ts)
        wake = block.on_changes(ts, changes)
        assert wake is None or wake > ts
        if wake is None and not pending:
            return calls


def merge(*parts: Events) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for part in parts:
        for tick, changes in part.items():
            out.setdefault(tick, {}).update(changes)
    return out


def test_models_are_registered() -> None:
    assert MODELS["PCAP"] is Pcap
    assert MODELS["CLOCK"] is Clock
    assert MODELS["COUNTER"] is Counter
    assert MODELS["BITS"] is Bits


# -- PCAP capture programming -------------------------------------------------------


def test_write_words_match_the_firmware_encoding() -> None:
    # The encodings the upstream vectors and pcap_buffer.vhd use.
    assert pos_word(5, PosMode.VALUE) == 0x50
    assert pos_word(11, PosMode.DIFF) == 0xB1
    assert pos_word(2, PosMode.SUM_L) == 0x22
    assert pos_word(2, PosMode.SUM_H) == 0x23
    assert pos_word(2, PosMode.SUM2_H) == 0x28
    assert ext_word(Ext.TS_START_L) == 0x200
    assert ext_word(Ext.TS_TRIG_L) == 0x240
    assert ext_word(Ext.SAMPLES) == 0x260
    assert ext_word(Ext.BITS3) == 0x2A0
    with pytest.raises(ValueError):
        pos_word(32, PosMode.VALUE)


def test_layout_groups_words_as_the_server_does() -> None:
    layout = capture_layout(
        [
            CaptureRequest(3, "Min Max Mean", "INENC1.VAL"),
            CaptureRequest("TS_TRIG"),
            CaptureRequest("BITS1"),
            CaptureRequest(7, "Value Sum"),
        ]
    )
    # Hidden sample count first, then bits, 32-bit, 64-bit, then Mean.
    assert layout.write_words == (
        0x260,
        0x280,
        0x34,
        0x35,
        0x70,
        0x240,
        0x250,
        0x72,
        0x73,
        0x32,
        0x33,
    )
    assert layout.samples_word == 0
    summary = [(f.name, f.capture, f.words, f.hidden) for f in layout.fields]
    assert summary == [
        ("PCAP.GATE_DURATION", "Value", (0,), True),
        ("PCAP.BITS1", "Value", (1,), False),
        ("INENC1.VAL", "Min", (2,), False),
        ("INENC1.VAL", "Max", (3,), False),
        ("POS[7]", "Value", (4,), False),
        ("PCAP.TS_TRIG", "Value", (5, 6), False),
        ("POS[7]", "Sum", (7, 8), False),
        ("INENC1.VAL", "Mean", (9, 10), False),
    ]
    assert capture_words([CaptureRequest(3, "Mean")]) == [0x260, 0x32, 0x33]


def test_layout_uses_a_captured_gate_duration_for_mean() -> None:
    layout = capture_layout(
        [CaptureRequest(1, "Mean"), CaptureRequest("PCAP.SAMPLES", "Value")]
    )
    assert layout.write_words == (0x260, 0x12, 0x13)
    assert [f.hidden for f in layout.fields] == [False, False]
    assert layout.samples_word == 0


def test_layout_std_dev_carries_its_sum() -> None:
    layout = capture_layout([CaptureRequest(2, "StdDev")])
    assert layout.write_words == (0x260, 0x22, 0x23, 0x26, 0x27, 0x28)
    mean, sd = layout.fields[1:]
    assert (mean.capture, mean.words, mean.hidden) == ("Mean", (1, 2), True)
    assert (sd.capture, sd.words, sd.sum_words) == ("StdDev", (3, 4, 5), (1, 2))
    shown = capture_layout([CaptureRequest(2, "Mean StdDev")]).fields[1]
    assert not shown.hidden


@pytest.mark.parametrize(
    "requests",
    [
        [],
        [CaptureRequest(1, "No")],
        [CaptureRequest(1, "Average")],
        [CaptureRequest("TS_BOGUS")],
        [CaptureRequest("TS_START", "Sum")],
        [CaptureRequest(n % 32, "StdDev") for n in range(13)],  # 65 words
    ],
)
def test_layout_rejects_what_the_server_rejects(
    requests: list[CaptureRequest],
) -> None:
    with pytest.raises(ValueError):
        capture_layout(requests)


def test_field_value_assembles_signed_and_unsigned_words() -> None:
    layout = capture_layout([CaptureRequest(0, "Sum"), CaptureRequest("BITS0")])
    bits, total = layout.fields
    frame = [0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF]
    assert field_value(frame, bits) == 0xFFFFFFFF
    assert field_value(frame, total) == -2
    assert math.isnan(std_dev(0, 0, 0))


# -- PCAP acquisition ---------------------------------------------------------------


def program(layout_words: list[int], start: int = 1) -> dict[int, dict[str, int]]:
    events: dict[int, dict[str, int]] = {start: {"START_WRITE": 0}}
    for i, word in enumerate(layout_words):
        events[start + 1 + i] = {"WRITE": word}
    return events


def test_gated_staircase_sum_mean_min_max_std_dev() -> None:
    """A staircase of K-tick steps: every statistic has a closed form."""
    K = 1_000_000  # ticks per stair
    v0, step = 1000, -300
    origin = 100  # ARM (ENABLE and GATE already high): timestamps count from here
    layout = capture_layout(
        [
            CaptureRequest(3, "Sum"),
            CaptureRequest(3, "Min Max Mean"),
            CaptureRequest(3, "StdDev"),
            CaptureRequest("TS_START"),
            CaptureRequest("TS_END"),
            CaptureRequest("TS_TRIG"),
        ]
    )
    stairs = {origin + k * K: {"POS[3]": v0 + step * k} for k in range(10)}
    stairs[0] = {"POS[3]": v0}
    triggers = {
        origin + 4 * K: {"TRIG": 1},
        origin + 4 * K + 1: {"TRIG": 0},
        origin + 10 * K: {"TRIG": 1},
        origin + 10 * K + 1: {"TRIG": 0},
    }
    gate = {
        origin - 10: {"ENABLE": 1, "GATE": 1},
        origin + 6 * K: {"GATE": 0},  # stair 6 is not gated
        origin + 7 * K: {"GATE": 1},
    }
    arm = {origin: {"ARM": 0}}
    events = merge(program(list(layout.write_words)), stairs, triggers, gate, arm)
    pcap = Pcap()
    calls = drive(pcap, events, origin + 10 * K + 100)
    # Event driven: one call per input change, none per tick.
    assert len(calls) == len(events)

    words = pcap.drain()
    assert pcap.drain() == []
    n = layout.frame_words
    assert len(words) == 2 * n
    frames = [words[:n], words[n:]]
    by_name = {(f.capture, f.name): f for f in layout.fields}

    def value(frame: list[int], capture: str, name: str = "POS[3]") -> int:
        return field_value(frame, by_name[(capture, name)])

    def samples(frame: list[int]) -> int:
        assert layout.samples_word is not None
        return frame[layout.samples_word]

    windows = [[0, 1, 2, 3], [4, 5, 7, 8, 9]]  # gated stairs of each capture
    for frame, stair_ks in zip(frames, windows, strict=True):
        levels = [v0 + step * k for k in stair_ks]
        assert samples(frame) == K * len(levels)
        assert value(frame, "Sum") == K * sum(levels)
        assert value(frame, "Min") == min(levels)
        assert value(frame, "Max") == max(levels)
        assert value(frame, "Mean") / samples(frame) == pytest.approx(
            statistics.fmean(levels)
        )
        sd = by_name[("StdDev", "POS[3]")]
        squares = field_value(frame, sd)
        total = field_value(frame, by_name[("Mean", "POS[3]")])
        assert squares == K * sum(x * x for x in levels)
        assert std_dev(samples(frame), total, squares) == pytest.approx(
            statistics.pstdev(levels)
        )
    # The second sum needs the high word: it is below -2**31.
    assert value(frames[1], "Sum") < -(2**31)
    ts = [
        (
            value(f, "Value", "PCAP.TS_START"),
            value(f, "Value", "PCAP.TS_END"),
            value(f, "Value", "PCAP.TS_TRIG"),
        )
        for f in frames
    ]
    assert ts == [(0, 4 * K, 4 * K), (4 * K, 10 * K, 10 * K)]


def test_capture_words_reach_data_after_the_pipeline() -> None:
    layout = capture_layout([CaptureRequest("TS_TRIG"), CaptureRequest(0, "Value")])
    events = merge(
        program(list(layout.write_words)),
        {10: {"ARM": 0, "ENABLE": 1}, 20: {"TRIG": 1, "POS[0]": -7}, 21: {"TRIG": 0}},
    )
    pcap = Pcap()
    drive(pcap, {t: c for t, c in events.items() if t <= 21}, 21)
    # 32-bit values come before 64-bit ones; available at the capture tick.
    assert pcap.drain() == [0xFFFFFFF9, 10, 0]
    # The firmware clocks them out one a tick, from 4 ticks after the capture.
    assert PIPELINE == 4
    for tick, word in [(23, 0), (24, -7), (25, 10), (26, 0), (40, 0)]:
        pcap.on_changes(tick, {})
        assert to_int32(pcap["DATA"]) == word


def test_enable_fall_waits_for_words_in_flight() -> None:
    layout = capture_layout([CaptureRequest(n, "Value") for n in range(6)])
    events = merge(
        program(list(layout.write_words)),
        {50: {"ARM": 0, "ENABLE": 1}, 60: {"TRIG": 1}, 61: {"ENABLE": 0}},
    )
    pcap = Pcap()
    calls = drive(pcap, events, 1000)
    last_word = 60 + PIPELINE + 5
    assert calls[-1] == last_word  # woken once, when the frame is out
    assert pcap["ACTIVE"] == 0 and pcap["HEALTH"] == 0
    assert len(pcap.drain()) == 6


def test_captures_too_close_together_abort_with_health() -> None:
    layout = capture_layout([CaptureRequest("TS_TRIG"), CaptureRequest(0, "Value")])
    events = merge(
        program(list(layout.write_words)),
        {
            50: {"ARM": 0, "ENABLE": 1},
            60: {"TRIG": 1},
            61: {"TRIG": 0},
            62: {"TRIG": 1},  # 2 ticks later, but frames have 3 words
            63: {"TRIG": 0},
        },
    )
    pcap = Pcap()
    active: list[tuple[int, int]] = []
    for tick in sorted(events):
        pcap.on_changes(tick, events[tick])
        active.append((tick, pcap["ACTIVE"]))
    wake = pcap.on_changes(64, {})
    assert wake == 62 + PIPELINE
    pcap.on_changes(wake, {})
    assert (pcap["ACTIVE"], pcap["HEALTH"]) == (0, 1)
    assert active[-1] == (63, 1)
    assert len(pcap.drain()) == 3  # only the first capture
    # Re-arming clears HEALTH.
    pcap.on_changes(100, {"ARM": 0})
    assert (pcap["ACTIVE"], pcap["HEALTH"]) == (1, 0)


def test_diff_counts_changes_while_gated() -> None:
    layout = capture_layout([CaptureRequest(4, "Diff")])
    events = merge(
        program(list(layout.write_words)),
        {
            10: {"ARM": 0, "ENABLE": 1, "POS[4]": 100},
            20: {"GATE": 1},
            30: {"POS[4]": 150},  # +50 gated
            40: {"GATE": 0},
            45: {"POS[4]": 1000},  # not gated
            50: {"GATE": 1},
            60: {"POS[4]": 990, "TRIG": 1},  # -10, on the capture tick itself
        },
    )
    pcap = Pcap()
    drive(pcap, events, 100)
    assert [to_int32(w) for w in pcap.drain()] == [40]


def test_disarm_stops_at_once() -> None:
    pcap = Pcap()
    drive(pcap, {1: {"ARM": 0}, 2: {"ENABLE": 1}}, 10)
    assert pcap["ACTIVE"] == 1
    assert pcap.on_changes(5, {"DISARM": 0}) is None
    assert pcap["ACTIVE"] == 0
    assert pcap.changes == {"ACTIVE": 0}


# -- CLOCK ----------------------------------------------------------------------------


def test_clock_shape_rules() -> None:
    assert clock_shape(0, 0) == (0, 0)
    assert clock_shape(9, 0) == (9, 4)
    assert clock_shape(1, 0) == (2, 1)
    assert clock_shape(3, 7) == (8, 7)
    assert clock_shape(10, 3) == (10, 3)


def test_clock_of_a_million_ticks_is_woken_only_at_its_edges() -> None:
    period, cycles = 10**6, 50
    clock = Clock()
    outputs: list[tuple[int, int]] = []
    # Registers act a tick after they are written; disabled, nothing follows.
    assert clock.on_changes(5, {"PERIOD_L": period, "PERIOD_H": 0}) == 6
    assert clock.on_changes(6, {}) is None
    assert clock["OUT"] == 0
    wake = clock.on_changes(10, {"ENABLE": 1})
    calls = 0
    while wake is not None and wake < 11 + cycles * period:
        ts = wake
        wake = clock.on_changes(ts, {})
        calls += 1
        outputs.append((ts, clock["OUT"]))
    start = 11  # ENABLE is registered: the clock starts the next tick
    expected = []
    for k in range(cycles):
        expected += [(start + k * period, 1), (start + k * period + period // 2, 0)]
    assert outputs == expected
    assert calls == 2 * cycles
    # Disabling stops it one tick later, and it asks for nothing more.
    ts = outputs[-1][0] + 7
    assert clock.on_changes(ts, {"ENABLE": 0}) == ts + 1
    assert clock.on_changes(ts + 1, {}) is None
    assert clock["OUT"] == 0


def test_clock_uses_48_bit_times_and_restarts_on_write() -> None:
    clock = Clock()
    clock.on_changes(1, {"ENABLE": 1})
    long_period = (1 << 32) + 1000
    wake = clock.on_changes(2, {"PERIOD_L": 1000, "PERIOD_H": 1, "WIDTH_L": 3})
    assert wake == 3
    assert clock.on_changes(3, {}) == 3 + 3  # falls after WIDTH
    assert clock["OUT"] == 1
    assert clock.on_changes(6, {}) == 3 + long_period
    assert clock["OUT"] == 0
    # A write mid-period restarts from a rising edge on the next tick.
    assert clock.on_changes(500, {"WIDTH_L": 10}) == 501
    clock.on_changes(501, {})
    assert clock["OUT"] == 1
    assert clock.on_changes(502, {}) == 511


# -- COUNTER --------------------------------------------------------------------------


def pulse_trig(counter: Counter, ts: int, **inputs: int) -> int:
    """A one-tick TRIG pulse at ``ts`` (rising edge counts); return OUT."""
    counter.on_changes(ts, {"TRIG": 1, **inputs})
    out = to_int32(counter["OUT"])
    counter.on_changes(ts + 1, {"TRIG": 0})
    return out


def test_counter_wraps_between_min_and_max_both_ways() -> None:
    c = Counter()
    c.on_changes(1, {"START": 0, "STEP": 3, "MIN": -3, "MAX": 5})
    assert c.on_changes(2, {"ENABLE": 1}) is None
    seen = []
    carries = []
    for i in range(4):
        seen.append(pulse_trig(c, 10 + 2 * i))
        carries.append(c["CARRY"])
    # 0+3=3, 6 > 5 wraps by 9 to -3 (carry), 0, 3.
    assert seen == [3, -3, 0, 3]
    assert carries == [0, 0, 0, 0]  # the falling edge dropped each carry
    c.on_changes(30, {"DIR": 1})
    down = [pulse_trig(c, 40 + 2 * i) for i in range(4)]
    # 3-3=0, -3, -6 < -3 wraps to 3 (carry), 0.
    assert down == [0, -3, 3, 0]
    c.on_changes(50, {"TRIG": 1, "DIR": 0})
    assert (to_int32(c["OUT"]), c["CARRY"]) == (3, 0)
    c.on_changes(51, {"TRIG": 0})
    c.on_changes(52, {"TRIG": 1})
    assert (to_int32(c["OUT"]), c["CARRY"]) == (-3, 1)


def test_counter_new_limits_apply_next_tick_and_zero_restores_range() -> None:
    c = Counter()
    c.on_changes(1, {"START": 9, "ENABLE": 1})
    # Limits written on a trigger tick only apply from the next tick.
    assert pulse_trig(c, 5, MIN=0, MAX=5) == 10
    assert pulse_trig(c, 7) == 5  # 11 > 5 wraps by 6
    # SET wins over a trigger on the same tick.
    assert pulse_trig(c, 9, SET=-2) == -2
    assert pulse_trig(c, 11) == 5  # -2 + 1 = -1 < MIN: wraps up by 6
    c.on_changes(13, {"MAX": 0, "MIN": 0, "SET": 0x7FFFFFFF})
    assert pulse_trig(c, 15) == -(2**31)  # whole int32 range again
    assert c["CARRY"] == 0


def test_counter_on_disable_mode_publishes_at_falling_enable() -> None:
    c = Counter()
    c.on_changes(1, {"OUT_MODE": 1, "START": 10, "STEP": -2})
    c.on_changes(2, {"ENABLE": 1})
    assert [pulse_trig(c, t) for t in (4, 6, 8)] == [0, 0, 0]
    c.on_changes(10, {"ENABLE": 0})
    assert to_int32(c["OUT"]) == 4
    c.on_changes(11, {"OUT_MODE": 0})
    assert to_int32(c["OUT"]) == 4


def test_counter_on_disable_shows_the_last_counted_result() -> None:
    """As the firmware: a reload (START, SET) is not a counted result, so an
    acquisition without triggers publishes the previous one's final count."""
    c = Counter()
    c.on_changes(1, {"OUT_MODE": 1, "START": 100})
    c.on_changes(2, {"ENABLE": 1})
    pulse_trig(c, 4)
    c.on_changes(6, {"ENABLE": 0})
    assert to_int32(c["OUT"]) == 101
    c.on_changes(8, {"ENABLE": 1, "START": 7})
    c.on_changes(10, {"ENABLE": 0})
    assert to_int32(c["OUT"]) == 101


# -- BITS -----------------------------------------------------------------------------


def test_bits_follow_their_parameters() -> None:
    b = Bits()
    assert b.on_changes(1, {"A": 1, "C": 3}) is None
    assert b.changes == {"OUTA": 1, "OUTC": 1}
    b.on_changes(2, {"A": 0, "D": 1})
    assert [b[o] for o in ("OUTA", "OUTB", "OUTC", "OUTD")] == [0, 0, 1, 1]
