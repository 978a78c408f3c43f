"""Watching what a running flyscan depends on, and naming what failed.

Without this, a dead IOC, a full disk or a stuck motor shows up as
ophyd-async's bare ``TimeoutError`` tens of seconds later (a NUM_CAPTURED
stall of ``exposure_timeout``, then a put to ``SEQ1:ENABLE`` timing out).

Two parts:

* :class:`HealthJudge` (pure, no I/O): given :class:`Sample` s of the
  dependencies' state over time, returns the first
  :class:`~.errors.HealthError` they show, or None;
* :class:`HealthWatch`: samples the devices every :data:`SAMPLE_PERIOD` in
  the RunEngine's loop (a background task, so a dead IOC never blocks the
  plan) and keeps the judge's verdict for the plan to raise
  (:meth:`HealthWatch.check`, called after every collect).

The watch also monitors the counters ``collect`` reads (the PandA's and the
detectors' NUM_CAPTURED): a monitored signal answers reads from its cache, so
the collects after a dead IOC return at once, with the rows it reported last.

Bounds (from the fault to the verdict; the plan raises it within
``FlyRun.flush_period`` more): the IOC not answering, :data:`LINK_LOST_AFTER`
plus one read timeout (about 4 s); the IOC saying it lost the PandA, one
sample (0.5 s); the writer's failure or a disk below :data:`MIN_FREE_BYTES`,
one sample; the writer stuck with rows pending, :data:`WRITER_STALL_AFTER`;
a motor at a limit or reporting a problem, one sample, not moving while
moving, :data:`MOTOR_STALL_AFTER`; a detector behind the PandA,
:data:`DETECTOR_STALL_AFTER` plus two frame periods; no row at all,
:data:`ROW_STALL_MARGIN` plus the plan's longest expected gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
from bluesky.utils import MsgGenerator
from ophyd_async.core import SignalR, StandardDetector
from ophyd_async.epics.core import epics_signal_r

from .._compat.ophyd_async import detector_data_logics
from ..devices._aio import wait_for_awaitable
from .errors import (
    CaptureStalled,
    DetectorStalled,
    DiskFull,
    HealthError,
    MotorFault,
    PandaLinkLost,
    WriterFailed,
)
from .prechecks import FREE_SPACE_FLOOR

__all__ = [
    "DETECTOR_STALL_AFTER",
    "LINK_LOST_AFTER",
    "MIN_FREE_BYTES",
    "MOTOR_STALL_AFTER",
    "ROW_STALL_MARGIN",
    "SAMPLE_PERIOD",
    "WRITER_STALL_AFTER",
    "DetectorSample",
    "HealthJudge",
    "HealthWatch",
    "MotorSample",
    "Sample",
]

log = logging.getLogger(__name__)

#: Seconds between two samples.
SAMPLE_PERIOD = 0.5
#: Seconds a read may take before it counts as unanswered.
READ_TIMEOUT = 1.5
#: The IOC unanswered for this long (first failed read to now) is lost.
LINK_LOST_AFTER = 2.0
#: Rows received but not written, NUM_CAPTURED unchanged this long: the
#: writer has stopped (its thread died: ENOSPC, an I/O error).
WRITER_STALL_AFTER = 3.0
#: A motor moving (DMOV=0) whose readback stays put this long has stalled.
MOTOR_STALL_AFTER = 3.0
#: A detector behind the PandA's rows with no new frame for this long (plus
#: two of its frame periods) has stopped.
DETECTOR_STALL_AFTER = 3.0
#: No new row for the plan's longest expected gap plus this: stalled.
ROW_STALL_MARGIN = 3.0
#: Less free space than this in the data directory: stop before the writer
#: fails mid-row (the floor the pre-run check keeps free).
MIN_FREE_BYTES = FREE_SPACE_FLOOR

#: Motor record MSTA bits (zero-based).
MSTA_PLUS_LS = 1 << 2
MSTA_SLIP_STALL = 1 << 6
MSTA_PROBLEM = 1 << 9
MSTA_COMM_ERR = 1 << 12
MSTA_MINUS_LS = 1 << 13

#: PandABlocks-ioc's DATA:STATUS messages that mean its writer gave up.
_WRITER_GAVE_UP = ("unexpected exception", "Mismatched StartData")


@dataclass(frozen=True)
class MotorSample:
    """One motor record's state; None where it has no such field."""

    done: bool | None = None
    readback: float | None = None
    msta: int | None = None
    high_limit_switch: bool | None = None
    low_limit_switch: bool | None = None


