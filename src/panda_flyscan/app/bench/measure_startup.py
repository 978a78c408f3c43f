"""Figure 5's start-up costs: the simulated beamline's and Tiled's start-up,
and connecting the devices."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from panda_flyscan.app.bench.stats import Figure
    from panda_flyscan.app.bench.suite import Suite

__all__ = ["connect", "startup"]


def _seconds(s: Suite, key: str, label: str) -> Figure:
    """A figure of section 5 (fixed costs), in seconds."""
    return s.figure(key, "fixed", label, "s")


def startup(s: Suite) -> None:
    """Simulated beamline start-up, repeated; the shared beamline's is the first."""
    from panda_flyscan.app.simulated.launcher import SimulatedBeamline

    fig = _seconds(
        s, "fixed.startup", "simulated beamline start-up (simulator + IOC, PVs answer)"
    )
    s.ctx.sim  # noqa: B018 - the shared beamline: the first sample
    fig.add(s.ctx.startup_seconds["beamline"])
    s.log(f"beamline start-up {fig.samples[-1]:.2f} s (the shared one)")
    for i in range(1, s.budget.startup_repeats):
        prefix = f"BENCHUP{i}"
        beamline = SimulatedBeamline(prefix, log_dir=s.ctx.log_dir / prefix)
        started = time.perf_counter()
        with beamline:
            fig.add(time.perf_counter() - started)
        s.log(f"beamline start-up {fig.samples[-1]:.2f} s")
    tiled = _seconds(s, "fixed.tiled", "Tiled service start-up")
    s.ctx.tiled  # noqa: B018
    tiled.add(s.ctx.startup_seconds["tiled"])


def connect(s: Suite) -> None:
    """Device connect: the first of the process, then repeated."""
    cold = _seconds(s, "fixed.connect.first", "device connect, first in the process")
    s.ctx.beamline  # noqa: B018
    cold.add(s.ctx.startup_seconds["connect"])
    warm = _seconds(s, "fixed.connect.again", "device connect, again")
    for _ in range(s.budget.connect_repeats):
        started = time.perf_counter()
        s.ctx.connect()
        warm.add(time.perf_counter() - started)
    s.log(f"device connect: first {cold.samples[0]:.2f} s, again {warm.median:.2f} s")
