"""When a simulated detector exposes, reads out, and drops triggers.

Pure and tick-based, like the PandA's block models: an :class:`Acquisition` is
fed trigger levels with the tick they changed on (or, internally triggered,
asked when to expose next) and says which exposures it took and when each is
read out. The CA layer (:mod:`.ioc`) turns that into frames and PVs.

A detector is *busy* from the start of an exposure until its readout ends
(``exposure + readout`` ticks later, or ``readout`` after a gate closes). A
trigger that arrives while it is busy is **dropped** and counted, as a real
detector ignores it; one that arrives on the very tick it becomes ready is
taken. Once the requested number of frames has been taken the detector is done
and further triggers are not its business (not counted).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Acquisition", "Exposure", "Timing", "TriggerMode"]


class TriggerMode(enum.Enum):
    """How exposures start; the values are the cam's ``TriggerMode`` labels
    (those of ADKinetix, so ophyd-async's ``KinetixDetector`` drives it)."""

    INTERNAL = "Internal"  # exposures every period from arming
    EDGE = "Rising Edge"  # each rising edge starts an exposure of fixed length
    GATE = "Exp. Gate"  # exposure lasts while the gate is high


@dataclass(frozen=True)
class Timing:
    """An acquisition's parameters, in ticks."""

    mode: TriggerMode
    exposure: int  # INTERNAL and EDGE (a GATE exposure is the gate's length)
    readout: int  # dead time after every exposure
    period: int = 0  # INTERNAL: start to start; stretched to exposure + readout
    frames: int = 1  # 0: until stopped

    def __post_init__(self) -> None:
        if min(self.exposure, self.readout, self.period, self.frames) < 0:
            raise ValueError(f"negative timing: {self}")

    @property
    def internal_period(self) -> int:
        """Start-to-start ticks of internally triggered exposures."""
        return max(self.period, self.exposure + self.readout, 1)


@dataclass(frozen=True)
class Exposure:
    """One exposure: frame ``index`` (from 0) of its acquisition."""

    index: int
    start: int  # tick the exposure (and, for edges and gates, the trigger) began
    end: int  # tick it ended
    ready: int  # tick its readout ends: the frame exists from here on


@dataclass
class Acquisition:
    """One acquisition, from arming (tick ``armed``) until done or stopped."""

    timing: Timing
    armed: int
    #: Triggers that arrived while busy, and the ticks they arrived on.
    dropped: int = 0
    dropped_at: list[int] = field(default_factory=list)
    _taken: int = 0  # exposures started
    _busy_until: int = 0  # the first tick a new exposure may start
    _gate_open: int | None = None  # GATE: tick the current exposure began
    _pending: list[Exposure] = field(default_factory=list)  # not yet read out
    _stopped: bool = False

    def __post_init__(self) -> None:
        self._busy_until = self.armed

    # -- triggers ---------------------------------------------------------------

    @property
    def _all_taken(self) -> bool:
        return self.timing.frames > 0 and self._taken >= self.timing.frames

    def _expose(self, start: int, end: int) -> Exposure:
        exposure = Exposure(self._taken, start, end, end + self.timing.readout)
        self._taken += 1
        self._busy_until = exposure.ready
        self._pending.append(exposure)
        return exposure

    def _drop(self, ts: int) -> None:
        self.dropped += 1
        self.dropped_at.append(ts)

    def on_level(self, ts: int, level: int) -> Exposure | None:
        """The trigger input changed to ``level`` on tick ``ts`` (ticks never
        go back). Returns the exposure it started, if any."""
        mode = self.timing.mode
        if self._stopped or ts < self.armed or mode is TriggerMode.INTERNAL:
            return None
        if mode is TriggerMode.GATE and not level and self._gate_open is not None:
            start, self._gate_open = self._gate_open, None
            self._pending.remove(exposure := self._pending[-1])
            closed = Exposure(exposure.index, start, ts, ts + self.timing.readout)
            self._pending.append(closed)
            self._busy_until = closed.ready
            return None
        if not level or self._all_taken:
            return None
        if ts < self._busy_until or self._gate_open is not None:
            self._drop(ts)
            return None
        if mode is TriggerMode.EDGE:
            return self._expose(ts, ts + self.timing.exposure)
        # GATE: the exposure lasts until the falling edge, busy all along.
        self._gate_open = ts
        return self._expose(ts, ts)

    def next_internal(self) -> int | None:
        """INTERNAL: the tick of the next exposure, if another is due."""
        if (
            self.timing.mode is not TriggerMode.INTERNAL
            or self._stopped
            or self._all_taken
        ):
            return None
        return self.armed + self._taken * self.timing.internal_period

    def on_clock(self, ts: int) -> Exposure | None:
        """INTERNAL: called on the tick :meth:`next_internal` gave."""
        if ts != self.next_internal():
            return None
        return self._expose(ts, ts + self.timing.exposure)

    # -- frames -----------------------------------------------------------------

    def read_out(self, ts: int) -> list[Exposure]:
        """Exposures whose readout has ended by tick ``ts``, oldest first;
        each is returned once. A gate still open is not read out."""
        done: list[Exposure] = []
        while self._pending and (
            self._pending[0].ready <= ts
            and not (self._gate_open is not None and len(self._pending) == 1)
        ):
            done.append(self._pending.pop(0))
        return done

    def next_ready(self) -> int | None:
        """The tick the oldest pending frame is read out, if one is pending
        and its end is known."""
        if not self._pending or (
            self._gate_open is not None and len(self._pending) == 1
        ):
            return None
        return self._pending[0].ready

    @property
    def gate_open(self) -> bool:
        """GATE: an exposure is in progress, waiting for the gate to close."""
        return self._gate_open is not None

    @property
    def taken(self) -> int:
        """Exposures started so far."""
        return self._taken

    @property
    def finished(self) -> bool:
        """Every requested frame has been read out (never, until stopped, for
        ``frames=0``)."""
        return self._all_taken and not self._pending

    def stop(self) -> None:
        """Abort: frames not yet read out are lost, later triggers ignored."""
        self._stopped = True
        self._pending.clear()
        self._gate_open = None
