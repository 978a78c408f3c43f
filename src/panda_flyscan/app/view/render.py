"""Drawing a :class:`~.core.Picture` with matplotlib: into a figure (an
interactive window) or a PNG (headless, Agg; no pyplot, so any thread)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .core import Picture

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PngWriter", "draw", "png_path", "save_png"]

#: Size of a PNG in inches (at 100 dpi: 1200 x 800 pixels).
FIGSIZE = (12.0, 8.0)


def draw(picture: Picture, figure: Figure) -> None:
    """Draw ``picture`` into ``figure`` (cleared first): the captured fields
    stacked on the left against the abscissa; the map and the latest frames
    on the right."""
    figure.clear()
    figure.suptitle(picture.title)
    images: list[tuple[str, np.ndarray, Any, tuple[str, str] | None]] = []
    if picture.map is not None:
        m = picture.map
        images.append((f"{m.label} on the grid", m.grid, m.extent, m.axes))
    for frame in picture.frames:
        # A negative index: not one row (a montage, say).
        label = frame.label if frame.index < 0 else f"{frame.label} (row {frame.index})"
        images.append((label, frame.image, None, None))
    left: Any = figure
    right: Any = None
    if images:
        halves: Any = figure.subfigures(1, 2)
        left, right = halves
    curves = picture.curves
    if curves:
        axes = left.subplots(len(curves), 1, sharex=True, squeeze=False)[:, 0]
        for ax, curve in zip(axes, curves, strict=True):
            ax.plot(curve.x, curve.y, ".-", markersize=2, linewidth=0.8)
            ax.set_ylabel(curve.label)
            ax.grid(True, alpha=0.3)
        axes[-1].set_xlabel(picture.abscissa)
    else:
        ax = left.subplots()
        ax.text(0.5, 0.5, "no rows yet", ha="center", va="center")
        ax.set_axis_off()
    if right is not None:
        axes = right.subplots(len(images), 1, squeeze=False)[:, 0]
        for ax, (label, image, extent, names) in zip(axes, images, strict=True):
            values = np.asarray(image, dtype=float)
            # Frames: a few bright pixels (the simulator's stamp, hot pixels)
            # would flatten the rest, so scale to the 1st..99th percentile.
            limits = (None, None)
            if not names and np.isfinite(values).any():
                limits = tuple(np.nanpercentile(values, [1, 99]))
            shown = ax.imshow(
                np.ma.masked_invalid(values),
                origin="lower" if names else "upper",
                extent=extent,
                aspect="auto" if names else "equal",
                interpolation="nearest",
                vmin=limits[0],
                vmax=limits[1],
            )
            right.colorbar(shown, ax=ax)
            ax.set_title(label)
            if names:
                ax.set_ylabel(names[0])
                ax.set_xlabel(names[1])


def save_png(picture: Picture, path: Path | str, *, dpi: int = 100) -> Path:
    """``picture`` as a PNG at ``path``, written atomically (a viewer reloading
    the file never sees half of it). Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=FIGSIZE, dpi=dpi)
    FigureCanvasAgg(figure)
    draw(picture, figure)
    partial = path.with_name(f".{path.name}.partial")
    figure.savefig(partial, format="png")
    os.replace(partial, path)
    return path


def png_path(directory: Path | str, uid: str) -> Path:
    """Where :class:`PngWriter` writes run ``uid``'s picture."""
    return Path(directory) / f"live-{uid[:8]}.png"


class PngWriter:
    """An ``on_update`` for :meth:`.follow.Follower.follow`: rewrites one PNG
    per run in ``directory``, at most every ``min_interval`` seconds (default:
    each update; drawing, ~0.2 s, paces the follower), and always the final
    picture."""

    def __init__(self, directory: Path | str, *, min_interval: float = 0.0) -> None:
        self.directory = Path(directory)
        self.min_interval = min_interval
        self.written: list[Path] = []
        self._last = -float("inf")

    def __call__(self, picture: Picture) -> bool:
        """Write ``picture`` unless one was written less than
        ``min_interval`` ago; whether it was."""
        now = time.monotonic()
        if not picture.done and now - self._last < self.min_interval:
            return False
        self._last = now
        path = save_png(picture, png_path(self.directory, picture.uid))
        if path not in self.written:
            self.written.append(path)
        return True
