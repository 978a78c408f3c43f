"""The live view without Tiled: what it plots from a start document and rows
(1-D time and position scans, a snaked 2-D map, frames), the lag arithmetic,
PNGs drawn headless, and the command's help."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scanspec.specs import Fly, Line
from view_helpers import assert_non_trivial_png

from panda_flyscan.app.cli import main
from panda_flyscan.app.view import (
    CaptureClock,
    LiveRun,
    PngWriter,
    RowClock,
    Update,
    live_lag,
    montage,
    save_png,
)
from panda_flyscan.storage import to_grid


def _start(**extra: object) -> dict[str, object]:
    return {"uid": "0123456789abcdef", "plan_name": "time_scan", **extra}


def test_time_scan_plots_every_field_against_trigger_time() -> None:
    run = LiveRun(_start(num_points=10))
    run.add_rows("trigger_time", 0, np.arange(4) * 1e-3)
    run.add_rows("x", 0, np.arange(3) * 0.5)
    run.add_rows("x", 3, np.array([1.5, 2.0]))
    picture = run.picture()
    assert picture.abscissa == "trigger_time"
    assert picture.rows == 4  # what every field has; x is one ahead
    [curve] = picture.curves
    assert curve.label == "x"
    np.testing.assert_array_equal(curve.x, np.arange(4) * 1e-3)
    np.testing.assert_array_equal(curve.y, [0, 0.5, 1, 1.5])
    np.testing.assert_array_equal(run.rows("x"), [0, 0.5, 1, 1.5, 2])
    assert picture.title == "time_scan 01234567: 4/10 rows (running)"
    assert not picture.done and picture.map is None


def test_rows_out_of_order_are_refused() -> None:
    run = LiveRun(_start())
    run.add_rows("x", 0, np.zeros(3))
    with pytest.raises(ValueError, match="x: rows from 4 after 3 received"):
        run.add_rows("x", 4, np.zeros(1))


def test_position_scan_plots_against_its_motor_and_stop_finishes() -> None:
    run = LiveRun(_start(plan_name="position_scan", motors=["x"], num_points=3))
    run.add_rows("trigger_time", 0, np.array([0.0, 0.1, 0.2]))
    run.add_rows("x", 0, np.array([0.0, 0.01, 0.02]))
    run.stop = {"exit_status": "success", "num_events": {"primary": 3}}
    picture = run.picture()
    assert picture.abscissa == "x"
    assert [c.label for c in picture.curves] == ["trigger_time"]
    assert picture.done and picture.expected == 3
    assert picture.title.endswith("3/3 rows (done)")


def test_no_rows_yet_plots_against_the_row_number() -> None:
    picture = LiveRun(_start()).picture()
    assert picture.rows == 0 and picture.abscissa == "row" and picture.curves == ()


def test_snaked_map_fills_in_on_the_grid() -> None:
    spec = Fly(0.01 @ (Line("y", 0, 0.3, 3) * ~Line("x", 0, 1, 4)))
    start = _start(
        plan_name="spec_scan",
        scanspec=spec.serialize(),
        shape=[3, 4],
        snaking=[False, True],
        motors=["y", "x"],
        extents=[[0.0, 0.3], [0.0, 1.0]],
        num_points=12,
    )
    run = LiveRun(start)
    t = np.arange(6, dtype=float)
    run.add_rows("trigger_time", 0, t)
    run.add_rows("x", 0, np.zeros(6))
    run.add_rows("y", 0, np.zeros(6))
    picture = run.picture()
    assert picture.map is not None
    assert picture.map.label == "trigger_time"  # no field but the axes and time
    assert picture.map.axes == ("y", "x")
    assert picture.map.extent == (0.0, 1.0, 0.0, 0.3)
    grid = picture.map.grid
    np.testing.assert_array_equal(grid[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(grid[1], [np.nan, np.nan, 5, 4])  # backwards
    assert np.isnan(grid[2]).all()
    np.testing.assert_array_equal(grid, to_grid(t, spec.serialize()))
    # A field that is not an axis is mapped first; or the one asked for.
    run.add_rows("counts", 0, t * 10)
    assert run.picture().map.label == "counts"  # type: ignore[union-attr]
    run.map_field = "x"
    assert run.picture().map.label == "x"  # type: ignore[union-attr]


def test_latest_frame_and_montage() -> None:
    run = LiveRun(_start())
    run.set_frame("det", 7, np.arange(12).reshape(1, 3, 4))
    [frame] = run.picture().frames
    assert frame.index == 7 and frame.image.shape == (3, 4)
    assert run.frame_index("det") == 7 and run.frame_index("det2") is None
    frames = np.arange(10 * 2 * 3).reshape(10, 1, 2, 3)
    tiled, picked = montage(frames, count=4)
    assert picked == [0, 3, 6, 9]
    assert tiled.shape == (4, 6)
    np.testing.assert_array_equal(tiled[2:4, 0:3], frames[6, 0])


def test_lag_pairs_each_row_with_its_emission_and_drawing() -> None:
    emitted = [(10.0, 0), (10.0, 100), (11.0, 200), (12.0, 300)]
    updates = [
        Update(10.3, 10.4, 100),
        Update(11.2, None, 150),  # not drawn: its rows count from the next
        Update(11.5, 11.6, 200),
        Update(12.5, 12.9, 300),
    ]
    report = live_lag(updates, emitted)
    assert report.rows == 300
    assert report.median == pytest.approx(0.6)
    assert report.max == pytest.approx(0.9)
    assert report.last == pytest.approx(0.9)
    assert "last row 0.900 s" in str(report)
    with pytest.raises(ValueError, match="nothing to measure"):
        live_lag([], emitted)


def test_capture_clock_keeps_the_latest_capture_only() -> None:
    """The IOC's counter restarts at each arm: the previous run's count (the
    subscription's first value) is forgotten when it drops."""
    times = iter([1.0, 2.0, 3.0, 4.0])
    clock = CaptureClock(clock=lambda: next(times))
    for rows in (3000, 0, 500, 1000):
        clock({"panda-data-num_captured": {"value": rows}})
    assert clock.captured == [(2.0, 0), (3.0, 500), (4.0, 1000)]
    updates = [Update(3.5, 3.6, 500), Update(4.2, 4.4, 1000)]
    report = live_lag(updates, clock.captured)
    assert report.rows == 1000
    assert report.median == pytest.approx(0.5)  # rows 0-499: 0.6 s, 500-999: 0.4 s
    clock.reset()
    assert clock.captured == []


def test_row_clock_counts_rows_every_scalar_field_of_primary_has() -> None:
    times = iter([1.0, 2.0, 3.0])
    clock = RowClock(clock=lambda: next(times))
    clock("start", {"uid": "u"})
    clock(
        "descriptor",
        {
            "name": "primary",
            "uid": "d",
            "data_keys": {
                "x": {"shape": [1]},
                "t": {"shape": [1]},
                "det": {"shape": [1, 64, 64]},
            },
        },
    )
    for key in ("x", "t", "det"):
        clock("stream_resource", {"uid": f"r-{key}", "data_key": key})
    clock(
        "stream_datum",
        {
            "descriptor": "d",
            "stream_resource": "r-x",
            "indices": {"start": 0, "stop": 5},
        },
    )
    clock(
        "stream_datum",
        {
            "descriptor": "d",
            "stream_resource": "r-det",
            "indices": {"start": 0, "stop": 5},
        },
    )
    clock(
        "stream_datum",
        {
            "descriptor": "d",
            "stream_resource": "r-t",
            "indices": {"start": 0, "stop": 5},
        },
    )
    clock(
        "stream_datum",
        {
            "descriptor": "d",
            "stream_resource": "r-x",
            "indices": {"start": 5, "stop": 9},
        },
    )
    assert clock.emitted == [(1.0, 5), (2.0, 5), (3.0, 5)]


def test_png_of_a_map_and_a_frame_is_non_trivial(tmp_path: Path) -> None:
    spec = Fly(0.01 @ (Line("y", 0, 0.3, 3) * ~Line("x", 0, 1, 4)))
    run = LiveRun(
        _start(
            plan_name="spec_scan",
            scanspec=spec.serialize(),
            shape=[3, 4],
            motors=["y", "x"],
        )
    )
    run.add_rows("trigger_time", 0, np.arange(7) * 0.01)
    run.add_rows("x", 0, np.linspace(0, 1, 7))
    run.set_frame("det", 6, np.random.default_rng(0).random((1, 16, 16)))
    path = save_png(run.picture(), tmp_path / "out" / "view.png")
    assert path.is_file() and not list(path.parent.glob(".*partial"))
    assert_non_trivial_png(path)


def test_png_writer_throttles_but_always_writes_the_last_picture(
    tmp_path: Path,
) -> None:
    run = LiveRun(_start())
    run.add_rows("trigger_time", 0, np.arange(3.0))
    run.add_rows("x", 0, np.arange(3.0))
    writer = PngWriter(tmp_path, min_interval=3600)
    assert writer(run.picture()) is True
    assert writer(run.picture()) is False  # too soon
    run.stop = {"exit_status": "success"}
    assert writer(run.picture()) is True
    assert writer.written == [tmp_path / "live-01234567.png"]
    assert_non_trivial_png(writer.written[0])


def test_view_command_help() -> None:
    result = CliRunner().invoke(main, ["view", "--help"])
    assert result.exit_code == 0, result.output
    assert "URI [UID]" in result.output
    for option in ("--api-key", "--png", "--once", "--interval", "--map"):
        assert option in result.output
    assert "view URI [UID]" in CliRunner().invoke(main, ["--help"]).output
