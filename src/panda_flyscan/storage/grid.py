"""Putting a scanspec scan's rows back on its grid.

``spec_scan`` writes one row per frame in scan order (snaked lines run
backwards); its start document carries the spec (``scanspec``, serialised)
and its ``shape``. :func:`grid_indices` says where each row goes on the grid,
worked out by scanspec itself (the same ``Path`` the plan flew, over frame
indices instead of positions), so any nesting of products and snakes comes
out right; :func:`read_grid` reads a field through Tiled and places it::

    x = read_grid(client, uid, "x")            # shape (20, 500), not snaked
    frames = read_grid(client, uid, "det")     # shape (20, 500, 64, 64)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scanspec.core import Dimension, Path, SnakedDimension
from scanspec.specs import Spec

from .readback import get_run, read_field

__all__ = ["GridError", "grid_indices", "read_grid", "to_grid"]


class GridError(ValueError):
    """The run has no grid (not a scanspec run, or rows missing)."""


def grid_indices(spec: Spec[Any] | Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """For each dimension of ``spec`` (slowest first), the index along it of
    every frame in scan order: ``grid[tuple(idx)] = rows``.

    ``spec``: a ``Spec`` or its serialised form (the start document's
    ``scanspec``; axes are then names, which is all this needs).
    """
    if not isinstance(spec, Spec):
        spec = Spec.deserialize(dict(spec))
    stack = []
    for k, dim in enumerate(spec.calculate()):
        kind = SnakedDimension if isinstance(dim, SnakedDimension) else Dimension
        stack.append(kind({k: np.arange(len(dim), dtype=np.float64)}))
    frames = Path(stack).consume()
    return tuple(
        np.asarray(frames.midpoints[k]).astype(np.intp) for k in range(len(stack))
    )


def to_grid(rows: np.ndarray, spec: Spec[Any] | Mapping[str, Any]) -> np.ndarray:
    """``rows`` (one per frame, scan order) on the spec's grid: shape
    ``spec.shape() + rows.shape[1:]``; grid points with no row (a run cut
    short) are NaN for floats."""
    index = grid_indices(spec)
    shape = tuple(int(i.max()) + 1 for i in index)
    rows = np.asarray(rows)
    if len(rows) > len(index[0]):
        raise GridError(f"{len(rows)} rows for a grid of {len(index[0])} points")
    fill = np.nan if np.issubdtype(rows.dtype, np.floating) else 0
    grid = np.full(shape + rows.shape[1:], fill, dtype=rows.dtype)
    n = len(rows)
    grid[tuple(i[:n] for i in index)] = rows
    return grid


def read_grid(client: Any, uid: str, field: str, stream: str = "primary") -> np.ndarray:
    """``field`` of a ``spec_scan`` run, read through Tiled, on the scan's grid
    (see :func:`to_grid`). Only ``primary`` has a row per grid point."""
    start = get_run(client, uid).metadata["start"]
    spec = start.get("scanspec")
    if spec is None:
        raise GridError(
            f"run {uid} has no 'scanspec' in its start document: it was not a "
            "spec_scan, so it has no grid"
        )
    if stream != "primary":
        raise GridError(
            f"stream {stream!r} is not one row per grid point (a divided "
            "detector's stream): read it with read_field and use the divisor"
        )
    rows = read_field(client, uid, stream, field)
    # Detector frames come as (N, 1, H, W): one frame per event.
    if rows.ndim >= 3 and rows.shape[1] == 1:
        rows = rows[:, 0]
    return to_grid(rows, spec)
