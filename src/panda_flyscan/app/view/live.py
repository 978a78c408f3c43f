"""The live view in a session: :func:`live_view` follows a run in a background
thread and shows it in a matplotlib window (an interactive backend: IPython's
``%matplotlib qt``, ``widget``, ...) or rewrites a PNG (``png_dir``: headless);
:class:`LiveViewCallback`, subscribed to a RunEngine, opens one per run."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core import Picture
from .follow import DEFAULT_INTERVAL, Follower
from .lag import LagReport, live_lag
from .render import PngWriter, draw

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LiveView", "LiveViewCallback", "interactive_backend", "live_view"]

#: Milliseconds between redraws of a window (the GUI's timer).
REDRAW_MS = 200

_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def interactive_backend() -> bool:
    """Whether matplotlib's backend shows windows that can be redrawn live
    (not Agg and the like, nor the inline backend, which draws once)."""
    import matplotlib

    backend = str(matplotlib.get_backend()).lower()
    return backend not in _NON_INTERACTIVE and "inline" not in backend


class LiveView:
    """A run followed in a background thread (see :func:`live_view`)."""

    def __init__(
        self,
        follower: Follower,
        *,
        png_dir: Path | str | None = None,
        figure: Figure | None = None,
    ) -> None:
        self.follower = follower
        self.png = PngWriter(png_dir) if png_dir is not None else None
        self.figure = figure
        self.picture: Picture | None = None
        self.error: BaseException | None = None
        self._drawn: Picture | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._follow, name=f"live-view-{follower.uid[:8]}", daemon=True
        )
        self._timer: Any = None

    @property
    def uid(self) -> str:
        return self.follower.uid

    @property
    def pngs(self) -> list[Path]:
        """The PNGs written (empty without ``png_dir``)."""
        return [] if self.png is None else list(self.png.written)

    def start(self) -> LiveView:
        """Start following (and redrawing the window, if any)."""
        if self.figure is not None:
            self._timer = self.figure.canvas.new_timer(interval=REDRAW_MS)
            self._timer.add_callback(self._redraw)
            self._timer.start()
        self._thread.start()
        return self

    def _follow(self) -> None:
        try:
            self.follower.follow(self._on_update)
        except BaseException as err:  # reported by wait(), not lost in a thread
            self.error = err
        finally:
            self._done.set()

    def _on_update(self, picture: Picture) -> bool:
        self.picture = picture  # the window's timer draws it, in the GUI thread
        if self.png is not None:
            return self.png(picture)
        return False

    def _redraw(self) -> None:
        picture = self.picture
        if self.figure is None or picture is None or picture is self._drawn:
            return
        self._drawn = picture
        draw(picture, self.figure)
        self.figure.canvas.draw_idle()
        if self._done.is_set() and self._timer is not None:
            self._timer.stop()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Picture | None:
        """Block until the run is done (or ``timeout`` s); the last picture.
        Re-raises what stopped the follower, if anything did."""
        self._done.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.picture

    def stop(self) -> None:
        """Stop following (the window keeps its last drawing)."""
        self.follower.stop()
        self._done.wait(10)

    def lag(self, emitted: Any) -> LagReport:
        """The view's lag behind ``emitted`` (a :class:`~.lag.RowClock` or
        :class:`~.lag.CaptureClock`'s record, or the clock itself)."""
        record = getattr(emitted, "emitted", getattr(emitted, "captured", emitted))
        return live_lag(self.follower.updates, record)


def live_view(
    client: Any,
    uid: str | None = None,
    *,
    png_dir: Path | str | None = None,
    interval: float = DEFAULT_INTERVAL,
    map_field: str | None = None,
    window: bool | None = None,
) -> LiveView:
    """Follow run ``uid`` (default: the newest) of Tiled ``client`` live.

    Polls Tiled every ``interval`` s in a background thread; shows the
    captured fields against time or position, a 2-D scan's map filling in
    (``map_field``: which field), and the latest detector frame. In a window
    when matplotlib's backend is interactive (``window``: force or refuse
    one), and/or as a PNG rewritten in ``png_dir``. Returns the started
    :class:`LiveView` (``.wait()``, ``.stop()``, ``.picture``, ``.pngs``).
    """
    if window is None:
        window = interactive_backend()
    if not window and png_dir is None:
        raise ValueError(
            "matplotlib's backend draws no live window (use %matplotlib qt or "
            "widget in IPython), so give png_dir= to write PNGs instead"
        )
    figure = None
    if window:
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=(12, 8))
        plt.show(block=False)
    follower = Follower(client, uid, interval=interval, map_field=map_field)
    return LiveView(follower, png_dir=png_dir, figure=figure).start()


class LiveViewCallback:
    """A RunEngine callback: each start document opens a :func:`live_view`
    of that run (keyword arguments go to it); ``views`` keeps them.

    >>> RE.subscribe(LiveViewCallback(client, png_dir="live"))
    """

    def __init__(self, client: Any, **kwargs: Any) -> None:
        self.client = client
        self.kwargs = kwargs
        self.views: list[LiveView] = []

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self.views.append(live_view(self.client, str(doc["uid"]), **self.kwargs))
