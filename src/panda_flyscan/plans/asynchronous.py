"""Asynchronous flyscan: the PandA samples positions while detectors free-run."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator
from ophyd_async.core import (
    DetectorTrigger,
    FlyMotorInfo,
    StandardDetector,
    TriggerInfo,
    soft_signal_rw,
)
from ophyd_async.fastcs.panda import HDFPanda
from ophyd_async.plan_stubs import ensure_connected
from pydantic import model_validator

from ..devices import Capture, PandaWiring, WiringError
from ..devices._aio import wait_for_awaitable
from ._flyers import SeqFlyLogic
from .arguments import (
    Coordinate,
    PlanArguments,
    Seconds,
    Speed,
    check_detectors,
    check_fly_motor,
    panda_defaults,
)
from .errors import PlanArgumentError
from .fly_run import FlyRun, fly_run, flyer, motor_flyer
from .prechecks import check_blocks, check_panda_settings
from .time_based import seq_timing
from .triggering import detector_trigger_info

__all__ = [
    "CLOCK_STREAM",
    "AsyncFlightArguments",
    "FreeRunArguments",
    "SamplingArguments",
    "async_scan",
]

#: The one-event stream holding the host time at which PandA time 0 began.
CLOCK_STREAM = "panda_clock"
#: Sampling goes on this long after the motion's expected end, by default.
DEFAULT_MARGIN = 0.5


class SamplingArguments(PlanArguments):
    """How often and (if given) how long the PandA samples."""

    sample_period: Seconds
    duration: Seconds | None = None


class AsyncFlightArguments(PlanArguments):
    """Where and how fast the motor flies, when :func:`async_scan` has one."""

    start: Coordinate
    stop: Coordinate
    velocity: Speed | None = None

    @model_validator(mode="after")
    def _is_a_flight(self) -> Self:
        if self.start == self.stop:
            raise PlanArgumentError(
                f"start and stop are both {self.start}: nothing to fly; leave motor "
                "out to sample positions without moving"
            )
        return self


class FreeRunArguments(PlanArguments):
    """The detectors' own clock, when :func:`async_scan` has detectors."""

    frame_period: Seconds
    exposure: Seconds | None = None

    @property
    def live(self) -> float:
        """The exposure in seconds, given or half the frame period."""
        return self.frame_period / 2 if self.exposure is None else self.exposure

    @model_validator(mode="after")
    def _fits_the_period(self) -> Self:
        if self.live >= self.frame_period:
            raise PlanArgumentError(
                f"exposure {self.live:g} s is not shorter than frame_period "
                f"{self.frame_period:g} s"
            )
        return self