@dataclass(frozen=True)
class DetectorSample:
    """Frames a detector's writer has written (None: not read)."""

    frames: int | None
    #: Seconds between its frames (0: unknown).
    period: float = 0.0


@dataclass(frozen=True)
class Sample:
    """What the dependencies showed at monotonic time :attr:`t`."""

    t: float
    #: The IOC answered a read now (its connection status).
    ioc_answered: bool = True
    #: What the failed read raised, when it did not answer.
    ioc_error: str = ""
    #: The IOC's connection status to the PandA (``CONNECTED``...).
    ioc_status: str | None = None
    #: DATA:STATUS, the IOC's HDF5 writer's message.
    writer_status: str | None = None
    #: Rows the IOC received from the PandA (NUM_RECEIVED) and wrote
    #: (NUM_CAPTURED).
    received: int | None = None
    captured: int | None = None
    #: DATA:CAPTURE, whether the IOC's writer is capturing.
    capturing: bool | None = None
    #: Free bytes in the PandA's data directory (None: not visible here).
    free_bytes: int | None = None
    detectors: Mapping[str, DetectorSample] = field(default_factory=dict)
    motors: Mapping[str, MotorSample] = field(default_factory=dict)


@dataclass
class _Since:
    """A value and the time it last changed."""

    value: Any = None
    t: float = 0.0

    def update(self, value: Any, t: float) -> float:
        """Record ``value`` at ``t``; seconds it has been unchanged."""
        if value != self.value:
            self.value, self.t = value, t
        return t - self.t


