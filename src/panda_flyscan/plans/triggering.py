"""How each detector is prepared: its ``TriggerInfo`` for the plan's timing."""

from __future__ import annotations

from ophyd_async.core import DetectorTrigger, StandardDetector, TriggerInfo

from .errors import PlanArgumentError

__all__ = ["detector_trigger_info"]


async def detector_trigger_info(
    det: StandardDetector,
    *,
    number: int,
    livetime: float,
    period: float,
    internal: bool = False,
    level_ok: bool = True,
) -> TriggerInfo:
    """How to prepare ``det``; raise if it cannot run at this timing.

    External level triggering is preferred when ``level_ok`` (the trigger
    pulse is the exposure), else edge; ``internal`` for free-running.
    """
    supported, deadtime = await det.get_trigger_deadtime()
    if internal:
        wanted = [DetectorTrigger.INTERNAL]
    else:
        wanted = [DetectorTrigger.EXTERNAL_EDGE]
        if level_ok:
            wanted.insert(0, DetectorTrigger.EXTERNAL_LEVEL)
    trigger = next((t for t in wanted if t in supported), None)
    if trigger is None:
        raise PlanArgumentError(
            f"detector {det.name} supports {sorted(t.name for t in supported)}; this "
            f"plan needs {' or '.join(t.name for t in wanted)} triggering"
        )
    if deadtime is not None and livetime + deadtime > period * (1 + 1e-9):
        raise PlanArgumentError(
            f"period {period:g} s is shorter than exposure {livetime:g} s + detector "
            f"{det.name} dead time {deadtime:g} s: lengthen the period or shorten "
            "the exposure"
        )
    return TriggerInfo(
        number_of_events=number,
        trigger=trigger,
        livetime=livetime,
        deadtime=period - livetime,
        exposure_timeout=period + 10.0,
    )
