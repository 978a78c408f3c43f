"""What every flyscan plan shares: argument errors, detector checks, the run.

The run (:func:`fly_run`) is ophyd-async's flyscan sequence written once:
stage, apply the PandA settings, open the run, prepare (motor to its run-up,
trigger sources programmed, detectors and PandA armed), declare the streams,
kick off in order, collect while completing, close, unstage. On any error,
abort or Ctrl-C (twice: a flyscan has no checkpoint, so the RunEngine aborts),
it stops the trigger sources and the motor, disarms the PandA, collects what
was captured, closes the run with that, then unstages (files closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.protocols import Flyable, Preparable
from bluesky.utils import FailedPause, MsgGenerator, RequestAbort, RequestStop
from ophyd_async.core import (
    DetectorTrigger,
    FlyableLogic,
    Settings,
    StandardDetector,
    TriggerInfo,
    set_and_wait_for_other_value,
    wait_for_value,
)
from ophyd_async.fastcs.panda import HDFPanda, apply_panda_settings

from ..devices import (
    Capture,
    CaptureError,
    FlyscanPanda,
    PandaWiring,
    dropped_triggers_signal,
)
from ..devices._aio import wait_for_awaitable
from ..devices.capture import capture_settings, check_captures, parse_field

__all__ = ["TS_TRIG", "DroppedTriggersError", "PlanArgumentError"]

#: The timestamp every plan captures (added if not declared).
TS_TRIG = Capture("PCAP.TS_TRIG", "trigger_time")
#: Collect (and so write to Tiled) at least this often during a scan.
FLUSH_PERIOD = 0.5


class PlanArgumentError(ValueError):
    """A plan argument that cannot work; raised before anything is armed."""


class DroppedTriggersError(RuntimeError):
    """A detector reported triggers it missed: its frames no longer line up
    one-to-one with the PandA's rows, so the scan was stopped (the run keeps
    what was captured)."""


# -- argument checks ---------------------------------------------------------------


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PlanArgumentError(f"{name} must be a whole number, got {value!r}")
    if value < 1:
        raise PlanArgumentError(f"{name} must be at least 1, got {value}")
    return int(value)


def positive_float(name: str, value: Any, unit: str = "s") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PlanArgumentError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise PlanArgumentError(f"{name} must be positive, got {value} {unit}")
    return float(value)


def finite_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PlanArgumentError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise PlanArgumentError(f"{name} must be finite, got {value}")
    return float(value)


def panda_defaults(
    panda: HDFPanda,
    wiring: PandaWiring | None,
    captures: Sequence[Capture] | None,
    extra: Sequence[Capture] = (),
) -> tuple[PandaWiring, list[Capture]]:
    """The wiring and captures to use: given, else the FlyscanPanda's, plus
    TS_TRIG and ``extra`` when their fields are not captured already."""
    if not isinstance(panda, HDFPanda):
        raise PlanArgumentError(f"panda must be an ophyd-async HDFPanda, got {panda!r}")
    if wiring is None:
        wiring = panda.wiring if isinstance(panda, FlyscanPanda) else PandaWiring()
    if captures is None:
        captures = panda.captures if isinstance(panda, FlyscanPanda) else ()
    result = list(captures)
    try:
        fields = {c.ref for c in result}
        names = {c.dataset for c in result}
        for capture in (TS_TRIG, *extra):
            if capture.ref not in fields and capture.dataset not in names:
                result.append(capture)
        check_captures(result)
    except CaptureError as err:
        raise PlanArgumentError(str(err)) from err
    return wiring, result


def check_detectors(detectors: Sequence[Any]) -> list[StandardDetector]:
    """The detectors, checked: named ophyd-async StandardDetectors, no repeats."""
    dets = list(detectors)
    for det in dets:
        if not isinstance(det, StandardDetector):
            raise PlanArgumentError(
                f"{det!r} is not an ophyd-async StandardDetector; only those can join "
                "a flyscan"
            )
        if not det.name:
            raise PlanArgumentError(f"{det!r} has no name: name it (init_devices)")
    names = [d.name for d in dets]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise PlanArgumentError(f"detector(s) {dupes} given twice")
    return dets


def check_fly_motor(motor: Any) -> str:
    """The motor's name, after checking it has what the plans use."""
    name = getattr(motor, "name", "")
    if not name:
        raise PlanArgumentError(f"{motor!r} has no name: name it (init_devices)")
    for signal in ("velocity", "max_velocity", "acceleration_time", "motor_egu"):
        if getattr(motor, signal, None) is None:
            raise PlanArgumentError(
                f"{name} has no {signal} signal: flying needs an ophyd-async Motor "
                "(or a device with the same signals, e.g. SimAxis)"
            )
    return name