@dataclass
class HealthJudge:
    """Turns a sequence of :class:`Sample` into the first fault it shows.

    Args:
        ioc: the PandA's IOC as named in messages (its PV prefix).
        data_directory: the PandA's data directory, for messages.
        frames: rows the scan will capture.
        max_row_gap: longest expected gap between rows (None: no check).
    """

    ioc: str
    data_directory: str = ""
    frames: int = 0
    max_row_gap: float | None = None
    _first_failure: float | None = field(default=None, init=False)
    _was_capturing: bool = field(default=False, init=False)
    #: The IOC missed a sample since kickoff (a restart's tell-tale).
    _gap: bool = field(default=False, init=False)
    #: The most rows NUM_CAPTURED reported (for messages; unread samples and a
    #: restarted IOC's zero do not lower it).
    _most_rows: int | None = field(default=None, init=False)
    _kicked_off: float | None = field(default=None, init=False)
    #: NUM_CAPTURED rose after kickoff: this scan's capture is counting, so
    #: a lower count later is a new IOC (a previous scan's stale count only
    #: ever drops, as this capture starts).
    _rose: bool = field(default=False, init=False)
    _last_captured: int | None = field(default=None, init=False)
    _captured: _Since = field(default_factory=_Since, init=False)
    _received: _Since = field(default_factory=_Since, init=False)
    #: Since when rows have been received and not written (None: none wait).
    _pending_since: float | None = field(default=None, init=False)
    _detectors: dict[str, _Since] = field(default_factory=dict, init=False)
    _readbacks: dict[str, _Since] = field(default_factory=dict, init=False)

    def kicked_off(self, t: float) -> None:
        """The triggers started at ``t``: rows and frames are now expected."""
        self._kicked_off = t
        self._captured = _Since(self._captured.value, t)
        self._received = _Since(self._received.value, t)
        for since in self._detectors.values():
            since.t = t

    def observe(self, s: Sample) -> HealthError | None:
        """The fault ``s`` (with the samples before it) shows, or None."""
        if not s.ioc_answered:
            # Its counters were not read: judged on the link alone, so the
            # rows seen and the stall timers keep their last answered state.
            return self._link(s)
        fault = self._judge(s)
        if s.captured is not None and fault is None:
            self._most_rows = max(self._most_rows or 0, s.captured)
        return fault

    def _judge(self, s: Sample) -> HealthError | None:
        return (
            self._link(s)
            or self._writer(s)
            or self._motors(s)
            or self._detectors_behind(s)
            or self._rows(s)
        )

    def _link(self, s: Sample) -> HealthError | None:
        if not s.ioc_answered:
            self._gap = self._kicked_off is not None
            if self._first_failure is None:
                self._first_failure = s.t
            if s.t - self._first_failure >= LINK_LOST_AFTER:
                return PandaLinkLost(
                    f"{self.ioc} (IOC)",
                    f"the PandA's IOC {self.ioc} has not answered for "
                    f"{s.t - self._first_failure + READ_TIMEOUT:.1f} s "
                    f"({s.ioc_error or 'reads time out'}): the IOC process has "
                    "died or its host is unreachable. The scan was stopped; the "
                    f"rows it had written ({self._rows_so_far()}) are kept. "
                    "Restart the IOC (and check its log), then run the scan again",
                    ioc_answers=False,
                )
            return None
        self._first_failure = None
        if (restarted := self._restarted(s)) is not None:
            return restarted
        if s.ioc_status is not None and s.ioc_status != "CONNECTED":
            return PandaLinkLost(
                f"{self.ioc} (IOC to PandA link)",
                f"the PandA's IOC {self.ioc} reports its connection to the PandA "
                f"as {s.ioc_status}: the PandA stopped answering it (powered "
                "off, rebooted, network or TCP connection lost). The scan was "
                f"stopped; the rows written ({self._rows_so_far()}) are kept. "
                "Check the PandA and its network, restart the IOC, then run the "
                "scan again",
                ioc_answers=True,
            )
        return None

    def _restarted(self, s: Sample) -> HealthError | None:
        """A new IOC answering in the old one's place (it restarted, e.g.
        under supervision, faster than the link's bound): its writer is not
        capturing, or its row counter went back."""
        # Lower than the last count read after kickoff, once after a gap or
        # once this scan's count has risen: a counter also resets as a capture
        # starts. A supervised restart can be so quick that no read failed
        # (PVA waits for the new IOC), hence the second.
        last = self._last_captured
        went_back = (
            (self._gap or self._rose)
            and s.captured is not None
            and last is not None
            and s.captured < last
        )
        if self._kicked_off is not None and s.captured is not None:
            previous, self._last_captured = self._last_captured, s.captured
            if previous is not None and s.captured > previous:
                self._rose = True
        stopped = self._was_capturing and s.capturing is False
        if s.capturing:
            self._was_capturing = True
        if not (went_back or stopped) or self._kicked_off is None:
            return None
        if s.captured is not None and s.captured >= self.frames and not went_back:
            return None  # every row is in: the writer may stop
        return PandaLinkLost(
            f"{self.ioc} (IOC)",
            f"the PandA's IOC {self.ioc} restarted during the scan (its writer "
            f"{'counts rows from 0 again' if went_back else 'is no longer capturing'}"
            "): the capture this scan armed is lost. The scan was stopped; the "
            f"rows written before ({self._rows_so_far()}) are kept. Check the "
            "IOC's log for why it restarted, then run the scan again",
            ioc_answers=True,
            restarted=True,
        )

    def _rows_so_far(self) -> str:
        n = self._most_rows
        if not n:
            return "all that the file holds"
        return f"at least {n}, as NUM_CAPTURED reported"

    def _writer(self, s: Sample) -> HealthError | None:
        if s.free_bytes is not None and s.free_bytes < MIN_FREE_BYTES:
            return DiskFull(
                f"data directory {self.data_directory}",
                f"the PandA's data directory {self.data_directory} has "
                f"{s.free_bytes} bytes free (less than {MIN_FREE_BYTES >> 20} MiB): "
                "the scan was stopped before the writer fails mid-file; the rows "
                f"written ({self._rows_so_far()}) are kept. Free space there (or "
                "point the path provider elsewhere), then run the scan again",
            )
        status = s.writer_status or ""
        if any(phrase in status for phrase in _WRITER_GAVE_UP):
            return WriterFailed(
                f"{self.ioc} HDF5 writer",
                f"the PandA IOC's HDF5 writer stopped: DATA:STATUS says "
                f"{status!r}. The rows written before ({self._rows_so_far()}) are "
                "kept. See the IOC's log for the cause, then run the scan again",
            )
        self._captured.update(s.captured, s.t)
        self._received.update(s.received, s.t)
        pending = (s.received or 0) - (s.captured or 0)
        # Stuck: rows waiting, and none written since they were first seen
        # waiting (not since the last write: after a pause, or any pause in
        # the triggers, the first rows of the next burst would count it).
        if pending <= 0 or s.received is None:
            self._pending_since = None
            return None
        if self._pending_since is None:
            self._pending_since = s.t
        stuck = s.t - max(self._pending_since, self._captured.t)
        if stuck >= WRITER_STALL_AFTER:
            return WriterFailed(
                f"{self.ioc} HDF5 writer",
                f"the PandA IOC's HDF5 writer has written no row for {stuck:.1f} s "
                f"while {pending} received rows wait (NUM_RECEIVED {s.received}, "
                f"NUM_CAPTURED {s.captured}): its writer thread has died (a full "
                "disk, an I/O error on "
                f"{self.data_directory or 'the data directory'}). The rows already "
                "in the file are kept. See the IOC's log for the error, fix it, "
                "then run the scan again",
            )
        return None

    def _motors(self, s: Sample) -> HealthError | None:
        for name, m in s.motors.items():
            where = "" if m.readback is None else f" at {m.readback:g}"
            switch = (
                "high"
                if m.high_limit_switch or (m.msta or 0) & MSTA_PLUS_LS
                else "low"
                if m.low_limit_switch or (m.msta or 0) & MSTA_MINUS_LS
                else None
            )
            if switch is not None:
                return MotorFault(
                    f"motor {name}",
                    f"motor {name} hit its {switch} limit switch{where} during the "
                    "scan, so it stopped short and the remaining points cannot be "
                    "reached. The rows captured before are kept. Move it off the "
                    "switch and check the scan's range against the hardware limits",
                )
            problem = (m.msta or 0) & (MSTA_SLIP_STALL | MSTA_PROBLEM | MSTA_COMM_ERR)
            if problem:
                return MotorFault(
                    f"motor {name}",
                    f"motor {name} reports a fault{where} (MSTA={m.msta:#x}: "
                    f"{_msta_words(problem)}). The scan was stopped; the rows "
                    "captured before are kept. Check the motor and its controller "
                    "(the IOC's log, the amplifier), then run the scan again",
                )
            since = self._readbacks.setdefault(name, _Since())
            still = since.update(m.readback, s.t)
            if m.done is False and m.readback is not None:
                if still >= MOTOR_STALL_AFTER:
                    return MotorFault(
                        f"motor {name}",
                        f"motor {name} is moving (DMOV=0) but its readback has "
                        f"stayed{where} for {still:.1f} s: it has stalled. The scan "
                        "was stopped; the rows captured before are kept. Check the "
                        "motor and its controller, then run the scan again",
                    )
            else:
                since.t = s.t  # only time standing still while told to move
        return None

    def _detectors_behind(self, s: Sample) -> HealthError | None:
        if self._kicked_off is None:
            return None
        rows = s.captured if s.captured is not None else 0
        for name, d in s.detectors.items():
            since = self._detectors.setdefault(name, _Since(None, self._kicked_off))
            still = since.update(d.frames, s.t)
            if d.frames is None or rows <= d.frames:
                since.t = s.t  # not behind the PandA: not waiting for frames
                continue
            allowed = DETECTOR_STALL_AFTER + 2 * d.period
            if still >= allowed:
                return DetectorStalled(
                    f"detector {name}",
                    f"detector {name} has delivered no frame for {still:.1f} s "
                    f"(it wrote {d.frames}) while the PandA captured {rows} rows for "
                    "the same triggers: the detector stopped acquiring or lost its "
                    "trigger. The scan was stopped; what was captured is kept. "
                    "Check the detector (its IOC, status message, trigger cable), "
                    "then run the scan again",
                )
        return None

    def _rows(self, s: Sample) -> HealthError | None:
        if self._kicked_off is None or self.max_row_gap is None or s.captured is None:
            return None
        if s.captured >= self.frames:
            return None
        still = s.t - self._captured.t
        allowed = self.max_row_gap + ROW_STALL_MARGIN
        if still >= allowed:
            return CaptureStalled(
                f"{self.ioc} (PandA capture)",
                f"the PandA has sent no new row for {still:.1f} s ({s.captured} of "
                f"{self.frames} captured; at most {self.max_row_gap:g} s was expected "
                "between rows): its triggers stopped. The scan was stopped; the "
                "rows captured are kept. Check the trigger source (SEQ/PCOMP "
                "wiring, the encoder, the motor), then run the scan again",
            )
        return None


