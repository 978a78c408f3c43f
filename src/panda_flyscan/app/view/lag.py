"""How far the live view runs behind the data: per row, from the moment the
PandA's IOC captured it (wrote it to its file: ``DATA:NUM_CAPTURED``), or the
RunEngine emitted it (the StreamDatum document that made it data), to the
moment the view drew it.

:class:`CaptureClock`, subscribed to the IOC's capture counter, notes when
rows are captured; :class:`RowClock`, subscribed to the RunEngine, when they
are emitted; the follower's :attr:`~.follow.Follower.updates` note when they
were drawn; :func:`live_lag` pairs a record of either kind with them. All use
``time.time()``, so the follower may run in another process of the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .follow import PRIMARY, Update

__all__ = ["CaptureClock", "LagReport", "RowClock", "live_lag"]


@dataclass(eq=False)  # a signal callback: hashed by identity
class CaptureClock:
    """A signal callback: when the IOC had captured how many rows.

    Subscribe it to the PandA's ``data.num_captured`` (in the RunEngine's
    loop: ``signal.subscribe_reading(clock)``); ``captured``:
    ``(time.time(), rows)`` at each update of the latest capture: the
    counter restarts at each arm, and a count lower than the last one starts
    the record afresh.
    """

    clock: Callable[[], float] = time.time
    captured: list[tuple[float, int]] = field(default_factory=list)

    def __call__(self, reading: Mapping[str, Any]) -> None:
        for value in reading.values():
            rows = int(value["value"])
            if self.captured and rows < self.captured[-1][1]:
                self.captured.clear()
            self.captured.append((self.clock(), rows))

    def reset(self) -> None:
        """Forget what was captured so far."""
        self.captured.clear()


@dataclass(eq=False)  # subscribed to a RunEngine: hashed by identity
class RowClock:
    """A RunEngine callback: when each run's ``primary`` rows were emitted.

    ``emitted``: ``(time.time(), rows)`` after each StreamDatum of a scalar
    field of ``primary`` (``rows``: what every such field then had). A new
    start document starts a new record.
    """

    clock: Callable[[], float] = time.time
    emitted: list[tuple[float, int]] = field(default_factory=list)
    _primary: set[str] = field(default_factory=set)
    _scalar_keys: set[str] = field(default_factory=set)
    _resources: dict[str, str] = field(default_factory=dict)
    _stops: dict[str, int] = field(default_factory=dict)

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self.emitted.clear()
            self._primary.clear()
            self._scalar_keys.clear()
            self._resources.clear()
            self._stops.clear()
        elif name == "descriptor" and doc.get("name") == PRIMARY:
            self._primary.add(doc["uid"])
            for key, info in doc["data_keys"].items():
                if int(np.prod(info.get("shape") or [1])) == 1:
                    self._scalar_keys.add(key)
        elif name == "stream_resource":
            self._resources[doc["uid"]] = doc["data_key"]
        elif name == "stream_datum" and doc["descriptor"] in self._primary:
            key = self._resources.get(doc["stream_resource"])
            if key in self._scalar_keys:
                self._stops[key] = int(doc["indices"]["stop"])
                now = self.clock()
                self.emitted.append((now, min(self._stops.values())))


@dataclass(frozen=True)
class LagReport:
    """Seconds from a row's emission to its drawing, over ``rows`` rows."""

    rows: int
    median: float
    p95: float
    max: float
    #: The last row of the scan: emitted -> on the plot.
    last: float

    def __str__(self) -> str:
        return (
            f"live-view lag over {self.rows} rows: median {self.median:.3f} s, "
            f"95% {self.p95:.3f} s, max {self.max:.3f} s, last row {self.last:.3f} s"
        )


def live_lag(
    updates: Sequence[Update], emitted: Sequence[tuple[float, int]]
) -> LagReport:
    """Per-row lag of a live view (``Follower.updates``: when each row was
    first drawn) behind the emission record (``RowClock.emitted``).

    Rows the view never received are left out; raises ValueError if none.
    """
    e_t, e_rows = _monotonic(emitted)
    # Rows a skipped drawing brought count from the next drawing that showed
    # them; a view that records no drawings counts from reception.
    drawn = [(u.drawn, u.rows) for u in updates if u.drawn is not None]
    d_t, d_rows = _monotonic(drawn or [(u.received, u.rows) for u in updates])
    n = min(e_rows[-1] if len(e_rows) else 0, d_rows[-1] if len(d_rows) else 0)
    if n == 0:
        raise ValueError("no row both emitted and drawn: nothing to measure")
    rows = np.arange(n)
    # First record whose row count exceeds each row index.
    emitted_at = e_t[np.searchsorted(e_rows, rows, side="right")]
    drawn_at = d_t[np.searchsorted(d_rows, rows, side="right")]
    lag = drawn_at - emitted_at
    return LagReport(
        rows=int(n),
        median=float(np.median(lag)),
        p95=float(np.percentile(lag, 95)),
        max=float(lag.max()),
        last=float(lag[-1]),
    )


def _monotonic(record: Sequence[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Times and the running maximum of row counts, in time order."""
    if not record:
        return np.empty(0), np.empty(0, dtype=int)
    t, rows = np.asarray(sorted(record), dtype=float).T
    return t, np.maximum.accumulate(rows).astype(int)
