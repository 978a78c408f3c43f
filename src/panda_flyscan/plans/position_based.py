"""Position-based flyscan: the motor flies, PCOMP fires at N positions."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from bluesky.utils import MsgGenerator
from ophyd_async.core import (
    DetectorTrigger,
    FlyMotorInfo,
    StandardDetector,
    TriggerInfo,
)
from ophyd_async.fastcs.panda import HDFPanda, PandaPcompDirection, PcompInfo
from pydantic import model_validator

from ..devices import Capture, PandaWiring, WiringError
from ..devices._aio import wait_for_awaitable
from ._flyers import PcompFlyLogic
from .arguments import (
    Coordinate,
    Count,
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
from .triggering import detector_trigger_info

__all__ = ["PcompPoints", "PositionScanArguments", "pcomp_points", "position_scan"]

#: PCOMP positions are signed 32-bit counts; PULSES is 32-bit.
MAX_COUNTS = 2**31 - 1
MAX_PULSES = 2**32 - 1
#: Run-up the PCOMP needs to arm on the right side of START.
MIN_RUN_UP_COUNTS = 2


@dataclass(frozen=True)
class PcompPoints:
    """Where PCOMP fires, in encoder counts, and the positions that makes."""

    start_counts: int
    step_counts: int  # > 0
    num: int
    direction: PandaPcompDirection
    scale: float
    offset: float

    @property
    def counts(self) -> np.ndarray:
        sign = 1 if self.direction == PandaPcompDirection.POSITIVE else -1
        return self.start_counts + sign * self.step_counts * np.arange(self.num)

    @property
    def positions(self) -> np.ndarray:
        """The positions PCOMP fires at, in the motor's units."""
        return self.counts * self.scale + self.offset


class PositionScanArguments(PlanArguments):
    """The numbers of :func:`position_scan`: where to fly, how many points."""

    start: Coordinate
    stop: Coordinate
    num: Count
    velocity: Speed | None = None
    exposure: Seconds | None = None

    @model_validator(mode="after")
    def _is_a_flight(self) -> Self:
        if self.num < 2:
            raise PlanArgumentError(
                "num must be at least 2: a flyscan needs two points"
            )
        if self.start == self.stop:
            raise PlanArgumentError(
                f"start and stop are both {self.start}: a position-based scan flies "
                "from one to the other; use time_scan to take frames in one place"
            )
        return self


def pcomp_points(
    start: float, stop: float, num: int, scale: float, offset: float = 0.0
) -> PcompPoints:
    """``num`` equally spaced points from ``start`` to ``stop`` (motor units) as
    PCOMP parameters for an encoder with ``position = counts*scale + offset``.

    The spacing must be a whole number of counts, at least 2 (PCOMP's pulse
    needs one count high and one low); ``start`` is rounded to the nearest
    count. Raises :class:`PlanArgumentError` otherwise.
    """
    if scale == 0 or not math.isfinite(scale):
        raise PlanArgumentError(f"encoder scale is {scale}: set INENCn.VAL.SCALE")
    c0 = (start - offset) / scale
    c1 = (stop - offset) / scale
    if max(abs(c0), abs(c1)) > MAX_COUNTS:
        raise PlanArgumentError(
            f"{start}..{stop} is beyond PCOMP's 32-bit range of encoder counts"
        )
    step = (c1 - c0) / (num - 1)
    step_counts = round(abs(step))
    if step_counts < 2:
        most = int(abs(c1 - c0)) // 2 + 1
        raise PlanArgumentError(
            f"{num} points from {start} to {stop} are {abs(step):.3g} encoder counts "
            f"apart; PCOMP needs at least 2 counts between points: at most {most} "
            "points over this range"
        )
    if abs(abs(step) - step_counts) > 1e-6 * max(1.0, abs(step)):
        sign = 1.0 if stop > start else -1.0
        nearest = start + sign * step_counts * (num - 1) * abs(scale)
        hint = f" (e.g. stop={nearest:.12g})"
        raise PlanArgumentError(
            f"positions {start}..{stop} in {num} points are {abs(step):.6g} encoder "
            f"counts apart ({abs(step * scale):.6g} per point at {abs(scale):g} per "
            "count): PCOMP needs a whole number of counts; change num or stop so "
            f"(stop - start)/(num - 1) is a multiple of {abs(scale):g}{hint}"
        )
    if num > MAX_PULSES:
        raise PlanArgumentError(f"{num} points is more than PCOMP can count")
    direction = (
        PandaPcompDirection.POSITIVE if c1 > c0 else PandaPcompDirection.NEGATIVE
    )
    return PcompPoints(round(c0), step_counts, num, direction, scale, offset)


