"""Stopping a scan when a detector drops triggers (its frames no longer line
up with the PandA's rows)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bluesky.utils import MsgGenerator
from ophyd_async.core import DetectorTrigger, StandardDetector, TriggerInfo

from ..devices import dropped_triggers_signal
from ..devices._aio import wait_for_call
from .errors import DroppedTriggersError

__all__ = ["DroppedTriggersWatch"]


class DroppedTriggersWatch:
    """Reads each externally triggered detector's dropped-trigger count (if it
    has one) after arming, and raises when it grows during the scan."""

    def __init__(self, detectors: Sequence[tuple[StandardDetector, TriggerInfo]]):
        self._watched = [
            (det, info, signal)
            for det, info in detectors
            if info.trigger != DetectorTrigger.INTERNAL
            and (signal := dropped_triggers_signal(det)) is not None
        ]
        self._baseline: list[int] = []

    def start(self) -> MsgGenerator[None]:
        """Plan stub: read the counts once armed, before the first trigger."""
        if self._watched:
            # Before the first checkpoint: never replayed, always answered.
            self._baseline = (yield from wait_for_call(self._counts)) or []

    def check(self) -> MsgGenerator[None]:
        """Plan stub: raise :class:`DroppedTriggersError` if a count grew."""
        if not self._watched:
            return
        # Checked in every flush: replayed when a resumable scan resumes.
        counts = yield from wait_for_call(self._counts)
        if counts is None:  # a pause came in between: the next flush checks
            return
        for (det, info, _), before, now in zip(
            self._watched, self._baseline, counts, strict=True
        ):
            if now > before:
                raise DroppedTriggersError(_dropped_message(det, info, now - before))

    async def _counts(self) -> list[int]:
        values = await asyncio.gather(*(s.get_value() for _, _, s in self._watched))
        return [int(v) for v in values]


def _dropped_message(det: StandardDetector, info: TriggerInfo, dropped: int) -> str:
    period = info.livetime + info.deadtime
    timing = (
        f"exposure {info.livetime:g} s, triggers every {period:g} s"
        if info.livetime
        else "gate mode"
    )
    return (
        f"detector {det.name} dropped {dropped} of {info.number_of_events} "
        f"trigger(s): it was still busy (exposing or reading out) when they came "
        f"({timing}). Its frames no longer line up with the PandA's rows, so the "
        "scan was stopped and the run keeps what was captured. Lengthen the period "
        "(or lower the velocity) or shorten the exposure, and check the detector's "
        "readout time."
    )
