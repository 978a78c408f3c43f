"""The pure parts of the plans and devices: timing, PCOMP points, co-binning,
capture declarations, wiring, file naming. No IOC."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from ophyd_async.fastcs.panda import PandaPcompDirection

from panda_flyscan.devices import (
    Capture,
    CaptureError,
    DetectorWiring,
    EncoderWiring,
    PandaWiring,
    RunFilePathProvider,
    WiringError,
    check_captures,
    parse_field,
)
from panda_flyscan.plans import (
    MAX_FRAMES,
    PlanArgumentError,
    cobin,
    pcomp_points,
    seq_timing,
)
from panda_flyscan.plans._flyers import pulse_table

# -- SEQ timing ----------------------------------------------------------------


def test_seq_timing_is_whole_ticks() -> None:
    timing = seq_timing(1000, 1e-3, 0.25e-3)
    assert (timing.prescale_ticks, timing.high, timing.low) == (1, 31250, 93750)
    assert timing.period == pytest.approx(1e-3, abs=1e-15)
    info = timing.info()
    assert info.prescale_as_us == pytest.approx(0.008)
    assert list(info.sequence_table.repeats) == [1000]


def test_seq_timing_rounds_to_the_nearest_tick() -> None:
    timing = seq_timing(3, 123.4567e-6)
    assert timing.high + timing.low == 15432  # 123.456 us
    assert timing.exposure == pytest.approx(61.728e-6)


def test_long_periods_use_a_prescaler() -> None:
    timing = seq_timing(2, 100.0, 60.0)  # 7.5e9 ticks high: over 32 bits
    assert timing.prescale_ticks == 2
    assert timing.period == pytest.approx(100.0)
    assert timing.high < 2**32


def test_pulse_table_splits_rows_of_65535() -> None:
    table = pulse_table(140_000, 5, 7)
    assert list(table.repeats) == [65535, 65535, 8930]
    assert set(table.time1) == {5} and set(table.time2) == {7}
    assert all(table.outa1) and not any(table.outa2)
    assert seq_timing(MAX_FRAMES, 1e-3).frames == MAX_FRAMES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 1e-3), "frames must be at least 1"),
        ((True, 1e-3), "whole number"),
        ((10, 0.0), "period must be positive"),
        ((10, float("nan")), "period must be positive"),
        ((10, 1e-3, 1e-3), "dead time"),
        ((10, 1e-3, 4e-9), "shorter than the PandA's 8 ns clock tick"),
        ((MAX_FRAMES + 1, 1e-3), "split the scan"),
    ],
)
def test_seq_timing_refuses(args, message) -> None:
    with pytest.raises(PlanArgumentError, match=message):
        seq_timing(*args)


# -- PCOMP points --------------------------------------------------------------


def test_pcomp_points_positive_and_negative() -> None:
    up = pcomp_points(0.0, 10.0, 101, 0.001)
    assert (up.start_counts, up.step_counts, up.direction) == (
        0,
        100,
        PandaPcompDirection.POSITIVE,
    )
    np.testing.assert_allclose(up.positions, np.linspace(0, 10, 101), atol=1e-12)
    down = pcomp_points(6.0, 1.0, 51, 0.001, offset=0.5)
    assert (down.start_counts, down.step_counts) == (5500, 100)
    assert down.direction == PandaPcompDirection.NEGATIVE
    np.testing.assert_allclose(down.positions, np.linspace(6, 1, 51), atol=1e-12)


def test_pcomp_points_with_a_negative_scale_count_down() -> None:
    points = pcomp_points(0.0, 1.0, 11, -0.001)
    assert points.direction == PandaPcompDirection.NEGATIVE
    np.testing.assert_allclose(points.positions, np.linspace(0, 1, 11), atol=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0, 0.01, 11, 0.001), "at least 2 counts between points: at most 6"),
        ((0.0, 1.0, 4, 0.001), r"333.333 encoder counts apart.*stop=0.999"),
        ((0.0, 1e7, 2, 0.001), "32-bit range"),
        ((0.0, 1.0, 11, 0.0), "encoder scale is 0"),
    ],
)
def test_pcomp_points_refuse(args, message) -> None:
    with pytest.raises(PlanArgumentError, match=message):
        pcomp_points(*args)


# -- co-binning ----------------------------------------------------------------


def test_cobin_interpolates_and_never_extrapolates() -> None:
    t = np.arange(0.0, 1.0001, 0.01)
    # A triangle: up at 2 units/s, then down.
    p = np.where(t < 0.5, 2 * t, 2 * (1 - t))
    frames = np.array([-0.1, 0.0, 0.123, 0.5, 0.777, 1.0, 1.2])
    out = cobin(t, {"x": p}, frames)["x"]
    expected = np.where(frames < 0.5, 2 * frames, 2 * (1 - frames))
    np.testing.assert_allclose(out[1:-1], expected[1:-1], atol=1e-12)
    assert np.isnan(out[0]) and np.isnan(out[-1])


def test_cobin_mean_over_exposure_is_exact_for_piecewise_linear() -> None:
    t = np.linspace(0.0, 1.0, 11)
    p = np.where(t < 0.5, 2 * t, 2 * (1 - t))
    # Window [0.45, 0.55] straddles the peak: mean of the triangle there.
    out = cobin(t, {"x": p}, np.array([0.45, 0.2, 0.95]), exposure=0.1)["x"]
    assert out[0] == pytest.approx(0.95)
    assert out[1] == pytest.approx(0.5)  # line: the mid-window value
    assert np.isnan(out[2])  # the exposure runs past the last sample


def test_cobin_checks_its_input() -> None:
    with pytest.raises(ValueError, match="increase"):
        cobin([0.0, 0.0, 1.0], {"x": [1, 2, 3]}, [0.5])
    with pytest.raises(ValueError, match="2 samples for 3 times"):
        cobin([0.0, 0.5, 1.0], {"x": [1, 2]}, [0.5])


# -- captures and wiring -------------------------------------------------------


def test_parse_field() -> None:
    assert str(parse_field("inenc1.val")) == "INENC1.VAL"
    ref = parse_field("PCAP.TS_TRIG")
    assert (ref.block, ref.number, ref.name) == ("PCAP", None, "TS_TRIG")
    assert parse_field("SFP3_SYNC_IN.POS1").block == "SFP3_SYNC_IN"
    with pytest.raises(CaptureError, match=r"BLOCK\[N\]\.FIELD"):
        parse_field("INENC1")


@pytest.mark.parametrize(
    ("captures", "message"),
    [
        ([], "nothing to capture"),
        ([Capture("INENC1.VAL", "1x")], "not valid"),
        ([Capture("INENC1.VAL", "time")], "clash in Tiled"),
        ([Capture("INENC1.VAL", "x", "Min Max Mean")], "one Capture per statistic"),
        ([Capture("INENC1.VAL", "x"), Capture("INENC2.VAL", "x")], "unique"),
        ([Capture("INENC1.VAL", "x"), Capture("inenc1.val", "y")], "declared twice"),
    ],
)
def test_check_captures_refuses(captures, message) -> None:
    with pytest.raises(CaptureError, match=message):
        check_captures(captures)


def test_wiring_lookups_and_errors() -> None:
    wiring = PandaWiring(
        detectors=(DetectorWiring("saxs", ttlout=1), DetectorWiring("waxs", ttlout=2)),
        encoders=(EncoderWiring("x", inenc=3),),
    )
    assert wiring.ttlouts_for(["waxs", "saxs"]) == {"waxs": 2, "saxs": 1}
    assert wiring.encoder_for("x") == 3
    assert wiring.as_metadata()["encoders"] == {"x": "INENC3"}
    with pytest.raises(WiringError, match=r"add EncoderWiring\('y', inenc=N\)"):
        wiring.encoder_for("y")
    with pytest.raises(WiringError, match="more than one detector"):
        PandaWiring(detectors=(DetectorWiring("a", 1), DetectorWiring("b", 1)))


def test_run_file_path_provider_gives_each_call_its_own_file() -> None:
    provider = RunFilePathProvider(
        "/data/panda", clock=lambda: datetime(2025, 1, 31, 14, 25, 1)
    )
    first, second = provider("panda"), provider("panda")
    assert str(first.directory_path) == "/data/panda/2025-01-31"
    assert first.filename.startswith("panda-142501-")
    assert first.filename != second.filename
    assert first.create_dir_depth == -1
    assert provider.last["panda"] == second
    remote = RunFilePathProvider("/mnt/ioc/data", root_uri="file://server/data/")
    assert remote("det").directory_uri == "file://server/data/2025-01-31/".replace(
        "2025-01-31", datetime.now().strftime("%Y-%m-%d")
    )
    with pytest.raises(ValueError, match="absolute"):
        RunFilePathProvider("relative/dir")