def position_scan(
    panda: HDFPanda,
    motor: Any,
    start: float,
    stop: float,
    num: int,
    *,
    velocity: float | None = None,
    exposure: float | None = None,
    detectors: Sequence[StandardDetector] = (),
    wiring: PandaWiring | None = None,
    captures: Sequence[Capture] | None = None,
    md: Mapping[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Position-based flyscan: ``num`` points from ``start`` to ``stop``.

    ``motor`` (an ophyd-async ``Motor``, or the simulator's
    :class:`~panda_flyscan.app.simulated.SimAxis`) flies from ``start`` to ``stop``
    at constant ``velocity`` (default: its current velocity), with ophyd-async
    fly motion: ``prepare(FlyMotorInfo)`` moves it to the start of its run-up,
    ``kickoff`` starts the move. The PandA's PCOMP (``wiring.pcomp``) watches
    the motor's encoder (``wiring.encoder_for(motor.name)``) and fires at each
    point, in either direction; each pulse triggers the detectors (their TTL
    outputs, from ``wiring``) and PCAP, which captures one row per point
    (``captures``, plus the encoder as ``motor.name`` and ``trigger_time``).

    ``exposure`` (default: half the time between points) is the detectors'
    live time; PCOMP pulses are that long (in counts) for level-triggered ones.

    Checked before anything moves or is armed: ``num`` below 2, ``start ==
    stop``, points closer than 2 encoder counts or not a whole number of counts
    apart, velocity above the motor's maximum, a run-up outside its limits,
    exposure + detector dead time longer than the time between points, unknown
    captures or wiring: :class:`PlanArgumentError`.

    Data: one ``primary`` stream, ``num`` rows. Returns the run uid.
    """
    args = PositionScanArguments.check(
        start=start, stop=stop, num=num, velocity=velocity, exposure=exposure
    )
    start, stop, num = args.start, args.stop, args.num
    velocity, exposure = args.velocity, args.exposure
    name = check_fly_motor(motor)
    dets = check_detectors(detectors)
    wiring, capture_list = panda_defaults(panda, wiring, captures)
    try:
        inenc = wiring.encoder_for(name)
        ttlouts = wiring.ttlouts_for(d.name for d in dets)
    except WiringError as err:
        raise PlanArgumentError(str(err)) from err
    pcomp = f"PCOMP{wiring.pcomp}"
    encoder = f"INENC{inenc}"
    check_blocks(panda, [pcomp, encoder, *(f"TTLOUT{n}" for n in ttlouts.values())])
    _, capture_list = panda_defaults(
        panda, wiring, capture_list, extra=[Capture(f"{encoder}.VAL", name)]
    )
    enc_block = panda.inenc[inenc]  # type: ignore[attr-defined]
    current_velocity, max_velocity, accl, scale, offset, units = yield from (
        wait_for_awaitable(
            asyncio.gather(
                motor.velocity.get_value(),
                motor.max_velocity.get_value(),
                motor.acceleration_time.get_value(),
                enc_block.val_scale.get_value(),
                enc_block.val_offset.get_value(),
                motor.motor_egu.get_value(),
            )
        )
    )
    speed = float(current_velocity if velocity is None else velocity)
    if speed <= 0:
        raise PlanArgumentError(f"{name} velocity is {speed}: pass velocity=")
    if speed > max_velocity:
        raise PlanArgumentError(
            f"velocity {speed:g} {units}/s is above {name}'s maximum "
            f"{max_velocity:g} {units}/s: lower the velocity (a slower scan) or "
            "use fewer, wider-spaced points"
        )
    points = pcomp_points(start, stop, num, float(scale), float(offset))
    counts_per_s = speed / abs(points.scale)
    interval = points.step_counts / counts_per_s
    if exposure is None:
        width = max(1, points.step_counts // 2)
    else:
        width = math.ceil(exposure * counts_per_s)
        if width >= points.step_counts:
            raise PlanArgumentError(
                f"exposure {exposure:g} s is not shorter than the {interval:g} s "
                f"between points at {speed:g} {units}/s: shorten the exposure or "
                "lower the velocity"
            )
    livetime = exposure if exposure is not None else width / counts_per_s
    fly_info = FlyMotorInfo(
        start_position=start, end_position=stop, time_for_move=abs(stop - start) / speed
    )
    run_up = abs(fly_info.ramp_up_start_pos(accl) - start) / abs(points.scale)
    if run_up < MIN_RUN_UP_COUNTS:
        raise PlanArgumentError(
            f"{name}'s run-up is {run_up:.2g} encoder counts (acceleration time "
            f"{accl:g} s): PCOMP needs the motor to start at least "
            f"{MIN_RUN_UP_COUNTS} counts before the first point"
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
                    f"{name} cannot fly from {start} to {stop} with its run-up and "
                    f"run-down ({err})"
                ) from err
    det_infos = yield from wait_for_awaitable(
        asyncio.gather(
            *(
                detector_trigger_info(
                    det, number=num, livetime=livetime, period=interval
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
                f"pcomp.{wiring.pcomp}.inp": f"{encoder}.VAL",
                f"pcomp.{wiring.pcomp}.pre_start": 0,
                f"pcomp.{wiring.pcomp}.relative": "Absolute",
                "pcap.enable": f"{pcomp}.ACTIVE",
                "pcap.gate": "ONE",
                "pcap.trig": f"{pcomp}.OUT",
                "pcap.trig_edge": "Rising",
                **{f"ttlout.{n}.val": f"{pcomp}.OUT" for n in ttlouts.values()},
            },
        )
    )
    motion_time = fly_info.time_for_move + accl
    pcomp_logic = PcompFlyLogic(pcomp=panda.pcomp[wiring.pcomp], duration=motion_time)
    pcomp_info = PcompInfo(
        start_position=points.start_counts,
        pulse_width=width,
        rising_edge_step=points.step_counts,
        number_of_pulses=num,
        direction=points.direction,
    )
    run_md: dict[str, Any] = {
        "plan_name": "position_scan",
        "plan_args": {
            "motor": name,
            "start": start,
            "stop": stop,
            "num": num,
            "velocity": speed,
            "exposure": livetime,
            "detectors": [d.name for d in dets],
        },
        "motors": [name],
        "detectors": [panda.name, *(d.name for d in dets)],
        "num_points": num,
        "hints": {"dimensions": [([name], "primary")]},
        "panda_flyscan": {
            "approach": "position-based",
            "pcomp": {
                "start_counts": points.start_counts,
                "step_counts": points.step_counts,
                "width_counts": width,
                "direction": points.direction.value,
            },
            "positions": {
                "first": float(points.positions[0]),
                "last": float(points.positions[-1]),
                "units": units,
            },
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
                    number_of_events=num,
                    trigger=DetectorTrigger.EXTERNAL_LEVEL,
                    exposure_timeout=interval + accl + 10.0,
                ),
                settings=settings,
                md=run_md,
                streams={"primary": [panda, *dets]},
                detectors=list(zip(dets, det_infos, strict=True)),
                # Kicked off in this order: PCOMP armed, then the motor moves.
                flyers=[
                    flyer(
                        pcomp_logic, pcomp_info, name=f"{panda.name}-{pcomp.lower()}"
                    ),
                    motor_flyer(motor, fly_info),
                ],
                # The first row comes after the run-up (ACCL), then one per point.
                max_row_gap=interval + accl,
            )
        )
    )
