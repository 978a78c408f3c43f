"""Figure 7 (soak): many flyscans in one session, and what grows.

``soak_scans`` back-to-back ``time_scan(panda, 1000, 1 ms)`` runs into Tiled
on the shared beamline; after each, the resident memory (``/proc`` VmRSS)
and thread count of the PandA's IOC, of this process (the RunEngine and its
writer) and of the Tiled server. Growth per scan is the least-squares slope
over the scans (the first few, which warm caches, left out); the scans'
wall time, last tenth against first, says whether anything slows down.

PandABlocks-ioc 0.11 grows with every capture (its HDF writer threads are
stopped only in ``__del__``); the supervisor of ``panda-flyscan sim`` bounds
that by restarting it between scans past ``--ioc-restart-mb`` (the figure
"scans between restarts" is what that threshold buys at the measured rate).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import numpy as np

from panda_flyscan.app.simulated.supervisor import MB, IocUsage, ioc_usage

if TYPE_CHECKING:
    from panda_flyscan.app.bench.suite import Suite

__all__ = ["soak"]

#: Rows per soak scan, and their period.
ROWS, PERIOD = 1000, 1e-3
#: Scans left out of the slopes (caches and pools filling).
WARM_UP = 3
#: The between-scans restart threshold `panda-flyscan sim` uses by default.
DEFAULT_RESTART_MB = 1024


def _slope(values: list[float]) -> float:
    """Least-squares growth per scan, warm-up left out."""
    y = np.asarray(values[WARM_UP:], dtype=float)
    if len(y) < 2:
        return 0.0
    # Rounded: a flat series' slope is 1e-16, not a figure.
    return round(float(np.polyfit(np.arange(len(y)), y, 1)[0]), 6)


def soak(s: Suite) -> None:
    """Growth per scan of the IOC, this process and Tiled over many scans."""
    from panda_flyscan.plans import time_scan

    ctx, n = s.ctx, s.budget.soak_scans
    s.warm_up()
    panda = ctx.beamline.panda
    usage: dict[str, list[IocUsage]] = {"ioc": [], "self": [], "tiled": []}
    walls: list[float] = []

    def sample() -> None:
        for name, pid in (
            ("ioc", ctx.sim.ioc_process().pid),
            ("self", os.getpid()),
            ("tiled", ctx.tiled.pid),
        ):
            if pid is not None and (u := ioc_usage(pid)) is not None:
                usage[name].append(u)

    for i in range(n):
        started = time.perf_counter()
        with ctx.writing():
            ctx.RE(time_scan(panda, ROWS, PERIOD))
        walls.append(time.perf_counter() - started)
        sample()
        if (i + 1) % 10 == 0:
            s.log(
                f"soak: {i + 1}/{n} scans, IOC {usage['ioc'][-1].rss_bytes / MB:.0f} MB"
            )
    label = f"{n} scans of {ROWS} rows"
    for name, text in (
        ("ioc", "the PandA's IOC"),
        ("self", "this process (RunEngine, writer)"),
        ("tiled", "the Tiled server"),
    ):
        rss = [u.rss_bytes / MB for u in usage[name]]
        threads = [float(u.threads) for u in usage[name]]
        if not rss:
            continue
        growth = _slope(rss)
        s.figure(
            f"soak.{name}.rss", "soak", f"RSS growth per scan, {text}, {label}", "MB"
        ).add(growth)
        s.figure(f"soak.{name}.threads", "soak", f"  threads per scan, {text}", "").add(
            _slope(threads)
        )
        s.figure(
            f"soak.{name}.rss.last", "soak", f"  RSS after the last scan, {text}", "MB"
        ).add(rss[-1])
        if name == "ioc" and growth > 0:
            headroom = DEFAULT_RESTART_MB - rss[0]
            s.figure(
                "soak.ioc.restart_every",
                "soak",
                f"  scans between IOC restarts, --ioc-restart-mb {DEFAULT_RESTART_MB}",
                "scans",
            ).add(max(headroom, 0.0) / growth)
    tenth = max(1, n // 10)
    first = float(np.median(walls[WARM_UP : WARM_UP + tenth] or walls[:tenth]))
    last = float(np.median(walls[-tenth:]))
    s.figure(
        "soak.wall.first", "soak", f"scan wall time, first tenth of the {n}", "s"
    ).add(first)
    s.figure("soak.wall.last", "soak", "scan wall time, last tenth", "s").add(last)
    s.figure("soak.wall.ratio", "soak", "  last / first", "", ratio=True).add(
        last / first
    )
