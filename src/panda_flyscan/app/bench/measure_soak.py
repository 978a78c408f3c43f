"""Figure 7 (soak): many flyscans of mixed kinds in one session, and what grows.

``soak_scans`` back-to-back flyscans into Tiled on the shared beamline, the
kinds in turn (:data:`KINDS`): a ``time_scan`` of 1,000 rows at 1 kHz, a
``position_scan`` of x, a 2-D snake ``spec_scan`` and a ``time_scan`` with the
detector. After each, the resident memory (``/proc`` VmRSS), threads and open
file descriptors of the PandA's IOC, the simulator, this process (the
RunEngine and its writer) and the Tiled server. The figure the issue asks
for is the growth from scan :data:`BASELINE` to the last, in percent (target
< 5%); the per-scan step, peak and drops describe the IOC's sawtooth; the
scans' wall time, last tenth against first, says whether anything slows down.

PandABlocks-ioc 0.11 grows with every capture (each capture's HDF writer
pipeline threads are stopped only in ``__del__``, and the buffer sits in a
reference cycle until Python's cyclic GC frees it): a sawtooth, whose step
and peak these figures give; the supervisor of ``panda-flyscan sim``
restarts it between scans past ``--ioc-restart-mb``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from panda_flyscan.app.simulated.supervisor import MB, IocUsage, ioc_usage

if TYPE_CHECKING:
    from panda_flyscan.app.bench.suite import Suite
    from panda_flyscan.devices import Beamline

__all__ = ["KINDS", "soak"]

#: Rows of the time scans, and their period.
ROWS, PERIOD = 1000, 1e-3
#: The scan (1-based) growth is measured from: the first ones warm caches
#: and pools (the issue's "from scan 20").
BASELINE = 20


def _open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _time(bl: Beamline) -> Iterator[Any]:
    from panda_flyscan.plans import time_scan

    return time_scan(bl.panda, ROWS, PERIOD)


def _position(bl: Beamline) -> Iterator[Any]:
    from panda_flyscan.plans import position_scan

    return position_scan(bl.panda, bl.motor("x"), 0.0, 1.0, 201, velocity=2.0)


def _snake(bl: Beamline) -> Iterator[Any]:
    from scanspec.specs import Fly, Line

    from panda_flyscan.plans import spec_scan

    x, y = bl.motor("x"), bl.motor("y")
    spec = Fly(2e-3 @ (Line(y, 0.0, 0.03, 4) * ~Line(x, 0.0, 0.5, 51)))
    return spec_scan(bl.panda, spec)


def _detector(bl: Beamline) -> Iterator[Any]:
    from panda_flyscan.plans import time_scan

    return time_scan(bl.panda, 100, 5e-3, 2e-3, detectors=[bl.detectors["det"]])


#: The soak's scans, in turn: (label, plan factory).
KINDS: tuple[tuple[str, Callable[[Beamline], Iterator[Any]]], ...] = (
    ("time_scan 1000 x 1 ms", _time),
    ("position_scan x 201 points", _position),
    ("spec_scan snake 4 x 51", _snake),
    ("time_scan 100 x 5 ms with det", _detector),
)


def _growth(values: list[float], baseline: int) -> float:
    """Percent growth from ``values[baseline - 1]`` to the last."""
    first = values[min(baseline, len(values)) - 1]
    return 100.0 * (values[-1] - first) / first if first else 0.0


def soak(s: Suite) -> None:
    """Growth of the IOC, the simulator, this process and Tiled over many scans."""
    ctx, n = s.ctx, s.budget.soak_scans
    s.warm_up()
    bl = ctx.beamline
    names = ("ioc", "sim", "self", "tiled")
    usage: dict[str, list[IocUsage]] = {name: [] for name in names}
    fds: dict[str, list[float]] = {name: [] for name in names}
    walls: list[float] = []

    def pids() -> dict[str, int | None]:
        sim = next((p for p in ctx.sim.processes if p.name == "panda"), None)
        return {
            # The IOC's PID changes if the supervisor restarts it.
            "ioc": ctx.sim.ioc_process().pid,
            "sim": None if sim is None else sim.pid,
            "self": os.getpid(),
            "tiled": ctx.tiled.pid,
        }

    def sample() -> None:
        for name, pid in pids().items():
            if pid is None:
                continue
            if (u := ioc_usage(pid)) is not None:
                usage[name].append(u)
            if (count := _open_fds(pid)) is not None:
                fds[name].append(float(count))

    for i in range(n):
        _, plan = KINDS[i % len(KINDS)]
        started = time.perf_counter()
        with ctx.writing():
            ctx.RE(plan(bl))
        walls.append(time.perf_counter() - started)
        sample()
        if (i + 1) % 10 == 0:
            s.log(
                f"soak: {i + 1}/{n} scans, IOC {usage['ioc'][-1].rss_bytes / MB:.0f} MB"
            )
    # --quick's 20 scans: from the fifth.
    baseline = BASELINE if n >= 2 * BASELINE else max(1, n // 4)
    label = f"{n} scans, {len(KINDS)} kinds in turn"
    who = (
        ("ioc", "the PandA's IOC"),
        ("sim", "the simulator"),
        ("self", "this process (RunEngine, writer)"),
        ("tiled", "the Tiled server"),
    )
    for name, text in who:
        rss = [u.rss_bytes / MB for u in usage[name]]
        threads = [float(u.threads) for u in usage[name]]
        if len(rss) < 2:
            continue
        s.figure(
            f"soak.{name}.rss.growth",
            "soak",
            f"RSS growth, {text}, scan {baseline} to {n} ({label})",
            "%",
            details={"rss_mb": [round(v, 1) for v in rss]},
        ).add(_growth(rss, baseline))
        if fds[name]:
            s.figure(
                f"soak.{name}.fds.growth",
                "soak",
                f"  open file descriptors, scan {baseline} to {n}",
                "%",
                details={"fds": fds[name]},
            ).add(_growth(fds[name], baseline))
        # Not linear for the IOC: PandABlocks-ioc 0.11 keeps each capture's
        # pipeline threads in a reference cycle that Python's cyclic GC frees
        # now and then, so its RSS is a sawtooth. Per scan while it grows
        # (the median step), the peak and the drops.
        steps = np.diff(rss)
        grows = steps[steps > 0]
        s.figure(
            f"soak.{name}.rss",
            "soak",
            "  RSS per scan while growing: median step",
            "MB",
        ).add(float(np.median(grows)) if len(grows) else 0.0)
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
    first = float(
        np.median(walls[baseline - 1 : baseline - 1 + tenth] or walls[:tenth])
    )
    last = float(np.median(walls[-tenth:]))
    s.figure(
        "soak.wall.first", "soak", f"scan wall time, first tenth of the {n}", "s"
    ).add(first)
    s.figure("soak.wall.last", "soak", "scan wall time, last tenth", "s").add(last)
    s.figure("soak.wall.ratio", "soak", "  last / first", "", ratio=True).add(
        last / first
    )
