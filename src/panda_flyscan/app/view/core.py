"""What the live view shows, worked out from a run's start document and the
rows received so far: no Tiled, no matplotlib, no clock.

:class:`LiveRun` accumulates rows as the follower reads them (in order, per
field) and the latest frame of each detector; :meth:`LiveRun.picture` turns
that into a :class:`Picture` a renderer draws: the captured fields against
time or position, a map filling in for a 2-D ``spec_scan`` (placed by
:func:`panda_flyscan.storage.grid.to_grid`, so snakes come out right), and the
latest detector frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...storage.grid import GridError, to_grid

__all__ = [
    "TIME_FIELD",
    "Curve",
    "Frame",
    "LiveRun",
    "MapImage",
    "Picture",
    "frame_of",
    "is_frame_shape",
    "montage",
]

#: The PandA's capture time of each row (PCAP.TS_TRIG): the time axis.
TIME_FIELD = "trigger_time"


@dataclass(frozen=True)
class Curve:
    """One captured field against the abscissa."""

    label: str
    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class MapImage:
    """A field on the scan's 2-D grid (NaN where no row has come yet)."""

    label: str
    grid: np.ndarray
    #: Names of the slow (rows) and fast (columns) axes.
    axes: tuple[str, str]
    #: (fast start, fast stop, slow start, slow stop) if the spec gives them.
    extent: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class Frame:
    """The latest frame of a detector (``index``: its row in the stream; -1
    for an image of several, such as a montage)."""

    label: str
    index: int
    image: np.ndarray


@dataclass(frozen=True)
class Picture:
    """Everything one drawing of the live view shows."""

    uid: str
    title: str
    abscissa: str
    curves: tuple[Curve, ...]
    map: MapImage | None
    frames: tuple[Frame, ...]
    #: Rows every plotted field has (the others may be ahead).
    rows: int
    #: Rows the scan will have, if its start document says.
    expected: int | None
    done: bool


def is_frame_shape(shape: Sequence[int]) -> bool:
    """Whether an array of ``shape`` (rows first) holds a 2-D frame per row:
    ophyd-async serves one frame per event as ``(N, 1, H, W)``."""
    return len(shape) >= 3


def frame_of(image: np.ndarray) -> np.ndarray:
    """One row of a detector array as a 2-D image (leading 1s dropped)."""
    image = np.asarray(image)
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    return image