# -- device checks (reads only) -----------------------------------------------------


async def check_panda_settings(
    panda: HDFPanda, captures: Sequence[Capture], wiring_values: Mapping[str, Any]
) -> Settings[HDFPanda]:
    """The capture Settings plus the plan's wiring (``"pcap.trig": "SEQ1.OUTA"``
    style paths), checked against the PandA; reads only."""
    try:
        settings = await capture_settings(panda, captures)
    except CaptureError as err:
        raise PlanArgumentError(str(err)) from err
    for path, value in wiring_values.items():
        signal: Any = panda
        for part in path.split("."):
            signal = (
                signal[int(part)] if part.isdigit() else getattr(signal, part, None)
            )
            if signal is None:
                raise PlanArgumentError(
                    f"the PandA has no {path.upper()} (the wiring names a block this "
                    "PandA does not have)"
                )
        settings[signal] = value
    return settings


def check_blocks(panda: HDFPanda, blocks: Sequence[str]) -> None:
    """Raise unless the PandA has each ``"SEQ1"``-style block."""
    for block in blocks:
        ref = parse_field(f"{block}.X")
        vector = getattr(panda, ref.block.lower(), None)
        if vector is None or ref.number is None or ref.number not in vector:
            raise PlanArgumentError(
                f"the wiring uses {block}, which this PandA does not have"
            )


async def check_data_directories(
    panda: HDFPanda, detectors: Sequence[StandardDetector]
) -> None:
    """Ask each writer (the PandA's IOC, each areaDetector HDF5 plugin) whether
    it can write where its path provider points, as the writer's host sees it.

    The same question ophyd-async asks in ``prepare``, asked before the run
    opens: a missing or read-only directory is then a
    :class:`PlanArgumentError` with no run, no file and nothing armed. Only
    path PVs are written; ``prepare`` sets them again. Writers this does not
    recognise are left to ``prepare``.
    """
    checks = []
    provider = getattr(panda, "path_provider", None)
    if provider is not None:
        checks.append(_check_panda_directory(panda, provider))
    for det in detectors:
        for logic in getattr(det, "_data_logics", ()):
            writer = getattr(logic, "writer", None)
            provider = getattr(logic, "path_provider", None)
            if provider is not None and _is_ad_file_writer(writer):
                checks.append(_check_ad_directory(det.name, writer, provider))
    problems = [p for p in await asyncio.gather(*checks) if p]
    if problems:
        raise PlanArgumentError(
            "; ".join(problems) + ": create the directory (writable by the IOC's "
            "user) or point the path provider somewhere else"
        )


def _writable_ancestor(info: Any) -> Any:
    """The directory that must already exist: the writers create up to
    ``-create_dir_depth`` levels below it."""
    path = info.directory_path
    depth = info.create_dir_depth
    if depth < 0:
        return path.parents[min(-depth, len(path.parents)) - 1]
    return path


def _is_ad_file_writer(writer: Any) -> bool:
    return all(
        hasattr(writer, name)
        for name in ("file_path", "file_path_exists", "create_directory")
    )


async def _check_panda_directory(panda: HDFPanda, provider: Any) -> str | None:
    directory = _writable_ancestor(provider(panda.name))
    await panda.data.create_directory.set(0)
    await panda.data.hdf_directory.set(str(directory))
    if await panda.data.directory_exists.get_value():
        return None
    return f"the PandA's IOC cannot write to {directory} (missing or not writable)"


async def _check_ad_directory(name: str, writer: Any, provider: Any) -> str | None:
    directory = _writable_ancestor(provider(name))
    await writer.create_directory.set(0)
    await writer.file_path.set(f"{directory}/")
    if await writer.file_path_exists.get_value():
        return None
    return f"detector {name} cannot write to {directory} (missing or not writable)"


async def detector_trigger_info(
    det: StandardDetector,
    *,
    number: int,
    livetime: float,
    period: float,
    internal: bool = False,
    level_ok: bool = True,
) -> TriggerInfo:
    """How to prepare ``det``; raise if it cannot run at this timing."""
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


# -- the run ------------------------------------------------------------------------


@dataclass
class Flyer:
    """A trigger source or motor flown in the run."""

    device: Any  # Preparable & Flyable (StandardFlyable, Motor, SimAxis)
    info: Any
    #: How to stop it on an error (the logic's stop, or the motor's).
    stop: Callable[[], Any]


