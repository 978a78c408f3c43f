"""The ACQ427 FMC card: eight ADC inputs (FMC_IN) and four DAC outputs (FMC_OUT).

Simulated input signals. What each ADC channel sees is a :class:`Signal`, a
pure description of a voltage as a function of the FPGA tick:

* :class:`Constant` ``(volts)``;
* :class:`Ramp` ``(start, slope, t0=0, period=None)``: ``start + slope * t``
  volts, ``t`` in seconds since tick ``t0``; with ``period`` (seconds) a
  sawtooth restarting from ``start`` every period (``t`` is taken modulo the
  period in ticks, so a period of whole ticks restarts exactly on them);
* :class:`Sine` ``(amplitude, frequency, phase=0.0, offset=0.0)``:
  ``offset + amplitude * sin(2 pi frequency t + phase)``, ``t`` in seconds
  since tick 0;
* :class:`Noise` ``(sigma, mean=0.0, seed=0)``: Gaussian noise, a pure
  function of ``(seed, tick)`` so every run and every call pattern sees the
  same samples;
* :class:`AxisSignal` ``(axis, gain=1.0, offset=0.0, func=None)``: a function
  of a simulated axis' position, ``offset + gain * position`` volts, or
  ``func(position)`` if given (e.g. a peak a scan should find).

Every channel defaults to ``Constant(0.0)``: an unconnected input reads 0 V
and costs no events. Select a signal from Python on the block model, then
tell the engine so the block is woken::

    fmc = panda.engine.blocks["FMC_IN"]
    fmc.set_signal(3, Sine(amplitude=2.0, frequency=1e3))
    panda.engine.set_input("FMC_IN", "RESYNC", 1)

``RESYNC`` (any value) is also what to write after replanning the motion of
an axis an :class:`AxisSignal` follows, as for INENC.

Out of process, the control port's ``*SIM.SIGNAL.FMC_IN<ch>=<kind> ...``
command (:mod:`..world_control`) and ``python -m sim_ioc --fmc-signal`` do the
same for every signal but a custom ``func``.

Conversion. The ADC converts all channels every :data:`SAMPLE_TICKS` ticks
(1 MHz), on ticks that are multiples of it; ``VALn`` takes the channel's
voltage at the conversion tick and holds it until the next one. The input
range is set per channel by ``GAINn`` (0: +-10 V, 1: +-5 V, 2: +-2.5 V,
3: +-1.25 V); the 18-bit conversion is clipped to the range and
left-justified in 32 bits, so ``VALn * SCALE`` (SCALE = 10 V / 2**31) is the
voltage on the 10 V range and a multiple of it on the others, as on the
hardware whose SCALE does not follow the gain. A new gain or signal applies
from the next conversion.

``TTL`` (the card's clock input) stays low and ``ADC_B_FITTED`` reads 0
(fitted); FMC_OUT's ``DAC_FITTED`` reads 0 (fitted).

Event driven: the block is woken at conversion ticks only while some
channel's signal is changing (not for constants, nor for an axis standing
still), so the default costs nothing.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ...world import TICKS_PER_SECOND, Axis
from . import register
from .base import Block, Bus, TableMemory, to_int32

#: Ticks between ADC conversions (125 MHz / 125 = 1 MHz).
SAMPLE_TICKS = 125
#: ADC resolution; samples are left-justified in the 32-bit VAL.
ADC_BITS = 18
#: Full-scale input voltage of each GAIN setting.
GAIN_RANGES = (10.0, 5.0, 2.5, 1.25)
#: Number of ADC channels.
CHANNELS = 8

_MASK64 = (1 << 64) - 1


class Signal(ABC):
    """A simulated input voltage as a pure function of the tick."""

    @abstractmethod
    def volts(self, ts: int) -> float:
        """The voltage at tick ``ts``."""

    def steady(self, ts: int) -> bool:
        """Whether the voltage keeps its tick-``ts`` value from ``ts`` on."""
        return False


@dataclass(frozen=True)
class Constant(Signal):
    """A constant voltage."""

    value: float = 0.0

    def volts(self, ts: int) -> float:
        return self.value

    def steady(self, ts: int) -> bool:
        return True


@dataclass(frozen=True)
class Ramp(Signal):
    """``start + slope * t`` (V, V/s), ``t`` seconds since tick ``t0``.

    With ``period`` (s), a sawtooth: ``t`` is taken modulo the period.
    Before ``t0`` the ramp holds ``start``.
    """

    start: float = 0.0
    slope: float = 1.0
    t0: int = 0
    period: float | None = None

    def volts(self, ts: int) -> float:
        elapsed: float = max(ts - self.t0, 0)
        if self.period:
            # Modulo in ticks: exact when the period is a whole number of
            # ticks, so every period restarts from ``start`` exactly.
            elapsed = math.fmod(elapsed, self.period * TICKS_PER_SECOND)
        return self.start + self.slope * (elapsed / TICKS_PER_SECOND)

    def steady(self, ts: int) -> bool:
        return self.slope == 0


@dataclass(frozen=True)
class Sine(Signal):
    """``offset + amplitude * sin(2 pi frequency t + phase)``, ``t`` in s."""

    amplitude: float = 1.0
    frequency: float = 1000.0
    phase: float = 0.0
    offset: float = 0.0

    def volts(self, ts: int) -> float:
        t = ts / TICKS_PER_SECOND
        return self.offset + self.amplitude * math.sin(
            2 * math.pi * self.frequency * t + self.phase
        )

    def steady(self, ts: int) -> bool:
        return self.amplitude == 0 or self.frequency == 0


def _splitmix64(x: int) -> int:
    """A well-mixed 64-bit hash of ``x`` (the SplitMix64 finaliser)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


