"""The two worked applications of docs/recipes.md, as written there, on the
simulated beamline: a 2-D snake map with the detector, and an outer step
scan over an inner flyscan; each read back through Tiled and put on its
grid with read_grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scanspec.specs import Fly, Line

from panda_flyscan.plans import spec_scan
from panda_flyscan.storage import read_field, read_grid
from sim_ioc.detector import decode

pytestmark = pytest.mark.ioc

COUNT = 0.001  # mm per encoder count


def test_recipe_snake_map_with_a_detector(flyscan: Any) -> None:
    bl, RE, client = flyscan.beamline, flyscan.RE, flyscan.client()
    # -- as in docs/recipes.md --
    x, y, det = bl.motor("x"), bl.motor("y"), bl.detectors["det"]
    spec = Fly(0.005 @ (Line(y, 0, 0.5, 6) * ~Line(x, 0, 1, 26)))
    (uid,) = RE(spec_scan(bl.panda, spec, detectors=[det]))
    xs = read_grid(client, uid, "x")  # (6, 26): row j is y[j], x ascending
    ys = read_grid(client, uid, "y")
    frames = read_grid(client, uid, "det")  # (6, 26, 64, 64)
    intensity = frames.mean(axis=(-2, -1))  # one value per map point
    # -- checks --
    assert xs.shape == ys.shape == intensity.shape == (6, 26)
    grid_y, grid_x = np.meshgrid(np.linspace(0, 0.5, 6), np.linspace(0, 1, 26))
    np.testing.assert_allclose(xs, grid_x.T, atol=COUNT + 1e-9)
    np.testing.assert_allclose(ys, grid_y.T, atol=COUNT + 1e-9)
    # Un-snaked: every row's frames were taken left to right on the grid,
    # and at that row's y.
    stamp_x = np.array([[decode(f).position for f in row] for row in frames])
    stamp_y = np.array([[decode(f).y for f in row] for row in frames])
    np.testing.assert_allclose(stamp_x, grid_x.T, atol=0.01)  # +-v * exposure/2
    np.testing.assert_allclose(stamp_y, grid_y.T, atol=COUNT)
    # The scan-order rows are the snake: the grid is not just a reshape.
    rows = read_field(client, uid, "primary", "x")
    np.testing.assert_array_equal(rows[26:52], xs[1, ::-1])
    assert np.isfinite(intensity).all() and intensity.std() > 0


def test_recipe_outer_step_scan_over_an_inner_flyscan(flyscan: Any) -> None:
    bl, RE, client = flyscan.beamline, flyscan.RE, flyscan.client()
    # -- as in docs/recipes.md --
    x, z, det = bl.motor("x"), bl.motor("z"), bl.detectors["det"]
    # A z stack of 4 planes, each a 51-point fly of x at 200 Hz, in one run.
    spec = Line(z, -1, 1, 4) * Fly(0.005 @ Line(x, 0, 1, 51))
    (uid,) = RE(spec_scan(bl.panda, spec, detectors=[det]))
    xs, zs = read_grid(client, uid, "x"), read_grid(client, uid, "z")  # (4, 51)
    trigger_time = read_grid(client, uid, "trigger_time")
    # -- checks --
    assert xs.shape == zs.shape == trigger_time.shape == (4, 51)
    np.testing.assert_allclose(xs, np.tile(np.linspace(0, 1, 51), (4, 1)), atol=COUNT)
    planes = np.repeat(np.linspace(-1, 1, 4), 51).reshape(4, 51)
    np.testing.assert_allclose(zs, planes, atol=COUNT)  # z's encoder, at rest
    # Each plane's frames 5 ms apart; the planes one after another.
    np.testing.assert_allclose(np.diff(trigger_time, axis=1), 0.005, atol=1e-9)
    assert np.all(np.diff(trigger_time[:, 0]) > 51 * 0.005)
    assert flyscan.of("stop")[0]["num_events"] == {"primary": 204}
