"""The detector's exposure output, cabled to a PandA TTL input.

Many detectors have a TTL output that is high while they expose (or while
they are busy: exposing or reading out). :class:`TtlinOutput` puts that level
on a simulated ``TTLIN<n>`` (its ``LEVEL`` register, what the world drives),
tick-exactly, so a PandA layout can capture on exposure edges, count
exposures or gate PCAP with them.

Timing. An exposure starting on tick ``s`` and ending on tick ``e`` (for
``busy``: read out by tick ``r``) makes ``TTLIN<n>.VAL`` high from tick
``s + 1`` to tick ``e + 1`` (``r + 1``): one tick of latency, the input's
register, as for any level the world drives. Exposures that abut (``busy``
with a trigger on the very tick the readout ends) keep the level high, with
no edge between them. Stopping an acquisition drops the level on the next
tick.

It only uses the engine's public scheduling (``set_input`` at a future tick,
``call_at``), from inside the simulation, in tick order with the blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from .timing import Exposure

if TYPE_CHECKING:
    from ..panda.engine import Engine

__all__ = ["LEVEL_SIGNALS", "LevelSignal", "TtlinOutput"]

#: Which of the detector's levels drives the input.
LevelSignal = Literal["exposing", "busy"]
LEVEL_SIGNALS: tuple[str, ...] = get_args(LevelSignal)


class TtlinOutput:
    """Drives ``block``'s ``LEVEL`` (e.g. ``TTLIN1``) from a detector level.

    Args:
        engine: the simulated PandA's engine.
        block: the input block instance, e.g. ``TTLIN1``.
        signal: ``exposing`` (high from the start of each exposure to its
            end) or ``busy`` (to the end of its readout).
    """

    def __init__(self, engine: Engine, block: str, signal: LevelSignal) -> None:
        if block not in engine.blocks or "LEVEL" not in engine.blocks[block].INPUTS:
            raise ValueError(f"{block} is not a TTL input of this PandA")
        if signal not in LEVEL_SIGNALS:
            raise ValueError(f"signal must be one of {LEVEL_SIGNALS}, not {signal!r}")
        self.engine = engine
        self.block = block
        self.signal: LevelSignal = signal
        #: The level last written (what the input will read once applied).
        self.level = 0
        # Bumped by every exposure start and stop: a scheduled fall that
        # finds another generation belongs to an exposure already superseded.
        self._generation = 0

    def _write(self, ts: int, level: int) -> None:
        """The level changes on tick ``ts``: the input reads it one tick on."""
        if level != self.level:
            self.level = level
            self.engine.set_input(self.block, "LEVEL", level, ts + 1)

    def started(self, exposure: Exposure, gated: bool) -> None:
        """``exposure`` started on its ``start`` tick (call on that tick).

        Its end is known now unless it is ``gated`` (it lasts until the gate
        closes: call :meth:`gate_closed` then).
        """
        self._generation += 1
        self._write(exposure.start, 1)
        if not gated:
            end = exposure.ready if self.signal == "busy" else exposure.end
            self._fall_at(end, exposure.start)

    def gate_closed(self, ts: int, ready: int) -> None:
        """A gated exposure ended on tick ``ts`` (now); read out by ``ready``."""
        self._fall_at(ready if self.signal == "busy" else ts, ts)

    def _fall_at(self, ts: int, now: int) -> None:
        """The level is to fall on tick ``ts``; this is tick ``now``."""
        generation = self._generation
        if ts <= now:
            self._write(ts, 0)
            return

        def fall(tick: int) -> None:
            if generation == self._generation:
                self._write(tick, 0)

        self.engine.call_at(ts, fall)

    def stop(self) -> None:
        """The acquisition stopped: the level drops on the next tick."""
        self._generation += 1
        self._write(self.engine.now, 0)
