"""Figure 4 (storage), live view: how far ``panda-flyscan view`` runs behind
a 1 kHz time scan.

Each repeat runs ``time_scan(panda, N, 1 ms)`` into Tiled with a headless live
view (:class:`~panda_flyscan.app.view.LiveViewCallback`, PNGs in the work
directory; it follows the run through Tiled as it would from another
machine, reading the files here when it can) and two clocks: the IOC's
capture counter (:class:`~panda_flyscan.app.view.CaptureClock` on
``panda.data.num_captured``: when each row was in the PandA's file) and the
RunEngine's documents (:class:`~panda_flyscan.app.view.RowClock`: when each
row's StreamDatum was emitted). Per row, captured -> drawn is the issue's
figure (its target: 1 s); emitted -> drawn is the view's own share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from panda_flyscan.app.bench.stats import format_count

if TYPE_CHECKING:
    from panda_flyscan.app.bench.suite import Suite

__all__ = ["live_view"]

#: The scan's period: the issue's 1 kHz.
PERIOD = 1e-3


def live_view(s: Suite) -> None:
    """Live-view lag behind a 1 kHz time_scan, captured -> drawn and emitted
    -> drawn: median, 95th percentile and the last row, per repeat."""
    from bluesky.run_engine import call_in_bluesky_event_loop

    from panda_flyscan.app.view import CaptureClock, LiveViewCallback, RowClock
    from panda_flyscan.plans import time_scan

    ctx, rows = s.ctx, s.budget.liveview_rows
    s.warm_up()
    panda = ctx.beamline.panda
    signal = panda.data.num_captured
    capture = CaptureClock()

    async def subscribe() -> None:
        signal.subscribe_reading(capture)

    async def unsubscribe() -> None:
        signal.clear_sub(capture)

    label = f"{format_count(rows)} rows at 1 kHz"
    figs = {
        key: s.figure(f"view.{key}", "storage", text, "s")
        for key, text in [
            ("captured.median", f"live-view lag, captured -> drawn, {label}: median"),
            ("captured.p95", "  the same, 95th percentile"),
            ("captured.last", "  the same, the scan's last row"),
            ("emitted.median", "live-view lag, emitted (StreamDatum) -> drawn: median"),
        ]
    }
    png_dir = ctx.work_dir / "live-view"
    call_in_bluesky_event_loop(subscribe())
    try:
        for _ in range(s.budget.liveview_repeats):
            views = LiveViewCallback(ctx.client, png_dir=png_dir)
            clock = RowClock()
            capture.reset()
            tokens = [ctx.RE.subscribe(views), ctx.RE.subscribe(clock)]
            try:
                with ctx.writing():
                    result: Any = ctx.RE(time_scan(panda, rows, PERIOD))
                (uid,) = result
            finally:
                for token in tokens:
                    ctx.RE.unsubscribe(token)
            [view] = views.views
            view.wait(60)
            if not view.done or view.picture is None or view.picture.rows != rows:
                got = None if view.picture is None else view.picture.rows
                raise RuntimeError(f"live view of {uid} got {got} of {rows} rows")
            captured = view.lag(list(capture.captured))
            emitted = view.lag(clock)
            figs["captured.median"].add(captured.median)
            figs["captured.p95"].add(captured.p95)
            figs["captured.last"].add(captured.last)
            figs["emitted.median"].add(emitted.median)
            s.log(f"live view, {label}: captured -> drawn {captured}")
    finally:
        call_in_bluesky_event_loop(unsubscribe())
