"""read_grid's pure part: scan-order rows back on a scanspec grid."""

from __future__ import annotations

import numpy as np
import pytest
from scanspec.core import Path
from scanspec.specs import Fly, Line

from panda_flyscan.storage import GridError, grid_indices, to_grid


def _rows(spec: object, axis: str) -> np.ndarray:
    frames = Path(spec.calculate()).consume()  # type: ignore[attr-defined]
    return np.asarray(frames.midpoints[axis])


@pytest.mark.parametrize(
    "spec",
    [
        Fly(0.01 @ (Line("y", 0, 1, 3) * ~Line("x", 0, 1, 4))),
        Line("z", 0, 1, 2) * ~Line("y", 0, 1, 3) * ~Line("x", 0, 1, 4),
        Line("z", 0, 1, 2) * Fly(0.01 @ (Line("y", 0, 1, 3) * ~Line("x", 0, 1, 4))),
    ],
)
def test_snaked_rows_land_in_grid_order(spec: object) -> None:
    for axis in ("x", "y"):
        grid = to_grid(_rows(spec, axis), spec.serialize())  # type: ignore[attr-defined]
        assert grid.shape == spec.shape()  # type: ignore[attr-defined]
        # Unsnaked: x ascends along the last axis on every row, y along its own.
        line = np.linspace(0, 1, 4 if axis == "x" else 3)
        along = -1 if axis == "x" else -2
        expected = np.moveaxis(
            np.broadcast_to(line, np.moveaxis(grid, along, -1).shape), -1, along
        )
        np.testing.assert_allclose(grid, expected)


def test_rows_of_a_cut_short_run_leave_nan_and_extra_rows_are_refused() -> None:
    spec = Fly(0.01 @ (Line("y", 0, 1, 2) * ~Line("x", 0, 1, 3)))
    grid = to_grid(np.arange(4.0), spec)
    np.testing.assert_array_equal(grid[0], [0, 1, 2])
    assert grid[1, 2] == 3 and np.isnan(grid[1, :2]).all()
    with pytest.raises(GridError, match="7 rows for a grid of 6 points"):
        to_grid(np.arange(7.0), spec)
    index = grid_indices(spec)
    assert [list(i) for i in index] == [[0, 0, 0, 1, 1, 1], [0, 1, 2, 2, 1, 0]]
