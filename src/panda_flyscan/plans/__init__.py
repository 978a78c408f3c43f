"""Flyscan plans with the PandA: time-based, position-based and asynchronous.

Bluesky generator plans; each returns the run uid::

    RE(time_scan(panda, frames=1000, period=1e-3, exposure=0.5e-3))
    RE(position_scan(panda, x, start=0, stop=10, num=101, velocity=20))
    RE(spec_scan(panda, Fly(1e-3 @ (Line(y, 0, 1, 20) * ~Line(x, 0, 2, 500)))))
    uid = RE(async_scan(panda, motor=x, start=0, stop=10, velocity=5))[0]
    cobin_run(tiled_client, uid, frame_times=...)

See docs/plans.md.
"""

from ._flyers import ACTIVE_VISIBLE, IOC_POLL_PERIOD, PcompFlyLogic, SeqFlyLogic
from .arguments import TS_TRIG
from .asynchronous import CLOCK_STREAM, async_scan
from .cobin import cobin, cobin_run, panda_sample_times
from .errors import DroppedTriggersError, PlanArgumentError
from .position_based import PcompPoints, pcomp_points, position_scan
from .signals import stop_flyscans_on_signals
from .spec_based import spec_scan
from .time_based import MAX_FRAMES, SeqTiming, seq_timing, time_scan

__all__ = [
    "ACTIVE_VISIBLE",
    "CLOCK_STREAM",
    "IOC_POLL_PERIOD",
    "MAX_FRAMES",
    "TS_TRIG",
    "DroppedTriggersError",
    "PcompFlyLogic",
    "PcompPoints",
    "PlanArgumentError",
    "SeqFlyLogic",
    "SeqTiming",
    "async_scan",
    "cobin",
    "cobin_run",
    "install_progress_bar",
    "panda_sample_times",
    "pcomp_points",
    "position_scan",
    "seq_timing",
    "spec_scan",
    "stop_flyscans_on_signals",
    "time_scan",
]


def install_progress_bar(RE: object) -> None:
    """Show ophyd-async's progress (frames captured, motor position) as
    progress bars while the RunEngine waits (``RE.waiting_hook``)."""
    from bluesky.utils import ProgressBarManager

    RE.waiting_hook = ProgressBarManager()  # type: ignore[attr-defined]
