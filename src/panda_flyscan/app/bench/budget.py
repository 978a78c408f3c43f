"""What a ``panda-flyscan bench`` run was asked for and what it may spend.

:class:`Options` is the command line; :class:`Budget` is how many runs of
what size each figure gets, :data:`FULL` or :data:`QUICK`, adjusted by
:func:`budget_for`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

__all__ = ["FULL", "QUICK", "Budget", "Options", "budget_for"]


@dataclass(frozen=True)
class Options:
    """What ``panda-flyscan bench`` was asked for."""

    quick: bool = False
    #: Repeats of every figure (None: the budget's per-figure defaults).
    repeats: int | None = None
    #: Measurement names to run (empty: all).
    only: tuple[str, ...] = ()
    output: Path = Path("bench-results")
    #: N of the efficiency figures (None: the budget's).
    sizes: tuple[int, ...] | None = None
    #: Trigger period of the efficiency figures (s).
    period: float = 1e-3
    #: Keep the HDF5 files, Tiled catalog and logs (else deleted at the end).
    keep_data: bool = False


@dataclass(frozen=True)
class Budget:
    """How many runs of what size each figure gets (``--quick`` or full)."""

    #: Simulated beamline start-ups (the shared one counts as the first).
    startup_repeats: int
    #: Device connects after the first.
    connect_repeats: int
    #: (N, repeats) of the efficiency figures.
    efficiency: tuple[tuple[int, int], ...]
    #: (N, repeats) of the 1-D comparison: bp.scan of x with the detector at
    #: each point against spec_scan flying the same points (figure 1).
    line_scan: tuple[int, int]
    #: (lines, points per line) of the snake map flown by spec_scan (figure 6).
    map_grid: tuple[int, int]
    map_repeats: int
    #: (lines, points per line) of the map compared with bp.grid_scan: smaller
    #: than ``map_grid`` when a step scan of that would take too long.
    map_step_grid: tuple[int, int]
    map_step_repeats: int
    #: Captured field counts of the capture figure.
    capture_fields: tuple[int, ...]
    #: Rates tried (Hz), and seconds of capture at each.
    capture_rates: tuple[float, ...]
    capture_seconds: float
    capture_repeats: int
    #: Documents per run of the writer-overhead figures.
    events: int
    datums: int
    writer_repeats: int
    #: Rows of the read-back dataset and the period they are captured at.
    readback_rows: int
    readback_period: float
    readback_repeats: int
    #: Rows of the 1 kHz time scans the live view follows, and how many.
    liveview_rows: int
    liveview_repeats: int
    #: Back-to-back scans of the soak.
    soak_scans: int


FULL = Budget(
    startup_repeats=3,
    connect_repeats=5,
    efficiency=((1_000, 3), (10_000, 3), (100_000, 1)),
    line_scan=(100, 2),
    # The map: 20 lines x 500 points at 1 kHz (~15 s flown); its
    # bp.grid_scan would take ~45 min (~0.27 s a point), so that one is 4 x 50.
    map_grid=(20, 500),
    map_repeats=2,
    map_step_grid=(4, 50),
    map_step_repeats=1,
    capture_fields=(4, 16),
    capture_rates=(250_000, 500_000, 1_000_000, 2_000_000, 4_000_000),
    capture_seconds=1.0,
    capture_repeats=2,
    events=2_000,
    datums=1_000,
    writer_repeats=3,
    readback_rows=1_000_000,
    readback_period=10e-6,
    readback_repeats=5,
    liveview_rows=10_000,
    liveview_repeats=3,
    soak_scans=200,
)

#: Fewer, smaller runs: N = 1e3 only, two capture rates, a 1e5-row read-back,
#: a 4 x 50 map (its bp.grid_scan comparison 2 x 20).
QUICK = replace(
    FULL,
    startup_repeats=2,
    connect_repeats=3,
    efficiency=((1_000, 3),),
    line_scan=(20, 1),
    map_grid=(4, 50),
    map_repeats=1,
    map_step_grid=(2, 20),
    map_step_repeats=1,
    capture_rates=(250_000, 1_000_000),
    capture_seconds=0.5,
    capture_repeats=1,
    events=500,
    datums=300,
    writer_repeats=2,
    readback_rows=100_000,
    readback_repeats=3,
    liveview_rows=3_000,
    liveview_repeats=2,
    soak_scans=20,
)


def budget_for(options: Options) -> Budget:
    """The budget for ``options``: quick or full, ``--repeats`` and sizes applied.

    ``--repeats R`` sets every figure's repeats, except that scans of 1e5
    points or more get R // 3 (at least 1): at 1 kHz each is 100 s or more.
    """
    budget = QUICK if options.quick else FULL
    repeats_of = dict(budget.efficiency)
    if options.sizes is not None:
        default = budget.efficiency[0][1]
        repeats_of = {n: repeats_of.get(n, default) for n in options.sizes}
    if options.repeats is not None:
        r = options.repeats
        if r < 1:
            raise ValueError(f"repeats must be at least 1, got {r}")
        repeats_of = {n: (max(1, r // 3) if n >= 100_000 else r) for n in repeats_of}
        budget = replace(
            budget,
            line_scan=(budget.line_scan[0], r),
            map_repeats=r,
            map_step_repeats=r,
            startup_repeats=r,
            connect_repeats=r,
            capture_repeats=r,
            writer_repeats=r,
            readback_repeats=r,
            liveview_repeats=r,
        )
    return replace(budget, efficiency=tuple(sorted(repeats_of.items())))
