"""CPU time of other processes (the simulator, the IOC), read from ``/proc``."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["CpuUse", "cpu_seconds"]


def _own_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process (all its threads), or None
    if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [
            int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` so far (0 if it is gone); with
    ``children``, plus those of its children still running."""
    pids = [pid, *_children(pid)] if children else [pid]
    return sum(_own_cpu_seconds(p) or 0.0 for p in pids)


class CpuUse:
    """CPU use (fraction of one core) of some processes over a block.

    >>> with CpuUse({"ioc": pid}) as cpu:
    ...     capture()
    >>> cpu.use["ioc"]
    """

    def __init__(self, pids: Mapping[str, int], *, children: bool = False) -> None:
        self.pids = dict(pids)
        self.children = children
        #: By name, once the block is left.
        self.use: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {k: cpu_seconds(p, children=self.children) for k, p in self.pids.items()}

    def __enter__(self) -> CpuUse:
        self._t0 = time.monotonic()
        self._c0 = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t0
        self.use = {k: (c - self._c0[k]) / wall for k, c in self._now().items()}
