"""The live view: a flyscan's data plotted while it runs, fed from Tiled.

Layers, each usable alone:

* :mod:`.core` (sans-IO): what to plot from a run's start document and the
  rows received so far (:class:`LiveRun` -> :class:`Picture`).
* :mod:`.follow`: :class:`Follower` polls Tiled and reads only new rows.
* :mod:`.render`: matplotlib drawing, :func:`save_png` (headless, Agg).
* :mod:`.live`: :func:`live_view` (a background thread; a window or PNGs),
  :class:`LiveViewCallback` for a RunEngine.
* :mod:`.lag`: :class:`CaptureClock`, :class:`RowClock` and :func:`live_lag`,
  the view's lag behind the data.

``panda-flyscan view URI [UID]`` is the command line (``app/cli/view.py``).
See docs/live-view.md.
"""

from __future__ import annotations

from .core import Curve, Frame, LiveRun, MapImage, Picture, montage
from .follow import DEFAULT_INTERVAL, Follower, Update, latest_uid
from .lag import CaptureClock, LagReport, RowClock, live_lag
from .live import LiveView, LiveViewCallback, interactive_backend, live_view
from .render import PngWriter, draw, png_path, save_png

__all__ = [
    "DEFAULT_INTERVAL",
    "CaptureClock",
    "Curve",
    "Follower",
    "Frame",
    "LagReport",
    "LiveRun",
    "LiveView",
    "LiveViewCallback",
    "MapImage",
    "Picture",
    "PngWriter",
    "RowClock",
    "Update",
    "draw",
    "interactive_backend",
    "latest_uid",
    "live_lag",
    "live_view",
    "montage",
    "png_path",
    "save_png",
]
