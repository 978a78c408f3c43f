"""Figure 7 (soak): many flyscans in one session, and what grows.

``soak_scans`` back-to-back ``time_scan(panda, 1000, 1 ms)`` runs into Tiled
on the shared beamline; after each, the resident memory (``/proc`` VmRSS)
and thread count of the PandA's IOC, of this process (the RunEngine and its
writer) and of the Tiled server. Growth per scan is the least-squares slope
over the scans (the first few, which warm caches, left out); the scans'
wall time, last tenth against first, says whether anything slows down.

PandABlocks-ioc 0.11 grows with every capture (each capture's HDF writer
pipeline threads are stopped only in ``__del__``, and the buffer sits in a
reference cycle until Python's cyclic GC frees it): a sawtooth, whose step
and peak these figures give; the supervisor of ``panda-flyscan sim``
restarts it between scans past ``--ioc-restart-mb``.
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
    who = (
        ("ioc", "the PandA's IOC"),
        ("self", "this process (RunEngine, writer)"),
        ("tiled", "the Tiled server"),
    )
    for name, text in who:
        rss = [u.rss_bytes / MB for u in usage[name]]
        threads = [float(u.threads) for u in usage[name]]
        if len(rss) < 2:
            continue
        # Not linear: PandABlocks-ioc 0.11 keeps each capture's pipeline
        # threads in a reference cycle that Python's cyclic GC frees now and
        # then, so its RSS is a sawtooth. Per scan while it grows (the median
        # step), the peak, the drops, and the mean from first to last.
        steps = np.diff(rss)
        grows = steps[steps > 0]
        series = {"rss_mb": [round(v, 1) for v in rss], "threads": threads}
        s.figure(
            f"soak.{name}.rss",
            "soak",
            f"RSS growth per scan, {text}, {label}: median step",
            "MB",
            details=series,
        ).add(float(np.median(grows)) if len(grows) else 0.0)
        s.figure(
            f"soak.{name}.rss.mean", "soak", "  mean, first scan to last", "MB"
        ).add((rss[-1] - rss[0]) / (len(rss) - 1))
        s.figure(f"soak.{name}.rss.peak", "soak", "  peak RSS", "MB").add(max(rss))
        s.figure(
            f"soak.{name}.rss.drops", "soak", "  drops of more than 100 MB", ""
        ).add(int(np.sum(steps < -100)))
        thread_steps = np.diff(threads)
        s.figure(
            f"soak.{name}.threads", "soak", "  threads per scan, median step", ""
        ).add(
            float(np.median(thread_steps[thread_steps > 0]))
            if np.any(thread_steps > 0)
            else 0.0
        )
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
