"""The benchmark suite's bookkeeping (no processes started) and its command line.

The benchmarks themselves are not run here: ``panda-flyscan bench`` does that.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from panda_flyscan.app.bench.measure_map import (
    ISSUE_GRID,
    MapRun,
    MapTiming,
    move_time,
)
from panda_flyscan.app.bench.plot import efficiency_series, plot_efficiency
from panda_flyscan.app.bench.stats import (
    SCHEMA,
    Figure,
    format_table,
    format_value,
    machine_info,
    pairwise_ratio,
    read_json,
    summary,
    to_json,
    write_json,
)
from panda_flyscan.app.bench.suite import (
    FULL,
    GROUPS,
    MEASUREMENTS,
    QUICK,
    Options,
    budget_for,
    selected,
)
from panda_flyscan.app.cli import main


def make_figures() -> list[Figure]:
    fly = Figure(
        "efficiency.fly.1000",
        GROUPS["efficiency"],
        "flyscan, N=1,000",
        "x",
        samples=[1.2, 1.1, 1.5],
    )
    step = Figure(
        "efficiency.step.1000",
        GROUPS["efficiency"],
        "step scan, N=1,000",
        "x",
        samples=[2.4, 2.2, 2.5],
    )
    ratio = Figure(
        "efficiency.ratio.1000",
        GROUPS["efficiency"],
        "flyscan / step scan",
        ratio=True,
        samples=pairwise_ratio(fly.samples, step.samples),
    )
    failed = Figure(
        "capture.4.frames",
        GROUPS["capture"],
        "4 captured fields",
        "frames/s",
        error="RuntimeError: no IOC",
    )
    startup = Figure(
        "fixed.startup", GROUPS["fixed"], "beamline start-up", "s", samples=[3.0]
    )
    return [fly, step, ratio, failed, startup]


# -- statistics -----------------------------------------------------------------


def test_figure_statistics() -> None:
    fig = Figure("k", "g", "label", samples=[3.0, 1.0, 2.0, 10.0])
    assert fig.runs == 4
    assert fig.median == 2.5
    assert fig.min == 1.0
    assert fig.max == 10.0
    assert summary([5.0]) == (5.0, 5.0, 5.0)


def test_empty_figure_has_no_statistics() -> None:
    fig = Figure("k", "g", "label")
    assert (fig.runs, fig.median, fig.min, fig.max) == (0, None, None, None)
    with pytest.raises(ValueError):
        summary([])


def test_figure_refuses_non_finite_samples() -> None:
    fig = Figure("k", "g", "label")
    fig.add(1)
    for bad in (math.inf, math.nan):
        with pytest.raises(ValueError, match="not finite"):
            fig.add(bad)
    assert fig.samples == [1.0]


def test_pairwise_ratio_is_per_repeat() -> None:
    assert pairwise_ratio([1.0, 4.0, 9.0], [2.0, 2.0, 3.0]) == [0.5, 2.0, 3.0]
    # The median of the ratios, not the ratio of the medians.
    ratios = Figure("r", "g", "r", samples=pairwise_ratio([1, 10, 3], [1, 1, 3]))
    assert ratios.median == 1.0
    with pytest.raises(ValueError, match="one pair per repeat"):
        pairwise_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="zero"):
        pairwise_ratio([1.0], [0.0])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0.0, "0.00"),
        (123456.7, "123,457"),
        (1234.5, "1,234"),
        (123.4, "123"),
        (12.34, "12.3"),
        (1.234, "1.23"),
        (0.5, "0.500"),
        (0.01234, "0.0123"),
        (0.001234, "0.00123"),
        (0.0001234, "1.23e-04"),
        (-2.5, "-2.50"),
    ],
)
def test_format_value(value: float | None, text: str) -> None:
    assert format_value(value) == text


# -- the table ------------------------------------------------------------------


def test_table_has_one_row_per_figure_under_its_group() -> None:
    table = format_table(make_figures())
    lines = table.splitlines()
    rows = [line for line in lines if line.startswith("|")]
    # Aligned: every row of the table as wide as the header.
    assert len({len(line) for line in rows}) == 1
    assert rows[0].split("|")[1].strip() == "figure"
    assert [c.strip() for c in rows[0].split("|")[2:-1]] == [
        "median",
        "min",
        "max",
        "unit",
        "runs",
    ]
    text = "\n".join(rows)
    assert text.index(GROUPS["efficiency"]) < text.index("flyscan, N=1,000")
    assert text.index(GROUPS["capture"]) < text.index("4 captured fields")
    assert text.index(GROUPS["fixed"]) < text.index("beamline start-up")

    def cells(label: str) -> list[str]:
        [row] = [r for r in rows if label in r]
        return [c.strip() for c in row.split("|")[1:-1]]

    assert cells("flyscan, N=1,000")[1:] == ["1.20", "1.10", "1.50", "x", "3"]
    assert cells("ratio flyscan / step scan")[1:] == [
        "0.500",
        "0.500",
        "0.600",
        "",
        "3",
    ]
    assert cells("4 captured fields")[1:] == ["failed", "", "", "frames/s", "0"]
    # The error is listed under the table.
    assert "capture.4.frames: RuntimeError: no IOC" in lines[-1]


def test_ratio_rows_are_indented() -> None:
    table = format_table(make_figures())
    assert "|   ratio flyscan / step scan" in table


# -- JSON -----------------------------------------------------------------------


def test_json_round_trip(tmp_path: Path) -> None:
    figures = make_figures()
    meta = {"mode": "quick", "wall_seconds": 12.5, "machine": {"nproc": 2}}
    path = write_json(tmp_path / "out" / "results.json", figures, meta=meta)
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA
    assert data["mode"] == "quick"
    first = data["figures"][0]
    assert first["key"] == "efficiency.fly.1000"
    assert (first["median"], first["min"], first["max"], first["runs"]) == (
        1.2,
        1.1,
        1.5,
        3,
    )
    assert first["samples"] == [1.2, 1.1, 1.5]
    assert data["figures"][3]["error"] == "RuntimeError: no IOC"
    assert data["figures"][3]["median"] is None
    read_meta, read_figures = read_json(path)
    assert read_meta["machine"] == {"nproc": 2}
    assert [f.as_dict() for f in read_figures] == [f.as_dict() for f in figures]
    assert not list(tmp_path.glob("out/*.tmp"))


def test_json_of_another_schema_is_refused(tmp_path: Path) -> None:
    data = to_json(make_figures())
    data["schema"] = SCHEMA + 1
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="schema"):
        read_json(path)


def test_machine_info_says_what_it_ran_on() -> None:
    info = machine_info()
    assert info["nproc"] >= 1
    assert info["python"].count(".") == 2
    assert "bluesky" in info["versions"]
    json.dumps(info)


# -- the plot -------------------------------------------------------------------


def test_efficiency_plot(tmp_path: Path) -> None:
    figures = make_figures()
    figures.append(
        Figure(
            "efficiency.fly.10000",
            GROUPS["efficiency"],
            "flyscan, N=10,000",
            samples=[1.05],
        )
    )
    assert efficiency_series(figures, "fly") == [
        (1000, 1.2, 1.1, 1.5),
        (10000, 1.05, 1.05, 1.05),
    ]
    path = plot_efficiency(figures, tmp_path / "eff.png")
    assert path is not None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_efficiency(make_figures()[3:], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


# -- budgets and selection ------------------------------------------------------


def test_quick_budget_is_smaller_than_the_full_one() -> None:
    assert budget_for(Options(quick=True)) == QUICK
    assert budget_for(Options()) == FULL
    assert max(n for n, _ in QUICK.efficiency) < max(n for n, _ in FULL.efficiency)
    assert [n for n, _ in FULL.efficiency] == [1_000, 10_000, 100_000]
    assert FULL.capture_fields == (4, 16)
    assert FULL.readback_rows == 1_000_000


def test_repeats_override_every_figure_but_long_scans_get_a_third() -> None:
    budget = budget_for(Options(repeats=6))
    assert dict(budget.efficiency) == {1_000: 6, 10_000: 6, 100_000: 2}
    assert budget.startup_repeats == budget.writer_repeats == 6
    assert dict(budget_for(Options(repeats=1)).efficiency)[100_000] == 1
    with pytest.raises(ValueError):
        budget_for(Options(repeats=0))


def test_sizes_override_the_efficiency_points() -> None:
    budget = budget_for(Options(sizes=(500, 1_000)))
    assert budget.efficiency == ((500, 3), (1_000, 3))


def test_selection_keeps_the_suite_order() -> None:
    assert [m.name for m in selected([])] == list(MEASUREMENTS)
    assert [m.name for m in selected(["writer", "startup"])] == ["startup", "writer"]
    with pytest.raises(ValueError, match="unknown measurement"):
        selected(["nope"])
    for m in MEASUREMENTS.values():
        assert m.group in GROUPS
        assert m.help


# -- the command line -----------------------------------------------------------


#: The first line of ``panda-flyscan bench``'s own help (its docstring).
BENCH_SUMMARY = "Measure the whole stack on the simulated beamline; print one table."


def test_bench_help_explains_each_figure() -> None:
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    # The command's own help, not the group's or an error.
    assert "Usage: main bench [OPTIONS]" in result.output
    assert BENCH_SUMMARY in result.output
    for option in ("--quick", "--repeats", "--output", "--only"):
        assert option in result.output
    for name in MEASUREMENTS:
        assert name in result.output


def test_bench_is_listed_in_the_main_help() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "bench" in result.output
    # Under "Commands:", with its summary: the group's docstring alone also
    # says "bench", registered or not.
    commands = result.output.split("\nCommands:\n", 1)[1].splitlines()
    assert any(line.split() == ["bench", *BENCH_SUMMARY.split()] for line in commands)


def test_bench_is_registered_in_the_main_group() -> None:
    from panda_flyscan.app.cli.bench import bench

    assert isinstance(main, click.Group)
    assert main.get_command(click.Context(main), "bench") is bench


def test_bench_refuses_an_unknown_measurement_before_starting_anything() -> None:
    result = CliRunner().invoke(main, ["bench", "--only", "startup,bogus"])
    assert result.exit_code == 2
    assert "bogus" in result.output


# -- the map figure -------------------------------------------------------------


def test_map_figure_is_registered_with_both_grids_in_each_budget() -> None:
    m = MEASUREMENTS["map"]
    assert m.group == "map" and GROUPS["map"].startswith("6.")
    assert "map.fly.efficiency" in m.keys
    assert FULL.map_grid == ISSUE_GRID == (20, 500)
    # The quick map and every step-scan comparison are smaller grids.
    for lines, points in (QUICK.map_grid, QUICK.map_step_grid, FULL.map_step_grid):
        assert lines * points < 20 * 500
    assert budget_for(Options(repeats=3)).map_repeats == 3


def test_move_time_is_the_motor_records_trapezoid() -> None:
    # Long enough to reach VELO: the ramps cover VELO x ACCL between them.
    assert move_time(1.0, 5.0, 0.1) == pytest.approx(1.0 / 5.0 + 0.1)
    assert move_time(-1.0, 5.0, 0.1) == pytest.approx(0.3)
    assert move_time(0.5, 5.0, 0.1) == pytest.approx(0.2)  # just reaches VELO
    # Too short (1/19 mm at 5 mm/s, ACCL 0.1 s): a triangle at 50 mm/s^2.
    assert move_time(1 / 19, 5.0, 0.1) == pytest.approx(2 * math.sqrt(1 / 19 / 50))
    assert move_time(0.0, 5.0, 0.1) == 0.0
    assert move_time(1.0, 5.0, 0.0) == pytest.approx(0.2)  # no ramps


def test_map_ideal_time_of_the_issues_snake() -> None:
    timing = MapTiming(
        lines=20,
        points=500,
        frame=1e-3,
        fast_acceleration_time=0.1,
        slow_step=1 / 19,
        slow_velocity=5.0,
        slow_acceleration_time=0.1,
    )
    y_step = 2 * math.sqrt(1 / 19 * 0.1 / 5.0)  # 64.9 ms
    assert timing.slow_step_time == pytest.approx(y_step)
    # y steps during x's run-down (100 ms), so it adds nothing.
    assert timing.between_lines == pytest.approx(0.1)
    assert timing.turnaround == pytest.approx(0.2)
    assert timing.line_period == pytest.approx(0.5 + 0.2)
    # 10 s of frames, 20 run-ups and run-downs.
    assert timing.ideal == pytest.approx(10.0 + 4.0)
    # A y step longer than the run-down (1 mm: 0.3 s) adds its excess.
    far = replace(timing, slow_step=1.0)
    assert far.between_lines == pytest.approx(0.3)
    assert far.line_period == pytest.approx(0.5 + 0.1 + 0.3)
    assert far.ideal == pytest.approx(10.0 + 4.0 + 19 * 0.2)
    # x's repositioning comes after its run-down, in parallel with y's step.
    slower = replace(timing, fast_reposition=0.5)
    assert slower.between_lines == pytest.approx(0.6)
    assert slower.ideal == pytest.approx(10.0 + 4.0 + 19 * 0.5)
    run = MapRun(uid="u", wall=16.0, starts=[0.3, 1.1, 1.8], line_end=15.0)
    assert run.overheads(timing) == pytest.approx(
        [0.8 - timing.line_period, 0.7 - timing.line_period]
    )
