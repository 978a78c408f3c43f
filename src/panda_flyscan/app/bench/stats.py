"""Figures of the benchmark suite: statistics, the printed table, the JSON record.

A :class:`Figure` is one measured quantity with every sample taken (one per
repeat). Its median, min and max are what the table shows; a *ratio* figure
holds the ratio of two figures taken side by side, repeat by repeat (so a
machine busy during one repeat affects both sides of that ratio alike).

Nothing here starts a process or measures anything: it is plain data and
formatting, tested without the beamline (tests/test_bench.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA",
    "Figure",
    "format_count",
    "format_rate",
    "format_table",
    "format_value",
    "machine_info",
    "pairwise_ratio",
    "read_json",
    "summary",
    "to_json",
    "write_json",
]

#: Version of the JSON record's layout (bump when a key changes meaning).
SCHEMA = 1


@dataclass
class Figure:
    """One measured quantity and all its samples."""

    #: Stable identifier for tracking across runs, e.g. ``efficiency.fly.1000``.
    key: str
    #: The table section, e.g. ``1. Scan efficiency``.
    group: str
    #: What it is, as printed.
    label: str
    #: Unit of the samples (``""`` for a plain number or ratio).
    unit: str = ""
    samples: list[float] = field(default_factory=list)
    #: A ratio of two figures measured side by side (pairwise per repeat).
    ratio: bool = False
    #: How it was measured / what limits it (kept in the JSON, not the table).
    note: str = ""
    #: Why it has no samples, if it failed.
    error: str | None = None
    #: Extra measured values (a breakdown, the sizes used), JSON-serialisable.
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, value: float) -> None:
        """Append one sample (must be finite)."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{self.key}: sample {value} is not finite")
        self.samples.append(value)

    @property
    def runs(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def min(self) -> float | None:
        return min(self.samples) if self.samples else None

    @property
    def max(self) -> float | None:
        return max(self.samples) if self.samples else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "group": self.group,
            "label": self.label,
            "unit": self.unit,
            "ratio": self.ratio,
            "runs": self.runs,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "samples": list(self.samples),
            "note": self.note,
            "error": self.error,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figure:
        return cls(
            key=data["key"],
            group=data["group"],
            label=data["label"],
            unit=data.get("unit", ""),
            samples=[float(s) for s in data.get("samples", [])],
            ratio=bool(data.get("ratio", False)),
            note=data.get("note", ""),
            error=data.get("error"),
            details=dict(data.get("details", {})),
        )


def summary(samples: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of at least one sample."""
    if not samples:
        raise ValueError("no samples")
    return statistics.median(samples), min(samples), max(samples)


def pairwise_ratio(
    numerators: Sequence[float], denominators: Sequence[float]
) -> list[float]:
    """``numerators[i] / denominators[i]`` for each repeat measured in pairs.

    The sequences must be the same length (one pair per repeat); a zero
    denominator is an error, not an infinity.
    """
    if len(numerators) != len(denominators):
        raise ValueError(
            f"{len(numerators)} numerators for {len(denominators)} denominators: "
            "a side-by-side ratio needs one pair per repeat"
        )
    out = []
    for num, den in zip(numerators, denominators, strict=True):
        if den == 0:
            raise ValueError("ratio with a zero denominator")
        out.append(num / den)
    return out


def format_value(value: float | None) -> str:
    """A number with about three significant figures, without exponents for
    the magnitudes a benchmark shows (``1,234``, ``12.3``, ``1.23``, ``0.0123``)."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    for digits, floor in enumerate((0.1, 0.01, 1e-3), start=3):
        if magnitude >= floor:
            return f"{value:.{digits}f}"
    return f"{value:.2e}"


def format_count(n: int) -> str:
    """A count with thousands separators, as labels show it (``10,000``)."""
    return f"{n:,}"


def format_rate(period: float) -> str:
    """The rate of a trigger period, in Hz or kHz (``1 kHz``)."""
    rate = 1 / period
    return f"{rate / 1000:g} kHz" if rate >= 1000 else f"{rate:g} Hz"


_HEADER = ("figure", "median", "min", "max", "unit", "runs")


def _rows(figures: Iterable[Figure]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    group = None
    for fig in figures:
        if fig.group != group:
            group = fig.group
            rows.append((f"**{group}**", "", "", "", "", ""))
        label = f"  ratio {fig.label}" if fig.ratio else fig.label
        if fig.error is not None and not fig.samples:
            rows.append((label, "failed", "", "", fig.unit, "0"))
            continue
        rows.append(
            (
                label,
                format_value(fig.median),
                format_value(fig.min),
                format_value(fig.max),
                fig.unit,
                str(fig.runs),
            )
        )
    return rows


def format_table(figures: Sequence[Figure]) -> str:
    """The figures as one Markdown table, aligned for a terminal.

    One section per group (in the order figures come); ratio rows are
    indented under the figures they compare; a failed figure shows
    ``failed`` (its error is listed below the table).
    """
    rows = _rows(figures)
    widths = [
        max(len(cell) for cell in column) for column in zip(_HEADER, *rows, strict=True)
    ]
    # Numbers right-aligned, text left.
    right = (False, True, True, True, False, True)

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if r else cell.ljust(width)
            for cell, width, r in zip(cells, widths, right, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if r else ("-" * (w + 2))
        for w, r in zip(widths, right, strict=True)
    )
    lines = [line(_HEADER), rule + "|", *(line(row) for row in rows)]
    errors = [f for f in figures if f.error is not None]
    if errors:
        lines.append("")
        lines += [f"{f.key}: {f.error}" for f in errors]
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPUs, model, memory, Python, load,
    and the versions of the packages measured."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024**2, 1)
                break
    except (OSError, ValueError, IndexError):
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    versions = {}
    for package in (
        "panda-flyscan",
        "bluesky",
        "ophyd-async",
        "tiled",
        "bluesky-tiled-plugins",
        "numpy",
        "h5py",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    info["versions"] = versions
    return info


def to_json(
    figures: Sequence[Figure], *, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON record of one suite run: metadata plus every figure."""
    return {
        "schema": SCHEMA,
        "suite": "panda-flyscan bench",
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        **(meta or {}),
        "figures": [f.as_dict() for f in figures],
    }


def write_json(
    path: Path, figures: Sequence[Figure], *, meta: dict[str, Any] | None = None
) -> Path:
    """Write :func:`to_json` to ``path`` (atomically: readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_json(figures, meta=meta), indent=2) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> tuple[dict[str, Any], list[Figure]]:
    """A record written by :func:`write_json`: (metadata, figures)."""
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA}")
    figures = [Figure.from_dict(f) for f in data.pop("figures")]
    return data, figures
