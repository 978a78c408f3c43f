"""Time-based flyscan: N frames at a fixed period, timed by the PandA's SEQ."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

from bluesky.utils import MsgGenerator
from ophyd_async.core import DetectorTrigger, StandardDetector, TriggerInfo
from ophyd_async.fastcs.panda import HDFPanda, SeqTableInfo
from pydantic import model_validator

from ..devices import Capture, PandaWiring, WiringError
from ..devices._aio import wait_for_awaitable
from ._flyers import (
    MAX_ROW_REPEATS,
    MAX_SEQ_ROWS,
    MAX_SEQ_TIME,
    TICK,
    SeqFlyLogic,
    pulse_table,
)
from .arguments import (
    Count,
    PlanArguments,
    Seconds,
    check_detectors,
    panda_defaults,
)
from .errors import PlanArgumentError
from .fly_run import FlyRun, fly_run, flyer
from .prechecks import check_blocks, check_panda_settings
from .triggering import detector_trigger_info

__all__ = ["MAX_FRAMES", "SeqTiming", "SeqTimingArguments", "seq_timing", "time_scan"]

#: The most frames one SEQ table can time (4096 rows of 65535 repeats).
MAX_FRAMES = MAX_SEQ_ROWS * MAX_ROW_REPEATS


class SeqTiming:
    """Frames, period and exposure as the sequencer will run them.

    Times are whole 8 ns ticks (rounded to the nearest), so the captured
    TS_TRIG spacing equals :attr:`period` exactly. Periods over 34 s use a
    prescaler of several ticks.
    """

    def __init__(self, frames: int, period_ticks: int, live_ticks: int) -> None:
        self.frames = frames
        dead_ticks = period_ticks - live_ticks
        self.prescale_ticks = max(
            1, math.ceil(max(live_ticks, dead_ticks) / MAX_SEQ_TIME)
        )
        self.high = round(live_ticks / self.prescale_ticks)
        self.low = round(dead_ticks / self.prescale_ticks)

    @property
    def period(self) -> float:
        """Seconds from one frame to the next."""
        return (self.high + self.low) * self.prescale_ticks * TICK

    @property
    def exposure(self) -> float:
        """Seconds each frame is live (SEQ OUTA high)."""
        return self.high * self.prescale_ticks * TICK

    @property
    def duration(self) -> float:
        return self.frames * self.period

    def info(self) -> SeqTableInfo:
        """The ophyd-async SEQ table flyer's prepare argument."""
        return SeqTableInfo(
            sequence_table=pulse_table(self.frames, self.high, self.low),
            repeats=1,
            prescale_as_us=self.prescale_ticks * TICK * 1e6,
        )


class SeqTimingArguments(PlanArguments):
    """Frames, period and exposure (default: half the period) for one SEQ table."""

    frames: Count
    period: Seconds
    exposure: Seconds | None = None

    @property
    def period_ticks(self) -> int:
        return round(self.period / TICK)

    @property
    def live(self) -> float:
        """The exposure in seconds, given or half the period."""
        return self.period / 2 if self.exposure is None else self.exposure

    @property
    def live_ticks(self) -> int:
        return round(self.live / TICK)

    @model_validator(mode="after")
    def _fits_the_sequencer(self) -> Self:
        if self.frames > MAX_FRAMES:
            raise PlanArgumentError(
                f"{self.frames} frames is more than one SEQ table can time "
                f"({MAX_FRAMES}: {MAX_SEQ_ROWS} rows of {MAX_ROW_REPEATS}); split "
                "the scan into runs"
            )
        if self.live_ticks < 1:
            raise PlanArgumentError(
                f"exposure {self.live:g} s is shorter than the PandA's 8 ns clock tick"
            )
        if self.period_ticks - self.live_ticks < 1:
            raise PlanArgumentError(
                f"period {self.period:g} s is not longer than exposure {self.live:g} "
                "s: the PandA needs at least one 8 ns tick of dead time between "
                "frames; lengthen the period or shorten the exposure"
            )
        return self


def seq_timing(frames: Any, period: Any, exposure: Any = None) -> SeqTiming:
    """Check the frame count and times; the :class:`SeqTiming` to run.

    Raises :class:`PlanArgumentError` naming the problem.
    """
    args = SeqTimingArguments.check(frames=frames, period=period, exposure=exposure)
    return SeqTiming(args.frames, args.period_ticks, args.live_ticks)