def _msta_words(bits: int) -> str:
    words = {
        MSTA_SLIP_STALL: "slip/stall",
        MSTA_PROBLEM: "problem",
        MSTA_COMM_ERR: "communication error",
    }
    return ", ".join(w for bit, w in words.items() if bits & bit)


class _MotorSignals:
    """The motor-record fields a watch reads for one motor."""

    def __init__(self, motor: Any) -> None:
        self.name: str = getattr(motor, "name", "") or repr(motor)
        self.done: SignalR[Any] | None = _signal(motor, "motor_done_move")
        self.readback: SignalR[Any] | None = _signal(motor, "user_readback")
        self.extra: dict[str, SignalR[Any]] = {}
        record = _motor_record(self.readback)
        if record is not None:
            for key, suffix in (("msta", "MSTA"), ("hls", "HLS"), ("lls", "LLS")):
                self.extra[key] = epics_signal_r(
                    int, f"ca://{record}.{suffix}", name=f"{self.name}-{key}"
                )

    async def connect(self, timeout: float) -> None:
        async def one(key: str, signal: Any) -> None:
            try:
                await signal.connect(timeout=timeout)
            except Exception:  # a record without the field: not watched
                log.info("%s: no %s to watch", self.name, key)
                del self.extra[key]

        await asyncio.gather(*(one(k, s) for k, s in list(self.extra.items())))

    async def sample(self) -> MotorSample:
        done = await _read(self.done)
        readback = await _read(self.readback)
        extra = {k: await _read(s) for k, s in self.extra.items()}
        return MotorSample(
            done=None if done is None else bool(done),
            readback=None if readback is None else float(readback),
            msta=None if extra.get("msta") is None else int(extra["msta"]),
            high_limit_switch=None if extra.get("hls") is None else bool(extra["hls"]),
            low_limit_switch=None if extra.get("lls") is None else bool(extra["lls"]),
        )


