"""Scan efficiency against N as a PNG (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .stats import Figure

__all__ = ["efficiency_series", "plot_efficiency"]


def efficiency_series(
    figures: Sequence[Figure], kind: str
) -> list[tuple[int, float, float, float]]:
    """(N, median, min, max) of the ``efficiency.<kind>.<N>`` figures, by N."""
    out = []
    prefix = f"efficiency.{kind}."
    for fig in figures:
        if not fig.key.startswith(prefix) or not fig.samples:
            continue
        n = int(fig.key.removeprefix(prefix))
        assert fig.median is not None and fig.min is not None and fig.max is not None
        out.append((n, fig.median, fig.min, fig.max))
    return sorted(out)


def plot_efficiency(
    figures: Sequence[Figure], path: Path, *, title: str = ""
) -> Path | None:
    """Plot time_scan's efficiency (wall / (N x period)) against N; the 1-D
    comparison with motion (spec_scan line, bp.scan), far above, as a note.

    Markers at the median, bars from min to max. Returns the path written,
    or None if there is no efficiency figure to plot.
    """
    series = {
        "time-based flyscan (time_scan)": efficiency_series(figures, "fly"),
    }
    # The 1-D comparison with motion runs at a small N, tens to hundreds of
    # times the ideal: a note, not points.
    noted = {
        "spec_scan line (det)": efficiency_series(figures, "line"),
        "bp.scan of x (det at each point)": efficiency_series(figures, "step"),
    }
    if not any(series.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    try:
        for (label, points), marker in zip(series.items(), ("o",), strict=True):
            if not points:
                continue
            ns = [p[0] for p in points]
            med = [p[1] for p in points]
            low = [p[1] - p[2] for p in points]
            high = [p[3] - p[1] for p in points]
            ax.errorbar(
                ns, med, yerr=[low, high], marker=marker, capsize=4, label=label
            )
            for n, m in zip(ns, med, strict=True):
                ax.annotate(
                    f"{m:.2f}",
                    (n, m),
                    textcoords="offset points",
                    xytext=(6, 6),
                    fontsize=8,
                )
        ax.axhline(1.0, color="grey", linestyle=":", label="ideal (no overhead)")
        ax.set_xscale("log")
        ax.set_xlabel("N (points)")
        ax.set_ylabel("wall time / (N x period)")
        ax.set_ylim(bottom=0)
        lines = [
            f"{label}: " + ", ".join(f"{m:.0f}x at N={n:,}" for n, m, _, _ in points)
            for label, points in noted.items()
            if points
        ]
        if lines:
            ax.text(
                0.02,
                0.03,
                "\n".join([*lines, "(with motion, off scale)"]),
                transform=ax.transAxes,
                fontsize=8,
            )
        ax.set_title(title or "Scan efficiency at 1 kHz, into Tiled", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
