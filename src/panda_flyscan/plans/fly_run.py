"""The run every flyscan plan ends in: :func:`fly_run` of a :class:`FlyRun`.

ophyd-async's flyscan sequence written once: stage, apply the PandA
settings, open the run, prepare (motor to its run-up, trigger sources
programmed, detectors and PandA armed), declare the streams, kick off in
order, collect while completing, close, unstage. On any error, abort or
Ctrl-C (twice: a flyscan has no checkpoint, so the RunEngine aborts), it
stops the trigger sources and the motor, disarms the PandA, collects what was
captured, closes the run with that (:mod:`.cleanup`), then unstages (files
closed).

While it flies, a :class:`~.health.HealthWatch` samples what the scan
depends on (the PandA's IOC and its link to the PandA, the IOC's HDF5
writer, free space, the motors, the detectors' frame counts); a fault it sees
ends the scan within seconds as a :class:`~.errors.HealthError` naming the
component, instead of a bare timeout tens of seconds later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.protocols import Flyable, Preparable
from bluesky.utils import Msg, MsgGenerator
from ophyd_async.core import (
    DetectorTrigger,
    FlyableLogic,
    Settings,
    StandardDetector,
    TriggerInfo,
)
from ophyd_async.fastcs.panda import HDFPanda, apply_panda_settings

from ..devices._aio import wait_for_awaitable
from .cleanup import stop_and_keep
from .dropped_triggers import DroppedTriggersWatch
from .errors import HealthError, PandaLinkLost, PlanArgumentError
from .health import HealthWatch
from .prechecks import (
    check_data_directories,
    check_free_space,
    panda_row_bytes,
    prime_datasets,
)

log = logging.getLogger(__name__)

__all__ = ["FLUSH_PERIOD", "FlyRun", "Flyer", "fly_run", "flyer", "motor_flyer"]

#: Collect (and so write to Tiled) at least this often during a scan: with
#: the writer's 0.2 s flushes, rows are in Tiled within about half a second.
FLUSH_PERIOD = 0.25


@dataclass
class Flyer:
    """A trigger source or motor flown in the run."""

    device: Any  # Preparable & Flyable (StandardFlyable, Motor, SimAxis)
    info: Any
    #: How to stop it on an error (the logic's stop, or the motor's).
    stop: Callable[[], Any]
    #: A PandA block (its stop is a put to the PandA's IOC), not a motor.
    panda_block: bool = True


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
    #: Drives the scan after kickoff (spec_scan's lines and points), given a
    #: ``flush`` plan stub that collects every stream and checks for dropped
    #: triggers; call it while waiting. The run then waits for the flyers'
    #: and detectors' completion as usual.
    drive: Callable[[Callable[[], MsgGenerator[None]]], MsgGenerator[None]] | None = (
        None
    )
    #: Also stopped on an error, abort or Ctrl-C (e.g. the motors ``drive``
    #: moves); each returns an awaitable.
    stop_on_error: list[Callable[[], Any]] = field(default_factory=list)
    #: Run at the very end, whatever happened (e.g. motor speeds put back).
    restore: Callable[[], MsgGenerator[None]] | None = None
    flush_period: float = FLUSH_PERIOD
    #: Motors moved by ``drive`` (motor flyers are watched anyway): a limit
    #: switch, a reported problem or a stall ends the scan (``MotorFault``).
    motors: list[Any] = field(default_factory=list)
    #: Longest expected gap between two PandA rows (the first one included),
    #: in seconds: no row for this plus a margin ends the scan
    #: (``CaptureStalled``). None: not checked (e.g. spec_scan's turnarounds).
    max_row_gap: float | None = None
    #: ``drive`` makes checkpoints a pause can resume from (spec_scan with a
    #: streamed table); until its first one, a pause still aborts. bluesky's
    #: rewind resets each stream's sequence counter to its last checkpoint,
    #: so such a run collects only just before its checkpoints (``drive``
    #: calls ``flush()`` then; ``flush(collect=False)`` while waiting only
    #: checks health) and once at the end: rows reach Tiled segment by
    #: segment, and the stop document counts every frame once.
    resumable: bool = False
    #: Told by the RunEngine of every pause and resume (bluesky's Pausable;
    #: it must be seen before anything can be paused): a resumable run's.
    pauser: Any = None


def fly_run(run: FlyRun) -> MsgGenerator[str]:
    """Stage, fly, collect and close one run; clean stop on any error."""
    panda = run.panda
    detectors = [det for det, _ in run.detectors]
    all_detectors = [panda, *detectors]
    flyer_devices = [f.device for f in run.flyers]
    stageable = [*all_detectors, *flyer_devices]
    state = {"open": False, "declared": False, "failed": False}
    dropped = DroppedTriggersWatch(
        [(d, i) for d, i in run.detectors if d not in run.late_kickoff]
    )
    #: The flyers' and detectors' complete statuses, cancelled after an error.
    completing: list[Any] = []
    watch = _health_watch(run)

    def check() -> MsgGenerator[None]:
        yield from watch.check()
        yield from dropped.check()

    def flying() -> MsgGenerator[None]:
        """Kickoff to completion, every failure seen by the watch named."""
        try:
            yield from watch.start()
            early = [d for d in all_detectors if d not in run.late_kickoff]
            yield from bps.kickoff_all(*early, wait=True)
            # Armed, no trigger yet: the detectors' counts of missed triggers now.
            yield from dropped.start()
            for flyer in run.flyers:
                yield from bps.kickoff(flyer.device, wait=True)
            yield from watch.kicked_off()
            if run.late_kickoff:
                yield from bps.kickoff_all(*run.late_kickoff, wait=True)
            if run.after_kickoff is not None:
                yield from run.after_kickoff()
            if run.drive is not None:
                yield from run.drive(
                    lambda collect=True: _flush(run, check, collect)  # type: ignore[misc]
                )
            if run.resumable:
                yield from _flush(run, check)
                yield from bps.checkpoint()
            yield from _collect_while_completing(
                run, [*flyer_devices, *all_detectors], completing, check
            )
        except HealthError:
            raise
        except Exception as exc:
            # A timeout or failed status that the watch has already explained.
            if watch.fault is not None:
                raise watch.fault from exc
            # A flyer's own HealthError (a streamed table that ran dry),
            # reported by the RunEngine as its status' failure.
            if (cause := _health_cause(exc)) is not None:
                raise cause from exc
            raise

    def body() -> MsgGenerator[str]:
        yield from bps.stage_all(*stageable)
        # Written whether or not they differ: the IOC's records can lag the
        # PandA by a poll, so comparing with them could skip a needed write.
        yield from apply_panda_settings(run.settings)
        yield from wait_for_awaitable(prime_datasets(panda, run.settings))
        uid = yield from bps.open_run(md=run.md)
        state["open"] = True
        if run.pauser is not None:
            yield from bps.trigger(run.pauser, wait=True)
        if run.resumable:
            # Nothing before the drive is replayed (it re-enables rewinding
            # with its first checkpoint): a clear_checkpoint would disable
            # every later checkpoint of the run.
            yield Msg("rewindable", None, False)
        else:
            # A flyscan without checkpoints: a pause aborts the run.
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
        yield from flying()
        # A resumable run says in its stop document how often and how long
        # it was paused (bluesky's RE.record_interruptions adds the events).
        summary = getattr(run.pauser, "summary", None)
        reason = str(summary()) if callable(summary) else None
        yield from bps.close_run(reason=reason)
        state["open"] = False
        return uid

    def on_error(exc: Exception) -> MsgGenerator[None]:
        for status in completing:
            # Nobody waits for these any more; left alone they would time out.
            task = getattr(status, "task", None)
            if task is not None and not status.done:
                task.cancel()
        state["failed"] = True
        yield from stop_and_keep(run, state, exc, watch.rows_in_file)

    def unstage() -> MsgGenerator[Any]:
        fault = watch.fault
        if isinstance(fault, PandaLinkLost) and not fault.ioc_answers:
            # Unstaging the PandA writes to its IOC, which is gone: each put
            # would wait out its timeout. The others are unstaged as usual.
            return (
                yield from bps.unstage_all(*(d for d in stageable if d is not panda))
            )
        return (yield from bps.unstage_all(*stageable))

    def cleanup() -> MsgGenerator[None]:
        steps: list[Callable[[], MsgGenerator[Any]]] = [watch.stop, unstage]
        if run.restore is not None:
            steps.append(run.restore)
        for step in steps:
            if state["failed"]:
                yield from _shielded(step)
            else:
                yield from step()

    # Before anything is staged or opened: a writer that cannot write is a
    # bad argument, not a failed run.
    yield from wait_for_awaitable(check_data_directories(panda, detectors))
    yield from wait_for_awaitable(
        check_free_space(
            panda,
            _frames(run.panda_info),
            panda_row_bytes(run.settings),
            [(det, _frames(info)) for det, info in run.detectors],
        )
    )
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
        # A resumable run collects once, at the end (see FlyRun.resumable).
        yield from _flush(run, check, collect=done or not run.resumable)


def _flush(
    run: FlyRun, check: Callable[[], MsgGenerator[None]], collect: bool = True
) -> MsgGenerator[None]:
    if collect:
        for name, streamed in run.streams.items():
            yield from bps.collect(*streamed, name=name)
    yield from check()


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
    return Flyer(
        device=motor, info=info, stop=lambda: stop(success=False), panda_block=False
    )


def _health_watch(run: FlyRun) -> HealthWatch:
    """The watch of ``run``'s dependencies: the PandA, the externally
    triggered detectors (frames against the PandA's rows), the motors."""
    frames = _frames(run.panda_info)
    return HealthWatch(
        run.panda,
        detectors=[
            (det, info.livetime + info.deadtime)
            for det, info in run.detectors
            if info.trigger != DetectorTrigger.INTERNAL and det not in run.late_kickoff
        ],
        motors=[
            *(f.device for f in run.flyers if not f.panda_block),
            *run.motors,
        ],
        frames=frames,
        max_row_gap=run.max_row_gap,
    )


def _health_cause(exc: BaseException) -> HealthError | None:
    """The HealthError a failed status (bluesky's FailedStatus) carries."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, HealthError):
            return seen
        status = seen.args[0] if seen.args else None
        inner = getattr(status, "exception", None)
        if callable(inner):
            found = inner()
            if isinstance(found, HealthError):
                return found
        seen = seen.__cause__ or seen.__context__
    return None


def _frames(info: TriggerInfo) -> int:
    """Frames (collections) a TriggerInfo asks for."""
    events = info.number_of_events
    n = events if isinstance(events, int) else sum(events)
    return n * info.collections_per_event


def _shielded(step: Callable[[], MsgGenerator[Any]]) -> MsgGenerator[None]:
    """A clean-up step after an error: a status the error abandoned (a
    flyer's ``complete``, cancelled) fails, and the RunEngine throws that into
    whatever message comes next; the step is then run once more, and a second
    failure only logged, so the error that ended the scan is the one raised."""
    for attempt in (1, 2):
        try:
            yield from step()
            return
        except Exception as exc:
            log.warning("clean-up (%s, attempt %d): %r", step.__name__, attempt, exc)