def _signal(owner: Any, name: str) -> SignalR[Any] | None:
    signal = getattr(owner, name, None)
    return signal if isinstance(signal, SignalR) else None


def _motor_record(readback: SignalR[Any] | None) -> str | None:
    """``TEST:M1`` from an ophyd-async Motor's ``ca://TEST:M1.RBV``."""
    if readback is None:
        return None
    source = str(readback.source)
    if not source.startswith("ca://") or not source.endswith(".RBV"):
        return None
    return source.removeprefix("ca://").removesuffix(".RBV")


async def _read(signal: SignalR[Any] | None, cached: bool | None = None) -> Any:
    """The signal's value, or None when it has none or does not answer."""
    if signal is None:
        return None
    try:
        return await asyncio.wait_for(signal.get_value(cached=cached), READ_TIMEOUT)
    except Exception:
        return None


def _writer_frames(det: StandardDetector) -> SignalR[Any] | None:
    """The detector writer's frame count (what ``collect`` reads)."""
    for logic in detector_data_logics(det):
        signal = _signal(getattr(logic, "writer", None), "num_captured")
        if signal is not None:
            return signal
    return None


class HealthWatch:
    """Samples a flyscan's dependencies in the background; see the module.

    Args:
        panda: the HDFPanda (its ``data`` block and IOC prefix).
        detectors: externally triggered detectors and their frame periods,
            compared with the PandA's rows.
        motors: motors flown or driven by the scan.
        frames: rows the PandA will capture.
        max_row_gap: longest expected gap between two rows (None: unchecked).
    """

    def __init__(
        self,
        panda: Any,
        *,
        detectors: Sequence[tuple[StandardDetector, float]] = (),
        motors: Sequence[Any] = (),
        frames: int = 0,
        max_row_gap: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.panda = panda
        data = panda.data
        self._captured: SignalR[Any] = data.num_captured
        self._received = _signal(data, "num_received")
        self._writer_status = _signal(data, "status")
        self._capturing = _signal(data, "capture")
        self._directory = _signal(data, "hdf_directory")
        self.ioc = _ioc_prefix(self._captured)
        self._ioc_status: SignalR[Any] = epics_signal_r(
            str, f"pva://{self.ioc}:STATUS", name=f"{panda.name}-ioc_status"
        )
        self._detectors = [
            (det.name, signal, period)
            for det, period in detectors
            if (signal := _writer_frames(det)) is not None
        ]
        self._motors = [_MotorSignals(m) for m in motors]
        self.judge = HealthJudge(self.ioc, frames=frames, max_row_gap=max_row_gap)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._monitored: list[SignalR[Any]] = []
        self._data_dir: Path | None = None
        #: The first fault seen (None: all well so far).
        self.fault: HealthError | None = None
        #: The PandA's HDF5 file, where this host sees it (None: it does not).
        self.panda_file: Path | None = None

    # -- plan stubs ---------------------------------------------------------------

    def start(self) -> MsgGenerator[None]:
        """Plan stub: connect, monitor and start sampling (once armed)."""
        yield from wait_for_awaitable(self._start())

    def kicked_off(self) -> MsgGenerator[None]:
        """Plan stub: the triggers have started; rows are now expected."""
        self.judge.kicked_off(self._clock())
        yield from ()

    def check(self) -> MsgGenerator[None]:
        """Plan stub: raise the fault seen, if any (no I/O)."""
        if self.fault is not None:
            raise self.fault
        yield from ()

    def stop(self) -> MsgGenerator[None]:
        """Plan stub: stop sampling and monitoring (idempotent)."""
        yield from wait_for_awaitable(self._stop())

    def rows_in_file(self) -> int | None:
        """Rows every dataset of the PandA's file holds (the shortest), read
        as an SWMR reader (a file its dead writer left open is readable so);
        None where this host does not see the file or it cannot be read."""
        if self.panda_file is None:
            return None
        try:
            with h5py.File(self.panda_file, "r", swmr=True) as f:
                lengths = [
                    len(d)
                    for d in f.values()
                    if isinstance(d, h5py.Dataset) and d.ndim == 1
                ]
        except (OSError, KeyError):
            return None
        return min(lengths) if lengths else None

    # -- in the RunEngine's loop ----------------------------------------------------

    async def _start(self) -> None:
        await asyncio.gather(
            self._ioc_status.connect(timeout=READ_TIMEOUT),
            *(m.connect(READ_TIMEOUT) for m in self._motors),
        )
        directory = await _read(self._directory)
        if directory:
            path = Path(str(directory))
            # The IOC's path; checked only where this host sees it too.
            self._data_dir = path if path.is_dir() else None
            self.judge.data_directory = str(path)
            name = await _read(_signal(self.panda.data, "hdf_file_name"))
            if self._data_dir is not None and name:
                self.panda_file = self._data_dir / str(name)
        # Monitored, so collect (which reads them) answers from the cache
        # even once the IOC is gone.
        for signal in (
            self._captured,
            self._received,
            *(s for _, s, _ in self._detectors),
        ):
            if signal is not None:
                signal.subscribe_reading(_ignore)
                self._monitored.append(signal)
        self._task = asyncio.create_task(self._run(), name="flyscan-health")

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for signal in self._monitored:
            with contextlib.suppress(Exception):
                signal.clear_sub(_ignore)
        self._monitored.clear()

    async def _run(self) -> None:
        while self.fault is None:
            started = self._clock()
            try:
                sample = await self.sample()
                self.fault = self.judge.observe(sample)
            except Exception:  # a bug here must not stop the scan
                log.exception("health watch: sampling failed")
            if self.fault is not None:
                log.error("health watch: %s", self.fault)
                break
            await asyncio.sleep(max(0.0, SAMPLE_PERIOD - (self._clock() - started)))

    async def sample(self) -> Sample:
        """Read everything once (each read bounded by :data:`READ_TIMEOUT`)."""
        t = self._clock()
        try:
            status = await asyncio.wait_for(
                self._ioc_status.get_value(cached=False), READ_TIMEOUT
            )
            answered, error = True, ""
        except Exception as exc:
            status, answered = None, False
            error = f"{type(exc).__name__} reading {self._ioc_status.source}"
        free = None
        if self._data_dir is not None:
            with contextlib.suppress(OSError):
                free = shutil.disk_usage(self._data_dir).free
        if not answered:  # the cached counters are stale: judge the link alone
            return Sample(t, ioc_answered=False, ioc_error=error, free_bytes=free)
        captured, received, writer_status, capturing = await asyncio.gather(
            _read(self._captured),
            _read(self._received),
            _read(self._writer_status),
            _read(self._capturing),
        )
        detectors = {
            name: DetectorSample(frames=await _read(signal), period=period)
            for name, signal, period in self._detectors
        }
        motors = {m.name: await m.sample() for m in self._motors}
        return Sample(
            t,
            ioc_status=None if status is None else str(status),
            writer_status=None if writer_status is None else str(writer_status),
            received=None if received is None else int(received),
            captured=None if captured is None else int(captured),
            capturing=None if capturing is None else bool(capturing),
            free_bytes=free,
            detectors=detectors,
            motors=motors,
        )


def _ioc_prefix(signal: SignalR[Any]) -> str:
    """``TEST:PANDA`` from ``pva://TEST:PANDA:DATA:NUM_CAPTURED``."""
    source = str(signal.source).split("://", 1)[-1]
    return source.removesuffix(":DATA:NUM_CAPTURED")


def _ignore(value: Any) -> None:
    """The monitors' callback: the cache is what matters."""
