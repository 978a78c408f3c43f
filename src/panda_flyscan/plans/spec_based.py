"""Any scanspec path as one flyscan: :func:`spec_scan`.

The path (:mod:`.scan_path`) is cut into flown lines and points; one SEQ
table (:mod:`.seq_program`) times all of it, armed once; the plan then moves
the motors line by line and point by point while the PandA and detectors
stay armed, so lines follow each other at the motors' own turnaround.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import numpy as np
from bluesky.utils import Msg, MsgGenerator
from ophyd_async.core import (
    AsyncStatus,
    DetectorTrigger,
    StandardDetector,
    TriggerInfo,
    WatchableAsyncStatus,
    WatcherUpdate,
    observe_value,
    wait_for_value,
)
from ophyd_async.fastcs.panda import HDFPanda

from ..devices import Capture, PandaWiring, WiringError
from ..devices._aio import wait_for_awaitable
from ..devices.table_stream import PandaControl, TableStream
from ._flyers import TICK, SeqFlyLogic, StreamedSeqFlyLogic, StreamedSeqInfo
from .arguments import (
    PlanArguments,
    Seconds,
    check_detectors,
    check_fly_motor,
    panda_defaults,
)
from .errors import PlanArgumentError
from .fly_run import FLUSH_PERIOD, FlyRun, fly_run, flyer
from .prechecks import check_blocks, check_panda_settings
from .scan_path import FlyLine, Point, ScanPath, scan_path
from .seq_lines import StreamedProgram, streamed_program
from .seq_program import AxisFacts, LineMotion, SeqProgram, seq_program
from .triggering import detector_trigger_info

__all__ = ["SpecScanArguments", "spec_scan"]

_LOG = logging.getLogger(__name__)


class SpecScanArguments(PlanArguments):
    """The numbers of :func:`spec_scan` beside the spec."""

    exposure: Seconds | None = None


def spec_scan(
    panda: HDFPanda,
    spec: Any,
    *,
    detectors: Sequence[StandardDetector] = (),
    wiring: PandaWiring | None = None,
    captures: Sequence[Capture] | None = None,
    md: Mapping[str, Any] | None = None,
    divisors: Mapping[str, int] | None = None,
    exposure: float | None = None,
    control: PandaControl | None = None,
) -> MsgGenerator[str]:
    """Fly any scanspec path in one run, the PandA armed once.

    ``spec`` is a scanspec ``Spec`` over ophyd-async ``Motor``\\ s with a
    duration per frame, e.g. a snake map::

        spec = Fly(0.001 @ (Line(y, 0, 1, 20) * ~Line(x, 0, 2, 500)))
        RE(spec_scan(panda, spec, detectors=[det]))

    How each part of the path runs (:mod:`.scan_path`):

    * lines inside ``Fly`` on which one axis moves: that motor flies through
      the frames' bounds at constant velocity (run-up, line, run-down, as
      ophyd-async's fly motion, with the motor record's VELO and setpoint);
      the first frame is position-triggered by the SEQ comparing the axis'
      encoder, the rest are timed; snaked lines run backwards. Axes that do
      not move in the line (an outer ``Line(y)``) step to their position
      during the turnaround, starting as soon as the previous line's frames
      are over. Motor speeds are put back at the end.
    * frames outside ``Fly`` (an outer step scan: ``Line(z) * Fly(...)``,
      or ``0.1 @ Line(x)`` alone), and paths on which two axes move at once
      (``Spiral``, a ``Zip`` of lines): point by point, the motors move and
      stop, then the SEQ times the frames.

    ``exposure`` (default: half of each frame) is OUTA's high time, centred
    in the frame. Each detector is triggered from its TTLOUT (``wiring``) on
    every frame, or on every k-th with ``divisors={name: k}`` through its
    DIV block (``DetectorWiring.divider``). The PandA captures, at the end of
    each exposure, every axis' encoder averaged over the exposure (the
    frame's midpoint, under the motor's name), ``trigger_time`` (PCAP's
    TS_TRIG: the exposure's end, as in :func:`time_scan`) and ``captures``.

    Checked before anything moves or is armed (:class:`PlanArgumentError`):
    an axis that is not a motor or has no encoder in the wiring, a speed
    above a motor's maximum, a run-up outside its limits, frames closer than
    one encoder count, a frame not longer than exposure + a detector's dead
    time, no duration, a divisor that does not divide every line, more than
    three flown axes, or more rows than one SEQ table holds.

    ``control`` (the PandA's control port, :class:`PandaControl`) streams
    the SEQ table while the scan runs (:mod:`.seq_lines`): a path of any
    length, each flown frame triggered at its own position, and the scan
    pauses and resumes (``RE.request_pause()``, Ctrl-C, a suspender) at a
    frame boundary: BITS.A (``wiring.bit``) low stops the triggers before
    the motors are stopped; on resume each segment is flown again from its
    run-up and the SEQ, still waiting for the first frame not taken, fires
    it in its place. Without it one fixed table (at most 4096 lines) runs
    the scan, and a pause aborts it.

    Data: ``primary``, one row per frame (PandA and the detectors at divisor
    1); a stream per divided detector, named after it, one row per its
    frame. The start document has the spec (``scanspec``), ``shape``,
    ``snaking`` and ``extents`` per dimension. Returns the run uid.
    """
    args = SpecScanArguments.check(exposure=exposure)
    path = scan_path(spec)
    motors = _check_axes(path)
    dets = check_detectors(detectors)
    wiring, capture_list = panda_defaults(panda, wiring, captures)
    divs = _check_divisors(path, dets, divisors or {})
    try:
        inencs = {a: wiring.encoder_for(name) for a, name in motors.items()}
        ttlouts = wiring.ttlouts_for(d.name for d in dets)
        dividers = {name: wiring.divider_for(name) for name, k in divs.items() if k > 1}
    except WiringError as err:
        raise PlanArgumentError(str(err)) from err
    seq = f"SEQ{wiring.seq}"
    check_blocks(
        panda,
        [
            seq,
            *(f"INENC{n}" for n in inencs.values()),
            *(f"TTLOUT{n}" for n in ttlouts.values()),
            *(f"DIV{n}" for n in dividers.values()),
        ],
    )
    facts = yield from wait_for_awaitable(_read_facts(panda, motors, inencs))
    streamed = control is not None
    program: SeqProgram | StreamedProgram = (
        streamed_program(path, facts, exposure=args.exposure)
        if streamed
        else seq_program(path, facts, exposure=args.exposure)
    )
    capture_list = _axis_captures(capture_list, motors, inencs)
    _, capture_list = panda_defaults(panda, wiring, capture_list)
    frame = path.shortest
    live = program.exposure(frame)
    det_infos = yield from wait_for_awaitable(
        asyncio.gather(
            *(
                detector_trigger_info(
                    det,
                    number=path.frames // divs[det.name],
                    livetime=live,
                    period=frame * divs[det.name],
                )
                for det in dets
            )
        )
    )
    wiring_values: dict[str, Any] = {
        "pcap.enable": f"{seq}.ACTIVE",
        "pcap.gate": f"{seq}.OUTA",
        "pcap.trig": f"{seq}.OUTA",
        "pcap.trig_edge": "Falling",
    }
    for pos, axis in program.pos_inputs.items():
        wiring_values[f"seq.{wiring.seq}.{pos}"] = f"INENC{inencs[axis]}.VAL"
    bit = wiring.bit.lower()
    if path.points or streamed:
        wiring_values[f"seq.{wiring.seq}.bita"] = f"BITS.OUT{wiring.bit}"
        wiring_values[f"bits.{bit}"] = 0
    for det in dets:
        k, ttl = divs[det.name], ttlouts[det.name]
        if k == 1:
            wiring_values[f"ttlout.{ttl}.val"] = f"{seq}.OUTA"
            continue
        div = dividers[det.name]
        wiring_values[f"div.{div}.enable"] = f"{seq}.ACTIVE"
        wiring_values[f"div.{div}.inp"] = f"{seq}.OUTA"
        wiring_values[f"div.{div}.divisor"] = k
        wiring_values[f"div.{div}.first_pulse"] = "OutD"
        wiring_values[f"ttlout.{ttl}.val"] = f"DIV{div}.OUTD"
    settings = yield from wait_for_awaitable(
        check_panda_settings(panda, capture_list, wiring_values)
    )
    streams: dict[str, list[StandardDetector]] = {
        "primary": [panda, *(d for d in dets if divs[d.name] == 1)]
    }
    for det in dets:
        if divs[det.name] > 1:
            streams[det.name] = [det]
    bits = getattr(panda, "bits", None)
    handshake = getattr(bits, bit, None) if path.points or streamed else None
    if (path.points or streamed) and handshake is None:
        raise PlanArgumentError(
            f"the PandA has no BITS.{wiring.bit}: a path with points, or a "
            "streamed table, needs it"
        )
    run_md = _start_metadata(
        panda, path, program, dets, divs, capture_list, wiring, motors, md
    )
    timeout = _patience(path, facts)
    if isinstance(program, StreamedProgram):
        assert control is not None
        seq_flyer = flyer(
            StreamedSeqFlyLogic(
                seq=panda.seq[wiring.seq],
                stream=TableStream(control, seq, program.chunks()),
                frame_of_line=program.frames_before_line,
                duration=path.duration,
            ),
            StreamedSeqInfo(prescale_as_us=program.prescale_ticks * TICK * 1e6),
            name=f"{panda.name}-{seq.lower()}",
        )
        # A pause may last hours: no frame timeout (the health watch
        # still sees a detector or the PandA stall while flying).
        timeout = _NO_TIMEOUT
    else:
        seq_flyer = flyer(
            SeqFlyLogic(seq=panda.seq[wiring.seq]),
            program.info(),
            name=f"{panda.name}-{seq.lower()}",
        )
    driver = _Driver(
        path,
        program.motions,
        panda,
        handshake,
        facts,
        pauser=(
            _Pauser(handshake, list(motors), control, seq, program)
            if isinstance(program, StreamedProgram) and control is not None
            else None
        ),
    )
    return (
        yield from fly_run(
            FlyRun(
                panda=panda,
                panda_info=TriggerInfo(
                    number_of_events=path.frames,
                    trigger=DetectorTrigger.EXTERNAL_LEVEL,
                    exposure_timeout=timeout,
                ),
                settings=settings,
                md=run_md,
                streams=streams,
                detectors=[
                    (d, i.model_copy(update={"exposure_timeout": timeout}))
                    for d, i in zip(dets, det_infos, strict=True)
                ],
                flyers=[seq_flyer],
                drive=driver.drive,
                stop_on_error=[
                    (lambda m=m: m.stop(success=False))  # type: ignore[misc]
                    for m in motors
                ],
                restore=driver.restore_velocities,
                motors=list(motors),
                resumable=streamed,
                pauser=driver.pauser,
            )
        )
    )


def _check_axes(path: ScanPath) -> dict[Any, str]:
    """Each axis is a flyable, movable motor: axis -> its name."""
    names: dict[Any, str] = {}
    for axis in path.axes:
        if isinstance(axis, str):
            raise PlanArgumentError(
                f"the spec's axis {axis!r} is a name: build the spec over the motors "
                f"themselves, e.g. Line(bl.motor({axis!r}), 0, 1, 11)"
            )
        name = check_fly_motor(axis)
        for method in ("set", "prepare", "kickoff", "complete", "stop"):
            if not callable(getattr(axis, method, None)):
                raise PlanArgumentError(
                    f"{name} has no {method}(): spec_scan moves and flies ophyd-async "
                    "Motors"
                )
        if getattr(axis, "user_readback", None) is None:
            raise PlanArgumentError(
                f"{name} has no user_readback signal: spec_scan follows ophyd-async "
                "Motors through their readback"
            )
        names[axis] = name
    dupes = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
    if dupes:
        raise PlanArgumentError(f"two axes are named {dupes}: name each motor apart")
    return names


def _check_divisors(
    path: ScanPath, dets: Sequence[StandardDetector], divisors: Mapping[str, int]
) -> dict[str, int]:
    names = {d.name for d in dets}
    if unknown := sorted(set(divisors) - names):
        raise PlanArgumentError(
            f"divisors name {unknown}, which are not among the detectors "
            f"{sorted(names)}"
        )
    result = {d.name: 1 for d in dets}
    for name, k in divisors.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise PlanArgumentError(
                f"divisor of {name} must be a whole number >= 1, got {k!r}"
            )
        k = int(k)
        if path.frames % k:
            raise PlanArgumentError(
                f"divisor {k} of {name} does not divide the scan's {path.frames} "
                "frames: choose a divisor of the line length"
            )
        for line in path.lines:
            if line.num % k:
                raise PlanArgumentError(
                    f"divisor {k} of {name} does not divide the {line.num} frames of "
                    f"the line at frame {line.first}: {name} would fire at different "
                    "places on each line; choose a divisor of the line length"
                )
        result[name] = k
    return result


async def _read_facts(
    panda: HDFPanda, motors: Mapping[Any, str], inencs: Mapping[Any, int]
) -> dict[Any, AxisFacts]:
    async def one(axis: Any) -> AxisFacts:
        enc = panda.inenc[inencs[axis]]  # type: ignore[attr-defined]
        (
            velo,
            vmax,
            accl,
            egu,
            llm,
            hlm,
            dllm,
            dhlm,
            scale,
            offset,
        ) = await asyncio.gather(
            axis.velocity.get_value(),
            axis.max_velocity.get_value(),
            axis.acceleration_time.get_value(),
            axis.motor_egu.get_value(),
            axis.low_limit_travel.get_value(),
            axis.high_limit_travel.get_value(),
            axis.dial_low_limit_travel.get_value(),
            axis.dial_high_limit_travel.get_value(),
            enc.val_scale.get_value(),
            enc.val_offset.get_value(),
        )
        if not scale:
            raise PlanArgumentError(
                f"INENC{inencs[axis]}.VAL.SCALE is 0: set it to {motors[axis]}'s "
                "units per encoder count"
            )
        # The motor record: dial limits both 0 means no limits.
        limits = None if dllm == 0 and dhlm == 0 else (float(llm), float(hlm))
        return AxisFacts(
            name=motors[axis],
            inenc=inencs[axis],
            scale=float(scale),
            offset=float(offset),
            units=str(egu),
            max_velocity=float(vmax),
            acceleration_time=float(accl),
            limits=limits,
            velocity=float(velo),
        )

    axes = list(motors)
    found = await asyncio.gather(*(one(a) for a in axes))
    return dict(zip(axes, found, strict=True))


def _axis_captures(
    captures: Sequence[Capture], motors: Mapping[Any, str], inencs: Mapping[Any, int]
) -> list[Capture]:
    """``captures`` with each axis' encoder captured as ``Mean`` under the
    motor's name (replacing any other capture of that field or name)."""
    wanted = [
        Capture(f"INENC{inencs[a]}.VAL", name, "Mean") for a, name in motors.items()
    ]
    fields = {c.ref for c in wanted}
    names = {c.dataset for c in wanted}
    kept = [c for c in captures if c.ref not in fields and c.dataset not in names]
    return [*wanted, *kept]


def _patience(path: ScanPath, facts: Mapping[Any, AxisFacts]) -> float:
    """Longest a detector may wait between frames: a turnaround or a move."""
    accl = max(f.acceleration_time for f in facts.values())
    return path.longest + 2 * accl + 60.0


def _start_metadata(
    panda: HDFPanda,
    path: ScanPath,
    program: SeqProgram | StreamedProgram,
    dets: Sequence[StandardDetector],
    divs: Mapping[str, int],
    captures: Sequence[Capture],
    wiring: PandaWiring,
    motors: Mapping[Any, str],
    md: Mapping[str, Any] | None,
) -> dict[str, Any]:
    names = [motors[a] for a in path.axes]
    serialised = path.spec.serialize()
    return {
        "plan_name": "spec_scan",
        "plan_args": {
            "spec": serialised,
            "detectors": [d.name for d in dets],
            "divisors": dict(divs),
            "exposure": program.exposure(path.shortest),
        },
        "scanspec": serialised,
        "motors": names,
        "detectors": [panda.name, *(d.name for d in dets)],
        "num_points": path.frames,
        "num_intervals": path.frames - 1,
        # bluesky's grid_scan conventions, so consumers can reshape.
        "shape": list(path.shape),
        "snaking": list(path.snaking),
        "extents": [list(path.ranges[a]) for a in path.axes],
        "hints": {"dimensions": [([n], "primary") for n in names]},
        "panda_flyscan": {
            "approach": "spec",
            "lines": len(path.lines),
            "points": len(path.points),
            "seq_rows": program.rows,
            "seq_table": "streamed"
            if isinstance(program, StreamedProgram)
            else "fixed",
            "prescale_ticks": program.prescale_ticks,
            "pos_inputs": {
                pos.upper(): motors[a] for pos, a in program.pos_inputs.items()
            },
            "streams": {
                d.name: ("primary" if divs[d.name] == 1 else d.name) for d in dets
            },
            "divisors": dict(divs),
            "captures": {c.dataset: f"{c.ref} {c.mode}" for c in captures},
            "wiring": wiring.as_metadata(),
        },
        **(md or {}),
    }


class _Driver:
    """Moves the motors through the path while the SEQ times the frames.

    Per line, only what the motor record needs: the flown axis at its
    maximum speed to the run-up (skipped when already there: a snake's next
    run-up is the last run-down), its VELO to the line's speed, a move to
    the run-down end. Everything ophyd-async's ``Motor.prepare``/``kickoff``
    would check again on every line (limits, speeds, nine reads, a sleep for
    the run-up) was checked once before the run, and the SEQ, not the plan,
    waits for the run-up. Stepped axes move at their own VELO through their
    setpoints; after a line's last frame (the flown axis' readback past the
    line's end, or PCAP's rows up to its last frame) the next segment's
    stepped axes start, during the run-down:
    a turnaround costs the longer of the two moves, not their sum.
    """

    def __init__(
        self,
        path: ScanPath,
        motions: Sequence[LineMotion],
        panda: HDFPanda,
        handshake: Any,
        facts: Mapping[Any, AxisFacts],
        pauser: _Pauser | None = None,
    ) -> None:
        self.path, self.panda, self.handshake = path, panda, handshake
        self.facts = facts
        self.motions = {m.line.first: m for m in motions}
        #: Set when the scan can pause: each segment is then a checkpoint,
        #: and its messages, replayed on resume, must not rely on where the
        #: motors were left (every move is sent, none skipped).
        self.pauser = pauser
        #: Each axis' own VELO (for steps, and put back at the end).
        self.normal = {a: f.velocity for a, f in facts.items()}
        #: Where each axis was last sent (None: unknown), and its VELO.
        self.at: dict[Any, float] = {}
        self.velo: dict[Any, float] = dict(self.normal)
        #: When the first segment started (host time).
        self.started: float | None = None

    def drive(self, flush: Any) -> MsgGenerator[None]:
        """Plan stub: every segment in order (``flush`` collects)."""
        segments = self.path.segments
        self.started = time.time()
        if self.pauser is not None:
            # From here on each segment can be replayed (fly_run turned
            # rewinding off until now).
            self.pauser.flying = True
            self.pauser.started = self.started
            self.pauser.segments = len(segments)
            yield Msg("rewindable", None, True)
        for index, segment in enumerate(segments):
            group = f"spec-segment-{index}"
            if self.pauser is not None:
                self.pauser.segment = index
                # Rows so far to Tiled, then the checkpoint (FlyRun.resumable).
                yield from flush()
                yield from bps.checkpoint()
                self.at.clear()
            following = segments[index + 1] if index + 1 < len(segments) else None
            if isinstance(segment, FlyLine):
                yield from self._fly(segment, group, following, flush)
            else:
                assert isinstance(segment, Point)
                yield from self._point(segment, group, flush)

    def _elapsed(self) -> float:
        """Seconds flown since the first segment, pauses left out."""
        if self.pauser is not None:
            return self.pauser.flying_time()
        return time.time() - self.started if self.started is not None else 0.0

    def restore_velocities(self) -> MsgGenerator[None]:
        """Plan stub: each axis' VELO back to what it was before the scan."""
        for axis, velocity in self.normal.items():
            if self.velo.get(axis) != velocity:
                yield from bps.abs_set(axis.velocity, velocity, wait=True)
                self.velo[axis] = velocity

    def _fly(
        self, line: FlyLine, group: str, following: Any, flush: Any
    ) -> MsgGenerator[None]:
        if self.pauser is not None:
            flush = _checks_only(flush)
        axis: Any = line.axis
        motion = self.motions[line.first]
        here = self.at.get(axis)
        facts = self.facts[axis]
        # "There" to a quarter of a count: a snake's run-up is the run-down.
        if here is None or abs(here - motion.run_up) > abs(facts.scale) / 4:
            yield from self._velocity(axis, facts.max_velocity)
            yield from bps.abs_set(axis.user_setpoint, motion.run_up, group=group)
            self.at[axis] = motion.run_up
        yield from self._step_to(line.fixed, group)
        yield from bps.wait(group=group)
        if self.pauser is not None:
            # On the run-up side: the gate lines may pass.
            yield from bps.abs_set(self.handshake, 1, wait=True)
        yield from self._velocity(axis, motion.velocity)
        # The put completes when the motor does: longer than the signal's
        # default timeout for a line of over ~10 s.
        yield from bps.abs_set(
            axis.user_setpoint,
            motion.run_down,
            group=group,
            timeout=line.time_for_move + 2 * _ACCL_BOUND,
        )
        self.at[axis] = motion.run_down
        # Until the line's frames are over (the progress bar shows them).
        passed = f"{group}-passed"
        bound = (
            line.time_for_move + 2 * _ACCL_BOUND if self.pauser is None else _NO_TIMEOUT
        )
        watch = _LineDone(self.panda, line, bound, self.path, self._elapsed)
        yield from bps.trigger(watch, group=passed)
        yield from _wait_flushing(passed, flush)
        if self.pauser is not None:
            # The line's frames are taken: BITS.A low, so through the
            # turnaround the SEQ waits at the next line's first gate (a
            # pause there stops at once), until that line's run-up is done.
            yield from bps.abs_set(self.handshake, 0, wait=True)
        ahead = self._steps_of(following, skip=axis)
        if ahead:
            # In the next segment's group: it waits for them, and this axis'
            # repositioning overlaps their moves.
            index = self.path.segments.index(following)
            yield from self._step_to(ahead, f"spec-segment-{index}")
        yield from _wait_flushing(group, flush)

    def _point(self, point: Point, group: str, flush: Any) -> MsgGenerator[None]:
        if self.pauser is not None:
            flush = _checks_only(flush)
        yield from self._step_to(point.positions, group)
        yield from bps.wait(group=group)
        # The SEQ waits for BITA low then high: lower it, raise it.
        yield from bps.abs_set(self.handshake, 0, wait=True)
        yield from bps.abs_set(self.handshake, 1, wait=True)
        target = point.first + point.num
        # Rows reach the IOC's file within a data flush; then move on.
        patience = point.num * point.duration + 30.0
        captured = self.panda.data.num_captured
        yield from bps.wait_for(
            [lambda: wait_for_value(captured, lambda n: n >= target, timeout=patience)]
        )
        yield from flush()

    def _velocity(self, axis: Any, velocity: float) -> MsgGenerator[None]:
        if self.velo.get(axis) != velocity or self.pauser is not None:
            yield from bps.abs_set(axis.velocity, velocity, wait=True)
            self.velo[axis] = velocity

    def _step_to(
        self, positions: Mapping[Any, float], group: str
    ) -> MsgGenerator[None]:
        """Move the axes not already at their positions, at their own VELO."""
        for axis, position in positions.items():
            if self.at.get(axis) != position:
                yield from self._velocity(axis, self.normal[axis])
                yield from bps.abs_set(axis.user_setpoint, position, group=group)
                self.at[axis] = position

    def _steps_of(self, segment: Any, skip: Any) -> dict[Any, float]:
        """What ``segment`` will step (other than ``skip``, still flying)."""
        if segment is None:
            return {}
        wanted = segment.fixed if isinstance(segment, FlyLine) else segment.positions
        return {
            a: p for a, p in wanted.items() if a is not skip and self.at.get(a) != p
        }


#: Longer than any acceleration time, for the bound on a line's wait.
_ACCL_BOUND = 30.0
#: "No timeout" for a scan that may be paused for hours (ten days).
_NO_TIMEOUT = 864_000.0
#: Between two reads of the SEQ's state while pausing (s).
_POLL = 0.002


class _Pauser:
    """What a pausable spec_scan does when the RunEngine pauses: BITS.A low
    first, then, once the SEQ is between frames (the frame in progress, and
    one whose gate had already opened, fired at speed), the motors stopped
    (they decelerate with no trigger). Resuming needs nothing here: the
    RunEngine replays the segment from its checkpoint, which runs the motors
    up again and raises BITS.A."""

    parent = None

    def __init__(
        self,
        handshake: Any,
        motors: Sequence[Any],
        control: PandaControl,
        seq: str,
        program: StreamedProgram,
    ) -> None:
        self.name = "spec-scan-pauser"
        self._handshake, self._motors = handshake, list(motors)
        self._control, self._seq, self._program = control, seq, program
        #: Host times of each pause and resume (for the run's metadata).
        self.pauses: list[float] = []
        self.resumes: list[float] = []
        #: Set by the driver when the first segment starts: a pause before
        #: that (arming, kickoff) cannot be replayed.
        self.flying = False
        #: When it started (host time).
        self.started: float | None = None
        self._early = False
        #: Segments of the path, and the one being driven (set by the driver).
        self.segments = 0
        self.segment = 0
        #: How long the SEQ may take to get between frames: the two longest
        #: frames (the one in progress, one whose gate is open, reached from
        #: its stopping distance), and margin.
        self._patience = (
            2 * program.path.longest
            + max((f.acceleration_time for f in program.facts.values()), default=0)
            + 1.0
        )

    def trigger(self) -> AsyncStatus:
        async def nothing() -> None:
            return None

        return AsyncStatus(nothing())

    async def pause(self) -> None:
        self.pauses.append(time.time())
        if not self.flying:
            self._early = True
            return
        await self._handshake.set(0)
        await self._between_frames()
        await asyncio.gather(
            *(m.stop(success=True) for m in self._motors), return_exceptions=True
        )

    async def _between_frames(self) -> None:
        """Until stopping the motors fires no frame while they decelerate
        (polled: the PandA announces nothing): the SEQ is between frames, or
        it waits for a frame the flown axis is too far from to reach as it
        stops. At most :attr:`_patience` (then say so, and stop)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._patience
        state = line = "?"
        program = self._program
        while loop.time() < deadline:
            # TABLE_LINE before and after STATE: the same line, or read again.
            line, state, again = [
                await self._control.get(f"{self._seq}.{field}")
                for field in ("TABLE_LINE", "STATE", "TABLE_LINE")
            ]
            if line == again:
                at = program.line_of(int(line), self.segment)
                if program.between_frames(state, at):
                    return
                awaited = program.awaited_trigger(state, at)
                if awaited is not None and awaited.stoppable(
                    await awaited.axis.user_readback.get_value()
                ):
                    return
            await asyncio.sleep(_POLL)
        _LOG.warning(
            "pausing: %s still %s at table line %s after %.1f s; the motors are "
            "stopped now (a frame fired while they decelerate is off its place)",
            self._seq,
            state,
            line,
            self._patience,
        )

    def flying_time(self) -> float:
        """Seconds since the first segment started, less those paused."""
        if self.started is None:
            return 0.0
        now = time.time()
        paused = sum(
            (resume if resume is not None else now) - pause
            for pause, resume in zip(self.pauses, [*self.resumes, None], strict=False)
            if pause >= self.started
        )
        return now - self.started - paused

    def summary(self) -> str:
        """For the stop document: pauses, time paused, segments."""
        paused = sum(b - a for a, b in zip(self.pauses, self.resumes, strict=False))
        return (
            f"paused {len(self.resumes)} times, {paused:.1f} s in all; "
            f"{self.segments} segments"
        )

    async def resume(self) -> None:
        if self._early:
            raise RuntimeError(
                "this flyscan was paused while it was being armed, before its "
                "first segment: it cannot resume from there. RE.abort() (or "
                "RE.stop()) closes the run with nothing lost, then run the plan "
                "again"
            )
        self.resumes.append(time.time())


class _LineDone:
    """Triggered: done once a line's frames are over, by whichever says so
    first: PCAP's row count in the IOC's file reaching the line's last frame
    (a few ms behind), or the flown motor's readback past the line's end (the
    motor record's poll behind: up to 50 ms on the simulated one, 100 ms is
    common). Either alone suffices; both are bounded by ``timeout``.

    Its status is watchable: the scan's frames captured of all it plans, for
    bluesky's progress bar (``install_progress_bar``). The count carries on
    across pauses, and the time elapsed leaves them out."""

    parent = None

    def __init__(
        self,
        panda: HDFPanda,
        line: FlyLine,
        timeout: float,
        path: ScanPath,
        elapsed: Callable[[], float],
    ) -> None:
        axis: Any = line.axis
        self.name = f"{axis.name}-line-done"
        self._readback = axis.user_readback
        self._captured = panda.data.num_captured
        self._line, self._timeout = line, timeout
        self._frames, self._duration = path.frames, path.duration
        self._elapsed = elapsed

    def trigger(self) -> WatchableAsyncStatus[int]:
        return WatchableAsyncStatus(self._progress(), name=self.name)

    async def _progress(self) -> AsyncIterator[WatcherUpdate[int]]:
        line = self._line
        rows = line.first + line.num

        def past(value: float) -> bool:
            return (value - line.end) * line.direction >= 0

        passed = AsyncStatus(wait_for_value(self._readback, past, None))
        try:
            async with asyncio.timeout(self._timeout):
                async for captured in observe_value(self._captured, done_status=passed):
                    yield self._update(int(captured))
                    if captured >= rows:
                        return
        except TimeoutError as exc:
            raise TimeoutError(
                f"the line at frame {line.first} did not end within {self._timeout:g} s"
            ) from exc
        finally:
            if not passed.done:
                passed.task.cancel()

    def _update(self, captured: int) -> WatcherUpdate[int]:
        left = max(self._frames - captured, 0) / self._frames
        return WatcherUpdate(
            current=captured,
            initial=0,
            target=self._frames,
            name="frames",
            unit="frames",
            time_elapsed=self._elapsed(),
            time_remaining=left * self._duration,
        )


def _checks_only(flush: Any) -> Any:
    """``flush`` without its collects (health checks only)."""
    return lambda: flush(collect=False)


def _wait_flushing(
    group: str, flush: Any, period: float = FLUSH_PERIOD
) -> MsgGenerator[None]:
    while not (
        yield from bps.wait(group=group, timeout=period, error_on_timeout=False)
    ):
        yield from flush()
