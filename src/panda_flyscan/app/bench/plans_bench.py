"""Flyscan efficiency benchmark: the time-based plan versus a step scan.

The functions here are what ``panda-flyscan bench`` measures figures 1, 2 and
5 with (see :mod:`~.measure_scans`); run as a script it measures just those::

    .venv/bin/python -m panda_flyscan.app.bench.plans_bench \\
        [--frames 1000 10000] [--repeats 3] [--period 1e-3]

Starts the simulated beamline (the simulated PandA and the real
PandABlocks-ioc) and the bundled Tiled service, with a RunEngine writing
every run into Tiled through the package's DurableTiledWriter. For each N:

* flyscan: ``time_scan(panda, N, period)``; efficiency = wall time of the
  whole plan (the ``RE(...)`` call, from staging to the run being in Tiled,
  which the writer waits for at the stop document) / (N x period). 1.0 would
  be no overhead at all. The data read back from Tiled are checked: N rows,
  TRIGGER_TIME exactly one period apart.

The 1-D comparison (:func:`line_fly`, :func:`line_step`), at a smaller N:

* step scan: ``bp.scan([det], x, start, stop, N)``, the scan a user would
  otherwise run: x moves and stops at each point, then the detector is
  triggered and read, each point an Event written into Tiled;
* flyscan over the same points at the same period:
  ``spec_scan(panda, Fly(period @ Line(x, start, stop, N)), detectors=[det])``;
  both as wall time / (N x period).

From the same flyscans: the data-available latency (the stop document to
the last frame readable through Tiled) and prepare-to-first-trigger (the
``RE(...)`` call to the sequencer's kickoff done: staged, settings written,
SEQ table and PandA armed, HDF5 file open, triggers running).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from panda_flyscan.polling import poll_until

__all__ = [
    "TICK",
    "FlyResult",
    "MessageClock",
    "fly",
    "line_fly",
    "line_step",
    "reset_motors",
    "step_plan",
    "wait_readable",
]

#: The PandA's clock tick (s): TRIGGER_TIME is a whole number of these.
TICK = 8e-9


class MessageClock:
    """A RunEngine ``msg_hook`` noting when each message is processed.

    ``marks`` holds (perf_counter seconds, command, object name).
    """

    def __init__(self) -> None:
        self.marks: list[tuple[float, str, str]] = []

    def __call__(self, msg: Any) -> None:
        self.marks.append(
            (time.perf_counter(), msg.command, str(getattr(msg.obj, "name", "")))
        )

    def first(self, command: str, name: str | None = None, after: float = 0.0) -> int:
        """Index of the first mark of ``command`` (on object ``name``)."""
        for i, (t, cmd, obj) in enumerate(self.marks):
            if t >= after and cmd == command and (name is None or obj == name):
                return i
        raise LookupError(f"no {command!r} message for {name!r}")

    def triggers_running(self, flyer: str) -> float:
        """When the flyer's kickoff had completed: the first message after its
        ``kickoff`` that is not the ``wait`` for it."""
        i = self.first("kickoff", flyer)
        for t, cmd, _ in self.marks[i + 1 :]:
            if cmd != "wait":
                return t
        raise LookupError(f"no message after the kickoff of {flyer}")


@dataclass
class FlyResult:
    """What one flyscan measured (seconds)."""

    uid: str
    frames: int
    period: float
    #: The ``RE(time_scan(...))`` call, start to return.
    wall: float
    #: Stop document to the last frame readable through Tiled.
    latency: float
    #: ``RE`` call to the sequencer's kickoff done (triggers running).
    first_trigger: float
    #: Of ``latency``: the stop document to ``RE`` returning (the writer
    #: waits there for the run to be in Tiled), then to the frame read.
    writer_wait: float = 0.0
    read: float = 0.0
    #: Phases of the plan (seconds from the ``RE`` call): see :func:`fly`.
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def efficiency(self) -> float:
        return self.wall / (self.frames * self.period)


def wait_readable(
    client: Any, uid: str, index: int, timeout: float = 60.0
) -> tuple[float, float]:
    """Poll Tiled until row ``index`` of the run's ``trigger_time`` reads;
    (the time it did, on ``time.time()``'s clock, the value read)."""
    from panda_flyscan.storage import read_field

    def row() -> tuple[float, float] | None:
        value = read_field(
            client, uid, "primary", "trigger_time", slice(index, index + 1)
        )
        return (time.time(), float(value[0])) if len(value) == 1 else None

    # Any error means "not there yet" (the run or the row not in Tiled): the
    # last one is raised on time-out.
    found = poll_until(row, timeout=timeout, interval=0.002, retry_on=(Exception,))
    assert found is not None  # poll_until returns only a true value
    return found


def fly(
    RE: Any, bl: Any, client: Any, frames: int, period: float, *, check: bool = True
) -> FlyResult:
    """Run ``time_scan(panda, frames, period)`` and measure it (a writer into
    Tiled must be subscribed to ``RE``).

    ``phases`` (seconds from the call): ``open_run`` (staged, settings
    written), ``armed`` (flyer, detectors and PandA prepared: the PandA's
    file open), ``triggers`` (the SEQ's kickoff done), ``stop`` (the
    close_run message), ``return``.
    """
    from panda_flyscan.plans import time_scan

    clock = MessageClock()
    stops: list[float] = []

    def on_stop(name: str, doc: dict[str, Any]) -> None:
        if name == "stop":
            stops.append(float(doc["time"]))

    RE.msg_hook = clock
    token = RE.subscribe(on_stop)
    try:
        started = time.perf_counter()
        (uid,) = RE(time_scan(bl.panda, frames, period))
        wall = time.perf_counter() - started
        returned = time.time()
    finally:
        RE.msg_hook = None
        RE.unsubscribe(token)
    readable_at, last = wait_readable(client, uid, frames - 1)
    (stop_time,) = stops
    flyer = next(
        name for _, cmd, name in clock.marks if cmd == "kickoff" and "-seq" in name
    )
    triggers = clock.triggers_running(flyer) - started
    phases = {
        "open_run": clock.marks[clock.first("open_run")][0] - started,
        "armed": clock.marks[clock.first("declare_stream")][0] - started,
        "triggers": triggers,
        "stop": clock.marks[clock.first("close_run")][0] - started,
        "return": wall,
    }
    if check:
        t = _trigger_times(client, uid)
        assert len(t) == frames, f"{len(t)} rows in Tiled for {frames} frames"
        ticks = np.rint(t / TICK).astype(np.int64)
        assert np.all(np.diff(ticks) == round(period / TICK)), "spacing is not exact"
        assert last == t[-1]
    return FlyResult(
        uid=uid,
        frames=frames,
        period=period,
        wall=wall,
        latency=readable_at - stop_time,
        first_trigger=triggers,
        writer_wait=returned - stop_time,
        read=readable_at - returned,
        phases=phases,
    )


def _trigger_times(client: Any, uid: str) -> np.ndarray:
    from panda_flyscan.storage import read_field

    return np.asarray(read_field(client, uid, "primary", "trigger_time"))


def reset_motors(RE: Any, bl: Any, positions: dict[str, float]) -> None:
    """Put the named motors back to the simulated beamline's speed and move
    them to ``positions`` (not timed), so every scan starts alike: a flyscan
    leaves a motor's VELO at its fly speed."""
    import bluesky.plan_stubs as bps

    from panda_flyscan.app.simulated.beamline import SIM_MOTORS

    speed = {m.name: m.velocity for m in SIM_MOTORS}
    RE(bps.mv(*(a for n in positions for a in (bl.motor(n).velocity, speed[n]))))
    RE(bps.mv(*(a for n, p in positions.items() for a in (bl.motor(n), p))))


def step_plan(det: Any, exposure: float, plan: Any) -> Any:
    """``plan`` (a stock bluesky step scan over ``det``) with the detector's
    exposure set first: its internal trigger takes the current AcquireTime."""
    import bluesky.plan_stubs as bps

    yield from bps.mv(det.driver.acquire_time, exposure)
    return (yield from plan)


def line_step(
    RE: Any, bl: Any, client: Any, points: int, period: float, step_mm: float
) -> float:
    """Wall time of ``bp.scan([det], x, 0, (points - 1) * step_mm, points)``
    into Tiled (a writer must be subscribed): at each point x moves and
    stops, then det is triggered internally (exposure period / 2, as the
    flyscan's) and read; the Events are checked in Tiled."""
    import bluesky.plans as bp

    from panda_flyscan.storage import read_events

    x, det = bl.motor("x"), bl.detectors["det"]
    reset_motors(RE, bl, {"x": 0.0})
    plan = bp.scan([det], x, 0.0, (points - 1) * step_mm, points)
    started = time.perf_counter()
    (uid,) = RE(step_plan(det, period / 2, plan))
    wall = time.perf_counter() - started
    rows = len(read_events(client, uid))
    assert rows == points, f"{rows} events in Tiled for {points} points"
    return wall


def line_fly(
    RE: Any, bl: Any, client: Any, points: int, period: float, step_mm: float
) -> float:
    """Wall time of ``spec_scan(panda, Fly(period @ Line(x, 0, (points - 1) *
    step_mm, points)), detectors=[det])`` into Tiled (a writer must be
    subscribed): the same points as :func:`line_step`, flown, det triggered
    by the PandA at each; the rows are checked in Tiled."""
    from scanspec.specs import Fly, Line

    from panda_flyscan.plans import spec_scan
    from panda_flyscan.storage import read_field

    x, det = bl.motor("x"), bl.detectors["det"]
    reset_motors(RE, bl, {"x": 0.0})
    spec = Fly(period @ Line(x, 0.0, (points - 1) * step_mm, points))
    started = time.perf_counter()
    (uid,) = RE(spec_scan(bl.panda, spec, detectors=[det]))
    wall = time.perf_counter() - started
    rows = len(read_field(client, uid, "primary", "x"))
    assert rows == points, f"{rows} rows in Tiled for {points} points"
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--period", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import tempfile

    from panda_flyscan.app.bench.suite import Options, run_suite

    with tempfile.TemporaryDirectory(prefix="plans-bench-") as tmp:
        run_suite(
            Options(
                only=("efficiency", "latency", "first-trigger"),
                sizes=tuple(args.frames),
                period=args.period,
                repeats=args.repeats,
                output=Path(tmp) / "results",
            )
        )


if __name__ == "__main__":
    main()