def async_scan(
    panda: HDFPanda,
    duration: float | None = None,
    *,
    sample_period: float = 1e-3,
    motor: Any = None,
    start: float | None = None,
    stop: float | None = None,
    velocity: float | None = None,
    detectors: Sequence[StandardDetector] = (),
    frame_period: float | None = None,
    exposure: float | None = None,
    wiring: PandaWiring | None = None,
    captures: Sequence[Capture] | None = None,
    md: Mapping[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Asynchronous flyscan: positions and measurements taken independently.

    The PandA samples its ``captures`` (plus ``trigger_time``, and the motor's
    encoder as ``motor.name``) every ``sample_period`` seconds for
    ``duration`` seconds, timed by its sequencer, into the ``primary``
    stream. Meanwhile, if ``motor`` is given, it flies from ``start`` to
    ``stop`` at ``velocity`` (with its run-up), and each detector free-runs on
    its own clock (internal triggering, one frame every ``frame_period``,
    ``exposure`` live, default half the period) into a stream of its own
    name. The host time at which the PandA's time 0 began is stored in the
    ``panda_clock`` stream; :func:`~panda_flyscan.plans.cobin_run` uses it to
    put positions and frames on one time axis and interpolate.

    ``duration`` defaults to the motion time plus run-up, run-down and
    0.5 s. Checked before anything moves or is armed (:class:`PlanArgumentError`):
    no duration and no motor, a duration shorter than the motion, start ==
    stop, velocity above the motor's maximum, detectors without a
    ``frame_period``, exposure not shorter than the frame period, more samples
    than the SEQ table can time.

    Returns the run uid.
    """
    sampling = SamplingArguments.check(sample_period=sample_period, duration=duration)
    sample_period, duration = sampling.sample_period, sampling.duration
    dets = check_detectors(detectors)
    wiring, capture_list = panda_defaults(panda, wiring, captures)
    seq = f"SEQ{wiring.seq}"
    flyers = []
    motion: dict[str, Any] = {}
    blocks = [seq]
    if motor is not None:
        name = check_fly_motor(motor)
        if start is None or stop is None:
            raise PlanArgumentError("start and stop are needed to fly the motor")
        flight = AsyncFlightArguments.check(start=start, stop=stop, velocity=velocity)
        start, stop = flight.start, flight.stop
        try:
            encoder = f"INENC{wiring.encoder_for(name)}"
        except WiringError as err:
            raise PlanArgumentError(str(err)) from err
        blocks.append(encoder)
        _, capture_list = panda_defaults(
            panda, wiring, capture_list, extra=[Capture(f"{encoder}.VAL", name)]
        )
        current, max_velocity, accl, units = yield from wait_for_awaitable(
            asyncio.gather(
                motor.velocity.get_value(),
                motor.max_velocity.get_value(),
                motor.acceleration_time.get_value(),
                motor.motor_egu.get_value(),
            )
        )
        speed = float(current if flight.velocity is None else flight.velocity)
        if not 0 < speed <= max_velocity:
            raise PlanArgumentError(
                f"velocity {speed:g} {units}/s is not within {name}'s range "
                f"(0, {max_velocity:g}] {units}/s"
            )
        fly_info = FlyMotorInfo(
            start_position=start,
            end_position=stop,
            time_for_move=abs(stop - start) / speed,
        )
        check = getattr(motor, "check_value", None)
        if check is not None:
            for where in (
                fly_info.ramp_up_start_pos(accl),
                fly_info.ramp_down_end_pos(accl),
            ):
                try:
                    yield from wait_for_awaitable(check(where))
                except Exception as err:
                    raise PlanArgumentError(
                        f"{name} cannot fly from {start} to {stop} ({err})"
                    ) from err
        motion_time = fly_info.time_for_move + 2 * accl
        if duration is None:
            duration = motion_time + DEFAULT_MARGIN
        elif duration < motion_time:
            raise PlanArgumentError(
                f"duration {duration:g} s is shorter than the motion ({motion_time:g} "
                "s with run-up and run-down): lengthen it or leave it out"
            )
        motion = {"motor": name, "start": start, "stop": stop, "velocity": speed}
        flyers.append(motor_flyer(motor, fly_info))
    if duration is None:
        raise PlanArgumentError(
            "pass duration= (seconds to sample), or a motor with start and stop"
        )
    samples = math.floor(duration / sample_period + 1e-9)
    if samples < 1:
        raise PlanArgumentError(
            f"duration {duration:g} s is shorter than one sample period "
            f"({sample_period:g} s)"
        )
    timing = seq_timing(samples, sample_period)
    det_infos = []
    if dets:
        if frame_period is None:
            raise PlanArgumentError("detectors free-run: pass their frame_period=")
        free = FreeRunArguments.check(frame_period=frame_period, exposure=exposure)
        frame_period, live = free.frame_period, free.live
        frames = math.floor(duration / frame_period + 1e-9)
        if frames < 1:
            raise PlanArgumentError(
                f"duration {duration:g} s is shorter than one frame "
                f"({frame_period:g} s)"
            )
        det_infos = yield from wait_for_awaitable(
            asyncio.gather(
                *(
                    detector_trigger_info(
                        det,
                        number=frames,
                        livetime=live,
                        period=frame_period,
                        internal=True,
                    )
                    for det in dets
                )
            )
        )
    check_blocks(panda, blocks)
    settings = yield from wait_for_awaitable(
        check_panda_settings(
            panda,
            capture_list,
            {
                "pcap.enable": f"{seq}.ACTIVE",
                "pcap.gate": "ONE",
                "pcap.trig": f"{seq}.OUTA",
                "pcap.trig_edge": "Rising",
            },
        )
    )
    seq_logic = SeqFlyLogic(seq=panda.seq[wiring.seq])
    flyers.insert(
        0, flyer(seq_logic, timing.info(), name=f"{panda.name}-{seq.lower()}")
    )
    start_time = soft_signal_rw(float, name="panda_start_time", units="s")
    uncertainty = soft_signal_rw(float, name="panda_start_uncertainty", units="s")
    yield from ensure_connected(start_time, uncertainty)

    def record_clock() -> MsgGenerator[None]:
        # PCAP's time 0 is the SEQ's enable (PCAP.ENABLE = SEQ.ACTIVE): the
        # host clock around that write anchors PandA time to host time.
        between = seq_logic.enabled_between
        if between is None:
            return
        yield from bps.mv(
            start_time, sum(between) / 2, uncertainty, (between[1] - between[0]) / 2
        )
        yield from bps.create(CLOCK_STREAM)
        yield from bps.read(start_time)
        yield from bps.read(uncertainty)
        yield from bps.save()

    run_md: dict[str, Any] = {
        "plan_name": "async_scan",
        "plan_args": {
            "duration": duration,
            "sample_period": timing.period,
            "frame_period": frame_period,
            "exposure": exposure,
            **motion,
            "detectors": [d.name for d in dets],
        },
        "detectors": [panda.name, *(d.name for d in dets)],
        **({"motors": [motion["motor"]]} if motion else {}),
        "num_points": samples,
        "panda_flyscan": {
            "approach": "asynchronous",
            "sample_period_ticks": timing.prescale_ticks * (timing.high + timing.low),
            "clock_stream": CLOCK_STREAM,
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
                    number_of_events=samples,
                    trigger=DetectorTrigger.EXTERNAL_LEVEL,
                    exposure_timeout=timing.period + 10.0,
                ),
                settings=settings,
                md=run_md,
                streams={"primary": [panda], **{d.name: [d] for d in dets}},
                detectors=list(zip(dets, det_infos, strict=True)),
                flyers=flyers,
                late_kickoff=list(dets),
                after_kickoff=record_clock,
                max_row_gap=timing.period,
            )
        )
    )
