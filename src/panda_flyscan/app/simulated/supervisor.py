"""Supervision of the simulated beamline's IOC: restarted, on the same ports,
when it died, lost its PandA or runs away.

PandABlocks-ioc 0.11 never recovers its link to the PandA: once the TCP
connection is lost it logs ``connect() not called yet`` in a tight loop (100 %
CPU, ~4 MB of log and ~20 MB of RSS a second) and serves stale records
forever. It also grows with every capture (its HDF writer threads are only
stopped in ``__del__``). A supervisor thread samples the IOC every
:attr:`HealPolicy.interval` seconds (its exit status, its log's new lines, its
RSS and its log's growth) and asks the beamline to restart it. The beamline
keeps its CA/PVA ports and record names, so clients' channels (ophyd-async
devices included) reconnect by themselves once the new IOC answers.

The decision (:func:`diagnose`) and the log reading (:class:`LogWatch`) are
pure enough to unit-test without an IOC.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ...processes import ManagedProcess

__all__ = [
    "LOST_PANDA_MARKERS",
    "HealPolicy",
    "IocRestart",
    "IocSupervisor",
    "IocUsage",
    "LogWatch",
    "diagnose",
    "ioc_usage",
]

logger = logging.getLogger(__name__)

#: Lines PandABlocks-ioc logs once its link to the PandA is gone: the update
#: loop's time-out ("... Setting all records to major alarm state and
#: disconnecting."), then, forever, the client's assertion.
LOST_PANDA_MARKERS = (
    "Setting all records to major alarm state and disconnecting",
    "connect() not called yet",
)
#: What the IOC's HDF writer logs as it opens and closes a capture's file.
_OPENED, _CLOSED = "INFO:Opened '", "INFO:Closed '"

MB = 1024 * 1024


@dataclass(frozen=True)
class HealPolicy:
    """When the supervisor restarts the IOC.

    The defaults sit far from a healthy IOC and close to a broken one: a
    healthy IOC starts at ~330 MB RSS and grows ~24 MB (3 threads) per
    capture until Python's cyclic GC frees the captures' pipelines (at ~1.3
    GB in ``panda-flyscan bench --only soak``), and logs a few hundred bytes
    per capture; one that lost its PandA grows ~20 MB/s and logs ~4 MB/s.
    """

    #: Seconds between samples of the IOC.
    interval: float = 0.5
    #: Runaway: restart at once (even mid-scan) past this RSS: above the
    #: healthy sawtooth's peak, ~90 s of a disconnect loop the log markers
    #: missed.
    max_rss_bytes: int = 2048 * MB
    #: Runaway: restart at once when the log grows faster than this
    #: (bytes/s) over :attr:`log_rate_window` seconds.
    max_log_rate: float = 1.0 * MB
    log_rate_window: float = 5.0
    #: Between scans: restart when RSS passes this and the IOC is idle (no
    #: file open, DATA:CAPTURE and PCAP:ACTIVE 0); None: never.
    idle_restart_rss_bytes: int | None = None
    #: Seconds between two idleness checks (each runs a short CA probe).
    idle_check_every: float = 10.0
    #: Consecutive failed restarts before the supervisor gives up.
    max_failed_restarts: int = 3


@dataclass(frozen=True)
class IocUsage:
    """What the IOC process uses now (from ``/proc``)."""

    pid: int
    rss_bytes: int
    threads: int


def ioc_usage(pid: int) -> IocUsage | None:
    """RSS and thread count of ``pid`` (Linux ``/proc``); None if unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    try:
        rss_kib = int(fields["VmRSS"].split()[0])
        threads = int(fields["Threads"])
    except (KeyError, ValueError, IndexError):
        return None  # a zombie has no VmRSS
    return IocUsage(pid=pid, rss_bytes=rss_kib * 1024, threads=threads)


@dataclass(frozen=True)
class IocRestart:
    """One restart of the IOC (or one failed attempt)."""

    reason: str
    old_pid: int | None
    new_pid: int | None
    #: Wall-clock time (``time.time()``) the restart began.
    started_at: float
    #: Seconds from the restart's start until the new IOC answered.
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        if self.ok:
            return (
                f"IOC restarted ({self.reason}): PID {self.old_pid} -> "
                f"{self.new_pid}, answering again after {self.seconds:.1f} s "
                "on the same CA/PVA ports"
            )
        return f"IOC restart failed ({self.reason}): {self.error}"


class LogWatch:
    """Reads what a log gained since the last call, and how fast it grows.

    Only the last ``max_read`` bytes of each increment are read: a runaway
    log's markers repeat, and its growth alone is enough to act on.
    """

    def __init__(
        self, path: Path, window: float, max_read: int = MB, *, from_end: bool = False
    ) -> None:
        self.path = path
        self.window = window
        self.max_read = max_read
        self._offset = 0
        if from_end:  # a log shared with earlier processes: only what comes next
            with contextlib.suppress(OSError):
                self._offset = path.stat().st_size
        self._sizes: collections.deque[tuple[float, int]] = collections.deque()
        #: Files the IOC's HDF writer opened and closed so far (this log).
        self.opened = 0
        self.closed = 0

    def poll(self, now: float) -> str:
        """The text added since the last poll (tail-capped)."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return ""
        self._sizes.append((now, size))
        while len(self._sizes) > 2 and now - self._sizes[1][0] >= self.window:
            self._sizes.popleft()
        if size < self._offset:  # replaced (rotated) under us
            self._offset = 0
        if size == self._offset:
            return ""
        start = max(self._offset, size - self.max_read)
        with open(self.path, "rb") as f:
            f.seek(start)
            text = f.read(size - start).decode(errors="replace")
        self._offset = size
        self.opened += text.count(_OPENED)
        self.closed += text.count(_CLOSED)
        return text

    def rate(self) -> float | None:
        """Bytes per second over the last ``window`` seconds; None until the
        samples span that long."""
        if len(self._sizes) < 2:
            return None
        (t0, s0), (t1, s1) = self._sizes[0], self._sizes[-1]
        if t1 - t0 < self.window:
            return None
        return (s1 - s0) / (t1 - t0)

    @property
    def file_open(self) -> bool:
        """Whether the IOC's log says it has a capture file open."""
        return self.opened > self.closed