@dataclass
class FlyRun:
    """Everything :func:`fly_run` needs; plans fill it after validating."""

    panda: HDFPanda
    panda_info: TriggerInfo
    settings: Settings[HDFPanda]
    md: dict[str, Any]
    #: Stream name -> devices collected into it.
    streams: dict[str, list[StandardDetector]]
    #: Detectors (not the PandA) and how to prepare each.
    detectors: list[tuple[StandardDetector, TriggerInfo]] = field(default_factory=list)
    #: Prepared before the detectors, kicked off in this order after them.
    flyers: list[Flyer] = field(default_factory=list)
    #: Detectors kicked off after the flyers (free-running, internally triggered).
    late_kickoff: list[StandardDetector] = field(default_factory=list)
    #: Called after the flyers' kickoff; may yield messages (asynchronous plan).
    after_kickoff: Callable[[], MsgGenerator[None]] | None = None
    flush_period: float = FLUSH_PERIOD


class _DroppedTriggersWatch:
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
        if self._watched:
            self._baseline = yield from wait_for_awaitable(self._counts())

    def check(self) -> MsgGenerator[None]:
        if not self._watched:
            return
        counts = yield from wait_for_awaitable(self._counts())
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


def _exit_status(exc: BaseException) -> str:
    if isinstance(exc, RequestStop):
        return "success"
    if isinstance(exc, (RequestAbort, FailedPause)):
        return "abort"
    return "fail"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FailedPause):
        return "paused (Ctrl-C twice): a flyscan cannot resume, so it was aborted"
    if isinstance(exc, RequestAbort):
        return "aborted"
    return repr(exc)


def fly_run(run: FlyRun) -> MsgGenerator[str]:
    """Stage, fly, collect and close one run; clean stop on any error."""
    panda = run.panda
    detectors = [det for det, _ in run.detectors]
    all_detectors = [panda, *detectors]
    flyer_devices = [f.device for f in run.flyers]
    stageable = [*all_detectors, *flyer_devices]
    state = {"open": False, "declared": False}
    dropped = _DroppedTriggersWatch(
        [(d, i) for d, i in run.detectors if d not in run.late_kickoff]
    )
    #: The flyers' and detectors' complete statuses, cancelled after an error.
    completing: list[Any] = []

    def body() -> MsgGenerator[str]:
        yield from bps.stage_all(*stageable)
        # Written whether or not they differ: the IOC's records can lag the
        # PandA by a poll, so comparing with them could skip a needed write.
        yield from apply_panda_settings(run.settings)
        uid = yield from bps.open_run(md=run.md)
        state["open"] = True
        # A flyscan cannot be rewound: a pause (Ctrl-C twice) aborts the run.
        yield from bps.clear_checkpoint()
        group = "fly-prepare"
        for flyer in run.flyers:
            yield from bps.prepare(flyer.device, flyer.info, group=group)
        for det, info in run.detectors:
            yield from bps.prepare(det, info, group=group)
        yield from bps.wait(group=group)
        # The PandA last: arming opens its file just before the triggers start.
        yield from bps.prepare(panda, run.panda_info, wait=True)
        for name, devices in run.streams.items():
            yield from bps.declare_stream(*devices, name=name, collect=True)
        state["declared"] = True
        early = [d for d in all_detectors if d not in run.late_kickoff]
        yield from bps.kickoff_all(*early, wait=True)
        # Armed, no trigger yet: the detectors' counts of missed triggers now.
        yield from dropped.start()
        for flyer in run.flyers:
            yield from bps.kickoff(flyer.device, wait=True)
        if run.late_kickoff:
            yield from bps.kickoff_all(*run.late_kickoff, wait=True)
        if run.after_kickoff is not None:
            yield from run.after_kickoff()
        yield from _collect_while_completing(
            run, [*flyer_devices, *all_detectors], completing, dropped.check
        )
        yield from bps.close_run()
        state["open"] = False
        return uid

    def on_error(exc: Exception) -> MsgGenerator[None]:
        for status in completing:
            # Nobody waits for these any more; left alone they would time out.
            task = getattr(status, "task", None)
            if task is not None and not status.done:
                task.cancel()
        yield from _stop_and_keep(run, state, _exit_status(exc), _reason(exc))

    def cleanup() -> MsgGenerator[None]:
        yield from bps.unstage_all(*stageable)

    # Before anything is staged or opened: a writer that cannot write is a
    # bad argument, not a failed run.
    yield from wait_for_awaitable(check_data_directories(panda, detectors))
    return (
        yield from _contingency(body, on_error, cleanup)  # type: ignore[misc]
    )


