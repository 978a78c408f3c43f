"""Figures 1, 2 and 5 from scans into Tiled: scan efficiency (flyscan, step
scan, step scan with motion), data-available latency, and plan start to
first trigger; the flyscans are :class:`~.plans_bench.FlyResult` kept by the
suite, so figures 2 and 5 reuse those of figure 1."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from panda_flyscan.app.bench.stats import (
    Figure,
    format_count,
    format_rate,
    pairwise_ratio,
)

if TYPE_CHECKING:
    from panda_flyscan.app.bench.suite import Suite

__all__ = ["efficiency", "first_trigger", "latency", "motor_scan"]


def efficiency(s: Suite) -> None:
    """Flyscan and step scan of the same N, alternately in each repeat; then
    the step scan with motion."""
    s.warm_up()
    for n, repeats in s.budget.efficiency:
        _efficiency_at(s, n, repeats)
    n, repeats = s.budget.motor_scan
    if n and repeats:
        motor_scan(s, n, repeats)


def _efficiency_at(s: Suite, n: int, repeats: int) -> None:
    """Figure 1 at one N: flyscan, step scan, and their ratio per repeat."""
    period = s.options.period
    ideal = n * period
    at = f"N={format_count(n)} at {format_rate(period)}"
    fly_fig = _scan_figure(s, "fly", n, f"flyscan (time_scan), {at}")
    step_fig = _scan_figure(s, "step", n, f"step scan (bp.count), {at}")
    ratio = s.figure(
        f"efficiency.ratio.{n}",
        "efficiency",
        f"flyscan / step-scan wall time, N={format_count(n)}",
        ratio=True,
    )
    for r in range(repeats):
        # Reuse flyscans already run for N (e.g. by the latency figure)
        # only if they were paired; otherwise run both now, side by side.
        result = s.fly(n)
        step_wall = s.step_scan(n)
        fly_fig.add(result.wall / ideal)
        step_fig.add(step_wall / ideal)
        fly_fig.details["wall_s"].append(result.wall)
        step_fig.details["wall_s"].append(step_wall)
        s.log(
            f"N={format_count(n)} repeat {r + 1}/{repeats}: flyscan "
            f"{result.wall:.2f} s, step scan {step_wall:.2f} s"
        )
    ratio.samples = pairwise_ratio(fly_fig.samples, step_fig.samples)


def _scan_figure(s: Suite, kind: str, n: int, label: str, note: str = "") -> Figure:
    """The ``efficiency.<kind>.<n>`` figure: wall time / (N x period), the
    wall times in its details."""
    details = {"n": n, "period": s.options.period, "wall_s": []}
    return s.figure(
        f"efficiency.{kind}.{n}", "efficiency", label, "x", note=note, details=details
    )


def motor_scan(s: Suite, n: int, repeats: int) -> None:
    """A step scan that moves: bp.scan of the encoder over the motor, n points."""
    import bluesky.plans as bp

    from panda_flyscan.storage import read_events

    ctx = s.ctx
    period = s.options.period
    motor = ctx.beamline.motors.get("x")
    if motor is None:
        return
    fig = _scan_figure(
        s,
        "scan",
        n,
        f"step scan with motion (bp.scan of x), N={format_count(n)}",
        note="each point: move the motor 1 um, wait for it, read INENC1.VAL",
    )
    encoder = ctx.beamline.panda.inenc[1].val  # type: ignore[attr-defined]
    for r in range(repeats):
        with ctx.writing():
            started = time.perf_counter()
            plan = bp.scan([encoder], motor, 0.0, (n - 1) * 0.001, n)
            (uid,) = ctx.RE(plan)  # type: ignore[misc]
            wall = time.perf_counter() - started
        rows = len(read_events(ctx.client, uid))
        assert rows == n, f"{rows} events in Tiled for {n} points"
        fig.add(wall / (n * period))
        fig.details["wall_s"].append(wall)
        s.log(f"bp.scan N={format_count(n)} repeat {r + 1}/{repeats}: {wall:.2f} s")


def latency(s: Suite) -> None:
    """From the flyscans of figure 1 (run here if figure 1 was not)."""
    for n, repeats in s.budget.efficiency:
        fig = s.figure(f"latency.{n}", "latency", f"flyscan N={format_count(n)}", "ms")
        results = s.ensure_flyscans(n, repeats)
        for result in results:
            fig.add(result.latency * 1e3)
        fig.details["writer_wait_ms"] = [r.writer_wait * 1e3 for r in results]
        fig.details["read_ms"] = [r.read * 1e3 for r in results]


def first_trigger(s: Suite) -> None:
    """From every flyscan of figure 1 (N=1e3 ones run here if none were)."""
    if not s.flyscans:
        n, repeats = s.budget.efficiency[0]
        s.ensure_flyscans(n, repeats)
    results = [r for runs in s.flyscans.values() for r in runs]
    fig = s.figure(
        "fixed.first-trigger",
        "fixed",
        "time_scan call -> first trigger",
        "ms",
    )
    for result in results:
        fig.add(result.first_trigger * 1e3)
    phases = results[0].phases.keys()
    fig.details["phases_median_ms"] = {
        name: statistics.median(r.phases[name] for r in results) * 1e3
        for name in phases
    }