def lost_panda(text: str) -> str | None:
    """The marker in ``text`` saying the IOC lost its PandA, if any."""
    return next((m for m in LOST_PANDA_MARKERS if m in text), None)


def diagnose(
    policy: HealPolicy,
    *,
    exit_code: int | None,
    exited: bool,
    new_log: str,
    usage: IocUsage | None,
    log_rate: float | None,
) -> str | None:
    """Why the IOC must be restarted now, or None if it is healthy.

    The between-scans threshold is not judged here: it also needs the IOC
    idle, which takes a probe (see :class:`IocSupervisor`).
    """
    if exited:
        return f"it exited (code {exit_code})"
    if (marker := lost_panda(new_log)) is not None:
        return f"it lost its PandA (log: {marker!r})"
    if usage is not None and usage.rss_bytes > policy.max_rss_bytes:
        return (
            f"runaway: RSS {usage.rss_bytes / MB:.0f} MB > "
            f"{policy.max_rss_bytes / MB:.0f} MB"
        )
    if log_rate is not None and log_rate > policy.max_log_rate:
        return (
            f"runaway: log growing {log_rate / MB:.1f} MB/s > "
            f"{policy.max_log_rate / MB:.1f} MB/s"
        )
    return None


class SupervisedBeamline(Protocol):
    """What the supervisor needs of the beamline (:class:`SimulatedBeamline`)."""

    def ioc_process(self) -> ManagedProcess: ...

    def others_alive(self) -> bool: ...

    def ioc_idle(self, watch: LogWatch) -> bool: ...

    def heal_ioc(
        self, pid: int | None, reason: str, *, kill: bool
    ) -> IocRestart | None:
        """Restart the IOC unless it is no longer ``pid`` (restarted meanwhile)."""
        ...


class IocSupervisor(threading.Thread):
    """The thread that watches the IOC and has the beamline restart it."""

    def __init__(
        self,
        beamline: SupervisedBeamline,
        policy: HealPolicy,
        on_restart: Callable[[IocRestart], None],
    ) -> None:
        super().__init__(name="ioc-supervisor", daemon=True)
        self.beamline = beamline
        self.policy = policy
        self.on_restart = on_restart
        self._stop_event = threading.Event()
        #: Set once :attr:`HealPolicy.max_failed_restarts` restarts in a row failed.
        self.gave_up = threading.Event()

    def stop(self) -> None:
        """Stop watching (waits for a restart under way to end)."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()

    def run(self) -> None:
        failures = 0
        watch: LogWatch | None = None
        pid: int | None = None
        next_idle_check = 0.0
        while not self._stop_event.wait(self.policy.interval):
            policy = self.policy  # may be replaced while we run (heal_policy)
            if not self.beamline.others_alive():
                return  # the simulator is gone: a new IOC could not connect
            ioc = self.beamline.ioc_process()
            if ioc.pid != pid or watch is None:  # started, or restarted by a client
                pid = ioc.pid
                # The log is shared with the IOCs before this one.
                watch = LogWatch(ioc.log_path, policy.log_rate_window, from_end=True)
            now = time.monotonic()
            exited = ioc.exited()
            usage = None if exited or pid is None else ioc_usage(pid)
            reason = diagnose(
                policy,
                exit_code=ioc.exit_code() if exited else None,
                exited=exited,
                new_log=watch.poll(now),
                usage=usage,
                log_rate=watch.rate(),
            )
            kill = reason is not None  # broken: no point in a graceful stop
            threshold = policy.idle_restart_rss_bytes
            if (
                reason is None
                and threshold is not None
                and usage is not None
                and usage.rss_bytes > threshold
                and now >= next_idle_check
            ):
                next_idle_check = now + policy.idle_check_every
                if self.beamline.ioc_idle(watch):
                    reason = (
                        f"between scans: RSS {usage.rss_bytes / MB:.0f} MB > "
                        f"{threshold / MB:.0f} MB"
                    )
            if reason is None or self._stop_event.is_set():
                continue
            logger.warning("restarting the IOC (PID %s): %s", pid, reason)
            restart = self.beamline.heal_ioc(pid, reason, kill=kill)
            watch = None
            if restart is None:
                continue  # a client restarted it meanwhile
            self.on_restart(restart)
            failures = 0 if restart.ok else failures + 1
            if failures >= policy.max_failed_restarts:
                logger.error("IOC: %d restarts failed in a row; giving up", failures)
                self.gave_up.set()
                return
