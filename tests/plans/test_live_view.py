"""The live view end to end: a follower in its own thread, reading a real
Tiled server while the simulated beamline's scan is written into it, receives
every row (count and values equal to what read_field returns afterwards) and
the latest frame; its PNGs are non-trivial; the command plots a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import API_KEY
from scanspec.specs import Fly, Line
from view_helpers import assert_non_trivial_png

from panda_flyscan.app.cli import main
from panda_flyscan.app.view import (
    CaptureClock,
    LiveViewCallback,
    RowClock,
    Update,
    live_lag,
    png_path,
)
from panda_flyscan.plans import spec_scan, time_scan
from panda_flyscan.storage import read_field

pytestmark = pytest.mark.ioc


def _follow_during(flyscan: Any, plan: Any, png_dir: Path) -> tuple[str, Any, Any]:
    """Run ``plan`` with a live view (PNGs in ``png_dir``) opened by its start
    document; the uid, the view (done) and the RunEngine's row clock."""
    views = LiveViewCallback(flyscan.client(), png_dir=png_dir)
    clock = RowClock()
    tokens = [flyscan.RE.subscribe(views), flyscan.RE.subscribe(clock)]
    try:
        (uid,) = flyscan.RE(plan)
    finally:
        for token in tokens:
            flyscan.RE.unsubscribe(token)
    [view] = views.views
    assert view.uid == uid
    view.wait(60)
    assert view.done
    return uid, view, clock


def _assert_every_row(flyscan: Any, uid: str, view: Any, fields: list[str]) -> int:
    run = view.follower.run
    client = flyscan.client()
    for name in fields:
        expected = read_field(client, uid, "primary", name)
        np.testing.assert_array_equal(run.rows(name), expected, err_msg=name)
    n = len(read_field(client, uid, "primary", fields[0]))
    assert view.picture.rows == n and view.picture.done
    # It followed the run: rows came in several polls, not all at the end.
    assert min(u.rows for u in view.follower.updates) < n
    return n


def test_live_view_receives_every_row_and_frame_of_a_map(
    flyscan: Any, tmp_path: Path
) -> None:
    bl = flyscan.beamline
    x, y = bl.motor("x"), bl.motor("y")
    spec = Fly(0.05 @ (Line(y, 0, 0.3, 4) * ~Line(x, 0, 1, 21)))
    plan = spec_scan(bl.panda, spec, detectors=[bl.detectors["det"]])
    uid, view, clock = _follow_during(flyscan, plan, tmp_path)
    assert _assert_every_row(flyscan, uid, view, ["x", "y", "trigger_time"]) == 84
    # The map is the run on its grid; the frame shown is the last one.
    picture = view.picture
    assert picture.map is not None and picture.map.grid.shape == (4, 21)
    assert not np.isnan(picture.map.grid).any()
    [frame] = picture.frames
    assert frame.index == 83
    last = read_field(flyscan.client(), uid, "primary", "det", 83)
    np.testing.assert_array_equal(frame.image, last.reshape(frame.image.shape))
    assert view.pngs == [png_path(tmp_path, uid)]
    assert_non_trivial_png(view.pngs[0])
    print(f"\n2-D map, 84 rows: {view.lag(clock)}")


def test_live_view_lag_of_a_time_scan(flyscan: Any, tmp_path: Path) -> None:
    """Every row of a 1 kHz scan reaches the view; its lag behind the IOC's
    capture counter and behind the documents is measured (printed, not
    asserted: timing on a shared machine is the benchmark's business)."""
    panda = flyscan.beamline.panda
    capture = CaptureClock()

    async def subscribe(on: bool) -> None:
        if on:
            panda.data.num_captured.subscribe_reading(capture)
        else:
            panda.data.num_captured.clear_sub(capture)

    # In this RunEngine's loop (another test's RunEngine may own the global one).
    flyscan.run(subscribe(True))
    try:
        uid, view, clock = _follow_during(
            flyscan, time_scan(panda, 3000, 1e-3), tmp_path
        )
    finally:
        flyscan.run(subscribe(False))
    assert _assert_every_row(flyscan, uid, view, ["trigger_time", "x"]) == 3000
    report = view.lag(clock)
    assert report.rows == 3000
    # The IOC counted every row, the last one after the first.
    assert capture.captured[-1][1] == 3000
    assert view.lag(capture).rows == 3000
    received = [Update(u.received, None, u.rows) for u in view.follower.updates]
    print(f"\ntime_scan 3000 rows at 1 kHz: {report}")
    print(f"  of which to reception: {live_lag(received, clock.emitted)}")
    print(f"  from the IOC's capture: {view.lag(capture)}")


def test_view_command_plots_a_finished_run(flyscan: Any, tmp_path: Path) -> None:
    (uid,) = flyscan.RE(time_scan(flyscan.beamline.panda, 50, 1e-3))
    args = ["view", flyscan.tiled.uri, "--api-key", API_KEY, "--png", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, uid])
    assert result.exit_code == 0, result.output
    path = png_path(tmp_path, uid)
    assert str(path) in result.output
    assert f"{uid[:8]}: 50/50 rows (done)" in result.output
    assert_non_trivial_png(path)
    # No UID: the newest run, which is this one.
    path.unlink()
    newest = CliRunner().invoke(main, [*args, "--once"])
    assert newest.exit_code == 0, newest.output
    assert f"Following run {uid}" in newest.output
    assert_non_trivial_png(path)
    missing = CliRunner().invoke(main, [*args, "no-such-run"])
    assert missing.exit_code == 1
    assert "no run no-such-run in" in missing.output
    assert "Traceback" not in missing.output
