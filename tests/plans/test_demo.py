"""``panda-flyscan demo`` runs a flyscan into Tiled and prints a summary read
back from Tiled (attached to the session's simulated beamline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from panda_flyscan.app.cli import main
from panda_flyscan.app.demo import run_demo

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