def _contingency(
    body: Callable[[], MsgGenerator[str]],
    on_error: Callable[[Exception], MsgGenerator[None]],
    cleanup: Callable[[], MsgGenerator[None]],
) -> MsgGenerator[str]:
    """try/except/finally for plans (bluesky's contingency_wrapper, typed)."""
    from bluesky.preprocessors import contingency_wrapper

    return (
        yield from contingency_wrapper(
            body(), except_plan=on_error, final_plan=cleanup, auto_raise=True
        )
    )


def _collect_while_completing(
    run: FlyRun,
    devices: list[Any],
    statuses: list[Any],
    check: Callable[[], MsgGenerator[None]],
) -> MsgGenerator[None]:
    """bluesky's collect_while_completing, for one or several named streams;
    the complete statuses are appended to ``statuses``; ``check`` runs after
    each collect (and may raise to stop the scan)."""
    group = "fly-complete"
    for device in devices:
        statuses.append((yield from bps.complete(device, group=group, wait=False)))
    done = False
    while not done:
        done = yield from bps.wait(
            group=group, timeout=run.flush_period, error_on_timeout=False
        )
        for name, streamed in run.streams.items():
            yield from bps.collect(*streamed, name=name)
        yield from check()


def _stop_and_keep(
    run: FlyRun, state: dict[str, bool], exit_status: str, reason: str
) -> MsgGenerator[None]:
    """After an error: stop triggers and motion, disarm, keep what was captured.

    Every step is bounded and shielded: statuses abandoned by the error (the
    flyers' ``complete``) may fail while we clean up, and the RunEngine
    reports that at our next message; clean-up goes on regardless.
    """
    steps: list[Callable[[], MsgGenerator[Any]]] = [
        *(
            (lambda f=f: wait_for_awaitable(_quietly(f.stop())))  # type: ignore[misc]
            for f in run.flyers
        ),
        lambda: wait_for_awaitable(_quietly(_disarm_and_drain(run.panda))),
    ]
    if state["declared"]:
        steps += [
            (lambda n=name, d=devices: bps.collect(*d, name=n))  # type: ignore[misc]
            for name, devices in run.streams.items()
        ]
    for step in steps:
        with contextlib.suppress(Exception):
            yield from step()
    for _ in range(3):
        if not state["open"]:
            break
        with contextlib.suppress(Exception):
            yield from bps.close_run(exit_status=exit_status, reason=reason)
            state["open"] = False


async def _disarm_and_drain(panda: HDFPanda, timeout: float = 5.0) -> None:
    """Disarm PCAP, then wait until the IOC has written every row it received.

    PCAP's last rows reach the IOC after it reads ACTIVE low; PandABlocks-ioc
    says "Finished capture" when the PandA's end-of-data arrives, and
    NUM_CAPTURED (rows in the file) then catches up with NUM_RECEIVED.
    """
    await set_and_wait_for_other_value(
        panda.pcap.arm, False, panda.pcap.active, False, timeout=timeout
    )
    status = getattr(panda.data, "status", None)
    received = getattr(panda.data, "num_received", None)
    if status is None or received is None:  # an IOC without these records
        return
    await wait_for_value(
        status, lambda s: str(s).startswith("Finished capture"), timeout=timeout
    )
    rows = await received.get_value()
    await wait_for_value(panda.data.num_captured, lambda n: n >= rows, timeout=timeout)


async def _quietly(awaitable: Any) -> None:
    """Await, with a bound, swallowing errors: clean-up must not hang or mask."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(awaitable, timeout=10)


def flyer(logic: FlyableLogic, info: Any, name: str) -> Flyer:
    """A PandA block's flyable logic as a :class:`Flyer`."""
    return Flyer(device=logic.with_device(name=name), info=info, stop=logic.stop)


def motor_flyer(motor: Any, info: Any) -> Flyer:
    """A motor (ophyd-async ``Motor`` or :class:`SimAxis`) as a :class:`Flyer`."""
    if not isinstance(motor, Preparable) or not isinstance(motor, Flyable):
        raise PlanArgumentError(f"{motor!r} cannot fly (no prepare/kickoff/complete)")
    stop = getattr(motor, "stop", None)
    if stop is None:
        raise PlanArgumentError(f"{motor!r} cannot be stopped (no stop())")
    return Flyer(device=motor, info=info, stop=lambda: stop(success=False))
