"""Figures 1, 2 and 5 from scans into Tiled: scan efficiency (time_scan at
each N; a 1-D line flown by spec_scan against bp.scan of the motor with the
detector), data-available latency, and plan start to first trigger; the
time_scan flyscans are :class:`~.plans_bench.FlyResult` kept by the suite,
so figures 2 and 5 reuse those of figure 1."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from panda_flyscan.app.bench.stats import (
    Figure,
    format_count,
    format_rate,
    pairwise_ratio,
)

if TYPE_CHECKING:
    from panda_flyscan.app.bench.suite import Suite

__all__ = ["efficiency", "first_trigger", "latency", "line_comparison"]


def efficiency(s: Suite) -> None:
    """time_scan at each N; then the 1-D comparison: bp.scan of x with the
    detector against spec_scan flying the same points, alternately."""
    s.warm_up()
    for n, repeats in s.budget.efficiency:
        _efficiency_at(s, n, repeats)
    n, repeats = s.budget.line_scan
    if n and repeats:
        line_comparison(s, n, repeats)


def _efficiency_at(s: Suite, n: int, repeats: int) -> None:
    """Figure 1 at one N: the time_scan flyscans (kept for figures 2 and 5)."""
    period = s.options.period
    ideal = n * period
    at = f"N={format_count(n)} at {format_rate(period)}"
    fly_fig = _scan_figure(s, "fly", n, f"flyscan (time_scan), {at}")
    for r in range(repeats):
        result = s.fly(n)
        fly_fig.add(result.wall / ideal)
        fly_fig.details["wall_s"].append(result.wall)
        s.log(
            f"time_scan N={format_count(n)} repeat {r + 1}/{repeats}: "
            f"{result.wall:.2f} s"
        )


def _scan_figure(s: Suite, kind: str, n: int, label: str, note: str = "") -> Figure:
    """The ``efficiency.<kind>.<n>`` figure: wall time / (N x period), the
    wall times in its details."""
    details = {"n": n, "period": s.options.period, "wall_s": []}
    return s.figure(
        f"efficiency.{kind}.{n}", "efficiency", label, "x", note=note, details=details
    )


def line_comparison(s: Suite, n: int, repeats: int) -> None:
    """The 1-D scan a user would otherwise run, ``bp.scan([det], x, 0, stop,
    n)`` (x moves and stops, det triggered internally and read, at each
    point), against ``spec_scan`` flying the same points at the period with
    det; each as wall / (n x period), and flyscan / step scan per repeat.

    This replaces both the old step scan (``bp.count`` of the encoder with a
    delay: no motion, no detector) and the old step scan with motion
    (``bp.scan`` of the encoder alone), which this one covers.
    """
    from panda_flyscan.app.bench.suite import LINE_STEP

    period = s.options.period
    ideal = n * period
    at = f"N={format_count(n)} at {format_rate(period)}"
    span = f"x 0..{(n - 1) * LINE_STEP:g} mm"
    fly_fig = _scan_figure(
        s,
        "line",
        n,
        f"flyscan (spec_scan Fly(Line(x)), det), {at}",
        note=f"{span}; includes x's run-up and run-down (ACCL each)",
    )
    step_fig = _scan_figure(
        s,
        "step",
        n,
        f"step scan (bp.scan([det], x)), {at}",
        note=f"{span}; each point: move x, stop, trigger det (exposure "
        f"{period / 2 * 1e3:g} ms), read",
    )
    ratio = s.figure(
        f"efficiency.ratio.{n}",
        "efficiency",
        f"flyscan / step-scan wall time, N={format_count(n)}",
        ratio=True,
    )
    for r in range(repeats):
        fly_wall = s.line_fly(n)
        step_wall = s.line_step(n)
        fly_fig.add(fly_wall / ideal)
        step_fig.add(step_wall / ideal)
        fly_fig.details["wall_s"].append(fly_wall)
        step_fig.details["wall_s"].append(step_wall)
        s.log(
            f"line N={format_count(n)} repeat {r + 1}/{repeats}: spec_scan "
            f"{fly_wall:.2f} s, bp.scan {step_wall:.2f} s"
        )
    ratio.samples = pairwise_ratio(fly_fig.samples, step_fig.samples)


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