@dataclass
class LiveRun:
    """A run as received so far: its start document, rows per scalar field,
    the latest frame per detector field, and its stop document once seen.

    ``map_field`` picks the field mapped on a 2-D grid (default: the first
    captured field that is not a scan axis nor the time, else the time).
    """

    start: Mapping[str, Any]
    map_field: str | None = None
    stop: Mapping[str, Any] | None = None
    _rows: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    _frames: dict[str, Frame] = field(default_factory=dict)

    @property
    def uid(self) -> str:
        return str(self.start["uid"])

    @property
    def fields(self) -> list[str]:
        """Scalar fields received so far, in the order they first came."""
        return list(self._rows)

    def count(self, name: str) -> int:
        """Rows of ``name`` received so far."""
        return self._counts.get(name, 0)

    def add_rows(self, name: str, first: int, rows: np.ndarray) -> None:
        """Rows ``first, first + 1, ...`` of scalar field ``name``.

        Rows must come in order: a gap or an overlap is a bug in the caller,
        which would otherwise plot wrong data silently.
        """
        if first != self.count(name):
            raise ValueError(
                f"{name}: rows from {first} after {self.count(name)} received"
            )
        rows = np.asarray(rows).reshape(-1)
        self._rows.setdefault(name, []).append(rows)
        self._counts[name] = first + len(rows)

    def frame_index(self, name: str) -> int | None:
        """Row of the latest frame of ``name`` received (None: none yet)."""
        frame = self._frames.get(name)
        return None if frame is None else frame.index

    def set_frame(self, name: str, index: int, image: np.ndarray) -> None:
        """The latest frame of detector field ``name`` (row ``index``)."""
        self._frames[name] = Frame(name, index, frame_of(image))

    def rows(self, name: str) -> np.ndarray:
        """Every row of scalar field ``name`` received so far."""
        chunks = self._rows.get(name)
        if not chunks:
            return np.empty(0)
        if len(chunks) > 1:  # concatenate once, keep the result
            chunks[:] = [np.concatenate(chunks)]
        return chunks[0]

    # -- what to plot ---------------------------------------------------------

    @property
    def expected(self) -> int | None:
        """Rows the scan will have (``num_points``, else the shape's product)."""
        if self.stop is not None:
            events = self.stop.get("num_events") or {}
            if "primary" in events:
                return int(events["primary"])
        if (n := self.start.get("num_points")) is not None:
            return int(n)
        shape = self.start.get("shape")
        return int(np.prod(shape)) if shape else None

    @property
    def motors(self) -> list[str]:
        return [str(m) for m in self.start.get("motors") or ()]

    @property
    def is_map(self) -> bool:
        """A 2-D scan with a grid to put rows on."""
        shape = self.start.get("shape") or ()
        return len(shape) == 2 and bool(self.start.get("scanspec"))

    def abscissa(self) -> str | None:
        """The field plotted along x: the motor of a 1-D position scan, else
        the time; ``None`` (row number) when neither has come."""
        motors = self.motors
        one_d_position = len(motors) == 1 and (
            self.start.get("plan_name") == "position_scan"
            or len(self.start.get("shape") or ()) == 1
        )
        if one_d_position and motors[0] in self._rows:
            return motors[0]
        return TIME_FIELD if TIME_FIELD in self._rows else None

    def mapped(self) -> str | None:
        """The field a 2-D scan maps (see the class docstring)."""
        if self.map_field is not None:
            return self.map_field if self.map_field in self._rows else None
        others = [f for f in self._rows if f not in self.motors and f != TIME_FIELD]
        if others:
            return others[0]
        return TIME_FIELD if TIME_FIELD in self._rows else None

    def _map(self) -> MapImage | None:
        name = self.mapped()
        if not self.is_map or name is None:
            return None
        spec = self.start["scanspec"]
        try:
            grid = to_grid(self.rows(name).astype(float), spec)
        except GridError:
            return None
        motors = self.motors
        axes = (motors[0], motors[1]) if len(motors) == 2 else ("slow", "fast")
        extent = None
        extents = self.start.get("extents")
        if extents and len(extents) == 2:
            (slow0, slow1), (fast0, fast1) = extents
            extent = (float(fast0), float(fast1), float(slow0), float(slow1))
        return MapImage(name, grid, axes, extent)

    def picture(self) -> Picture:
        """What to draw now."""
        x_name = self.abscissa()
        plotted = [f for f in self._rows if f != x_name]
        n = min((self.count(f) for f in self._rows), default=0)
        x = self.rows(x_name)[:n] if x_name else np.arange(n, dtype=float)
        curves = tuple(Curve(f, x, self.rows(f)[:n]) for f in plotted)
        status = "done" if self.stop is not None else "running"
        if self.stop is not None and self.stop.get("exit_status") != "success":
            status = str(self.stop.get("exit_status"))
        expected = self.expected
        of = f"/{expected}" if expected is not None else ""
        title = (
            f"{self.start.get('plan_name', 'run')} {self.uid[:8]}: "
            f"{n}{of} rows ({status})"
        )
        return Picture(
            uid=self.uid,
            title=title,
            abscissa=x_name or "row",
            curves=curves,
            map=self._map(),
            frames=tuple(self._frames[k] for k in sorted(self._frames)),
            rows=n,
            expected=expected,
            done=self.stop is not None,
        )


def montage(frames: np.ndarray, count: int = 16) -> tuple[np.ndarray, list[int]]:
    """Up to ``count`` frames of ``frames`` (N frames, any leading 1s per
    frame), evenly spaced, tiled into one image on a near-square grid; and
    which frames those are."""
    frames = np.asarray(frames)
    images = frames.reshape(-1, *frames.shape[-2:])
    if len(images) == 0:
        raise ValueError("no frames to tile")
    picked = sorted({int(i) for i in np.linspace(0, len(images) - 1, count)})
    cols = int(np.ceil(np.sqrt(len(picked))))
    rows = int(np.ceil(len(picked) / cols))
    h, w = images.shape[1:]
    tiled = np.zeros((rows * h, cols * w), dtype=float)
    for k, i in enumerate(picked):
        r, c = divmod(k, cols)
        tiled[r * h : (r + 1) * h, c * w : (c + 1) * w] = images[i]
    return tiled, picked