@dataclass(frozen=True)
class Noise(Signal):
    """Gaussian noise of standard deviation ``sigma`` around ``mean`` (V).

    Each tick's value is derived from ``(seed, tick)`` alone (counter-based
    hashing and a Box-Muller transform), so it does not depend on which
    ticks were sampled before.
    """

    sigma: float = 0.01
    mean: float = 0.0
    seed: int = 0

    def volts(self, ts: int) -> float:
        key = ((self.seed & 0xFFFFFFFF) << 32 | (ts & 0xFFFFFFFF)) << 1
        # Two uniforms in (0, 1] and [0, 1) from 53 bits of each hash.
        u1 = ((_splitmix64(key) >> 11) + 1) / (1 << 53)
        u2 = (_splitmix64(key | 1) >> 11) / (1 << 53)
        gauss = math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)
        return self.mean + self.sigma * gauss

    def steady(self, ts: int) -> bool:
        return self.sigma == 0


@dataclass(frozen=True, eq=False)
class AxisSignal(Signal):
    """A function of a simulated axis' position.

    ``offset + gain * position`` volts, or ``func(position)`` when ``func``
    is given (``gain`` and ``offset`` are then unused).
    """

    axis: Axis
    gain: float = 1.0
    offset: float = 0.0
    func: Callable[[float], float] | None = None

    def volts(self, ts: int) -> float:
        position = self.axis.position(ts)
        if self.func is not None:
            return self.func(position)
        return self.offset + self.gain * position

    def steady(self, ts: int) -> bool:
        # Still, with no motion planned after ts.
        seg = self.axis.segment_at(ts)
        standing = seg is None or seg.velocity == 0 or ts >= seg.t1
        return standing and all(s.t0 <= ts for s in self.axis.segments)


def adc_code(volts: float, gain: int) -> int:
    """The 32-bit VAL an 18-bit conversion of ``volts`` gives on range ``gain``."""
    full = 1 << (ADC_BITS - 1)
    code = math.floor(volts / GAIN_RANGES[gain & 3] * full + 0.5)
    code = min(max(code, -full), full - 1)
    return to_int32(code << (32 - ADC_BITS))


#: The signal of every channel until told otherwise.
DEFAULT_SIGNAL: Signal = Constant(0.0)

_VALS = tuple(f"VAL{n}" for n in range(1, CHANNELS + 1))
_GAINS = tuple(f"GAIN{n}" for n in range(1, CHANNELS + 1))
_GAIN_SET = frozenset(_GAINS)


@register
class FmcIn(Block):
    """The ACQ427's eight ADC channels, sampling simulated :class:`Signal` s.

    See the module docstring for the signals, the conversion and how to
    select a signal.
    """

    NAME = "FMC_IN"
    INPUTS = (*_GAINS, "RESYNC")
    OUTPUTS = (*_VALS, "TTL", "ADC_B_FITTED")

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        self._signals: list[Signal] = [DEFAULT_SIGNAL] * CHANNELS
        #: Ticks between conversions (a coarser period trades fidelity for
        #: fewer events).
        self.sample_ticks = SAMPLE_TICKS
        #: A signal or gain changed since the last conversion.
        self._dirty = True
        #: Tick of the last conversion reported on VALn.
        self._last: int | None = None

    @property
    def signals(self) -> Sequence[Signal]:
        """The signal of each channel, channel 1 first."""
        return tuple(self._signals)

    def set_signal(self, channel: int, signal: Signal) -> None:
        """Feed ``signal`` to ADC ``channel`` (1-8) from the next conversion.

        The engine only calls blocks on events: write ``RESYNC`` afterwards
        so the block is woken to take the new signal into account.
        """
        if not 1 <= channel <= CHANNELS:
            raise ValueError(f"FMC_IN has channels 1-{CHANNELS}, not {channel}")
        self._signals[channel - 1] = signal
        self._dirty = True

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        self.apply_inputs(changes)
        if "RESYNC" in changes or not _GAIN_SET.isdisjoint(changes):
            self._dirty = True
        period = self.sample_ticks
        if ts % period == 0 or self._last is None:
            # The first call reports the conversion just before it.
            self._convert(ts - ts % period)
        last = self._last
        assert last is not None
        # Steady since the last conversion: later ones would read the same.
        if self._dirty or not all(s.steady(last) for s in self._signals):
            return (ts // period + 1) * period
        return None

    def _convert(self, tick: int) -> None:
        v = self.values
        for val, gain, signal in zip(_VALS, _GAINS, self._signals, strict=True):
            self.set_output(val, adc_code(signal.volts(tick), v[gain]))
        self._dirty = False
        self._last = tick


@register
class FmcOut(Block):
    """The ACQ427's four DAC channels: they hold their inputs for the world.

    ``VALn`` is a position whose full 32-bit range spans the channel's output
    range, +-5 V (``GAINn`` = 0) or +-10 V (1); :meth:`volts` gives the
    voltage. Nothing is driven onto the buses; ``DAC_FITTED`` reads 0.
    """

    NAME = "FMC_OUT"
    INPUTS = ("VAL1", "VAL2", "VAL3", "VAL4", "GAIN1", "GAIN2", "GAIN3", "GAIN4")
    OUTPUTS = ("DAC_FITTED",)

    def volts(self, channel: int) -> float:
        """The output voltage of DAC ``channel`` (1-4)."""
        span = 10.0 if self.values[f"GAIN{channel}"] & 1 else 5.0
        return to_int32(self.values[f"VAL{channel}"]) / (1 << 31) * span

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        self.apply_inputs(changes)
        return None
