"""``panda-flyscan demo`` runs a flyscan into Tiled and prints a summary read
back from Tiled (attached to the session's simulated beamline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from view_helpers import assert_non_trivial_png

from panda_flyscan.app.cli import main
from panda_flyscan.app.demo import fitting_period, run_demo

pytestmark = pytest.mark.ioc


def test_demo_prints_what_tiled_holds(beamline, tmp_path: Path, capsys) -> None:
    uid = run_demo(200, 1e-3, attach=True, data_dir=tmp_path, progress=False)
    out = capsys.readouterr().out
    assert f"Run {uid} (time_scan, exit status success)" in out
    assert "read back  : 200 rows of trigger_time, x" in out
    assert "trigger_time spacing: 1000.000 us mean, 0.0 ns peak-to-peak" in out
    [h5] = re.findall(r"HDF5 file  : (\S+)", out)
    assert Path(h5).is_file() and Path(h5).is_relative_to(tmp_path)
    assert f"--data-dir {tmp_path / 'tiled'}" in out
    [png] = re.findall(r"picture    : (\S+)", out)
    assert Path(png) == tmp_path / f"demo-{uid[:8]}.png"
    assert_non_trivial_png(Path(png))


def test_demo_with_detector_picks_a_period_and_draws_its_frames(
    beamline, tmp_path: Path
) -> None:
    """No --period: one that fits the detector's 1 ms readout, not a failure."""
    args = ["demo", "--attach", "--detector", "--frames", "50", "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Period 2.1 ms: fits det's 1 ms readout after the exposure" in result.output
    assert "det        : 50 frames of 64x64 uint16" in result.output
    [png] = re.findall(r"picture    : (\S+)", result.output)
    assert_non_trivial_png(Path(png))


def test_demo_map_is_one_spec_scan_run_drawn_as_a_map(beamline, tmp_path: Path) -> None:
    args = ["demo", "--attach", "--plan", "map", "--frames", "200", "--detector"]
    result = CliRunner().invoke(
        main, [*args, "--no-progress", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "(spec_scan, exit status success)" in result.output
    assert "read back  : 200 rows of det, trigger_time, x, y" in result.output
    assert "map        : 10 x 20 (snaked [False, True])" in result.output
    # Frames within a line exactly one period apart (the period picked: 2.1 ms).
    assert "2100.000 us mean, 0.0 ns peak-to-peak (within lines)" in result.output
    [png] = re.findall(r"picture    : (\S+)", result.output)
    assert_non_trivial_png(Path(png))
    # A map that is not whole lines is refused before anything starts.
    bad = CliRunner().invoke(main, ["demo", "--plan", "map", "--frames", "205"])
    assert bad.exit_code != 0
    assert "--frames must be a multiple of 10, at least 20, got 205" in bad.output


def test_demo_error_in_the_run_is_its_message_alone(beamline, tmp_path: Path) -> None:
    """A period too short for the detector, found by the plan once it runs:
    the message, no traceback (the RunEngine logs one by default)."""
    args = ["demo", "--attach", "--detector", "--frames", "5", "--period", "1e-3"]
    result = CliRunner().invoke(
        main, [*args, "--no-progress", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "detector det dead time 0.001 s: lengthen the period" in result.output
    assert "Traceback" not in result.output


def test_fitting_period_fits_exposure_and_readout() -> None:
    assert fitting_period(1e-3, None) == pytest.approx(2.1e-3)  # half is live
    assert fitting_period(1e-3, 2e-3) == pytest.approx(3.2e-3)
    assert fitting_period(0.0, None) == 1e-3  # never below the default


def test_demo_command_refuses_bad_timing_before_starting_anything() -> None:
    result = CliRunner().invoke(
        main, ["demo", "--period", "1e-3", "--exposure", "2e-3", "--no-progress"]
    )
    assert result.exit_code == 2
    assert "period 0.001 s is not longer than exposure 0.002 s" in result.output
    assert "Starting" not in result.output


def test_demo_command_is_listed() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    for option in ("--plan", "--frames", "--period", "--exposure", "--attach"):
        assert option in result.output