def time_scan(
    panda: HDFPanda,
    frames: int,
    period: float,
    exposure: float | None = None,
    *,
    detectors: Sequence[StandardDetector] = (),
    wiring: PandaWiring | None = None,
    captures: Sequence[Capture] | None = None,
    md: Mapping[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Time-based flyscan: ``frames`` frames, one every ``period`` seconds.

    The PandA's sequencer (``wiring.seq``, default SEQ1) raises OUTA for
    ``exposure`` seconds (default: half the period) at the start of each
    frame. OUTA goes to each detector's TTL output (from ``wiring``) and to
    PCAP, which captures one row per frame at the end of its exposure (the
    falling edge, with the gate open during the exposure, so ``Mean``/``Sum``/
    ``Diff`` captures are over the exposure). Captures are ``captures``
    (default: the FlyscanPanda's) plus ``PCAP.TS_TRIG`` as ``trigger_time``.

    Detectors (ophyd-async StandardDetectors) are armed for external level
    triggering if they support it (exposure = SEQ pulse), else edge
    triggering with ``exposure`` as their live time.

    Everything is checked before anything is written or armed: a period not
    longer than exposure + any detector's dead time, a frame count that is
    not a positive whole number or exceeds :data:`MAX_FRAMES`, unknown
    captures or wiring raise :class:`PlanArgumentError`.

    Data: one ``primary`` stream, ``frames`` rows. Returns the run uid.
    """
    timing = seq_timing(frames, period, exposure)
    dets = check_detectors(detectors)
    wiring, capture_list = panda_defaults(panda, wiring, captures)
    seq = f"SEQ{wiring.seq}"
    try:
        ttlouts = wiring.ttlouts_for(d.name for d in dets)
    except WiringError as err:
        raise PlanArgumentError(str(err)) from err
    check_blocks(panda, [seq, *(f"TTLOUT{n}" for n in ttlouts.values())])
    det_infos = yield from wait_for_awaitable(
        asyncio.gather(
            *(
                detector_trigger_info(
                    det,
                    number=timing.frames,
                    livetime=timing.exposure,
                    period=timing.period,
                )
                for det in dets
            )
        )
    )
    settings = yield from wait_for_awaitable(
        check_panda_settings(
            panda,
            capture_list,
            {
                "pcap.enable": f"{seq}.ACTIVE",
                "pcap.gate": f"{seq}.OUTA",
                "pcap.trig": f"{seq}.OUTA",
                "pcap.trig_edge": "Falling",
                **{f"ttlout.{n}.val": f"{seq}.OUTA" for n in ttlouts.values()},
            },
        )
    )
    seq_logic = SeqFlyLogic(seq=panda.seq[wiring.seq])
    run_md: dict[str, Any] = {
        "plan_name": "time_scan",
        "plan_args": {
            "frames": timing.frames,
            "period": timing.period,
            "exposure": timing.exposure,
            "detectors": [d.name for d in dets],
        },
        "detectors": [panda.name, *(d.name for d in dets)],
        "num_points": timing.frames,
        "panda_flyscan": {
            "approach": "time-based",
            "period_ticks": timing.prescale_ticks * (timing.high + timing.low),
            "exposure_ticks": timing.prescale_ticks * timing.high,
            "captures": {c.dataset: f"{c.ref} {c.mode}" for c in capture_list},
            "wiring": wiring.as_metadata(),
        },
        **(md or {}),
    }
    return (
        yield from fly_run(
            FlyRun(
                panda=panda,
                panda_info=TriggerInfo(
                    number_of_events=timing.frames,
                    trigger=DetectorTrigger.EXTERNAL_LEVEL,
                    exposure_timeout=timing.period + 10.0,
                ),
                settings=settings,
                md=run_md,
                streams={"primary": [panda, *dets]},
                detectors=list(zip(dets, det_infos, strict=True)),
                flyers=[
                    flyer(seq_logic, timing.info(), name=f"{panda.name}-{seq.lower()}")
                ],
                max_row_gap=timing.period,
            )
        )
    )
