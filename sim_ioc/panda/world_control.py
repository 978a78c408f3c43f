"""``*SIM.`` commands: steer the simulated world through the control port.

Axes (each INENC block reads the axis of the same name, in encoder counts):

* ``*SIM.POSITION.<axis>=<position>``: set the axis position;
* ``*SIM.MOVE.<axis>=<target> <speed>``: a constant-velocity move.

FMC_IN signals (what ADC channel ``<ch>``, 1-8, sees; see
:mod:`.models.fmc` for the conversion):

* ``*SIM.SIGNAL.FMC_IN<ch>=<kind> [<param>=<value> ...]``

with ``<kind>`` and its parameters (defaults in brackets; parameters may also
be given by position, in this order):

* ``constant value [0]``: volts;
* ``ramp start [0] slope [1] period [none] t0 [*]``: ``start + slope * t``
  volts, ``t`` seconds since tick ``t0``; with ``period`` (s) a sawtooth.
  ``t0`` defaults to the first ADC conversion at or after the command takes
  effect, so the first sample reads ``start`` exactly;
* ``sine amplitude [1] frequency [1000] phase [0] offset [0]``:
  ``offset + amplitude * sin(2 pi frequency t + phase)``, ``t`` seconds since
  tick 0;
* ``noise sigma [0.01] mean [0] seed [0]``: Gaussian noise, a pure function of
  ``(seed, tick)``;
* ``axis axis gain [1] offset [0]``: ``offset + gain * position`` of a
  simulated axis (e.g. ``INENC1``, the one motor ``SIM:M1`` moves), in volts
  per count.

Errors (an unknown kind or parameter, a parameter given twice, a value that is
not a finite number, a negative ``sigma``, a ``period`` that is not positive,
a non-integer ``seed`` or ``t0``, an unknown axis or channel) are answered
``ERR <why>`` and change nothing. A new signal applies from the next ADC
conversion.

Motor faults (on the motor that drives an axis: ``INENC1`` is ``SIM:M1``'s
by default; see :mod:`sim_ioc.motor` for what its record shows):

* ``*SIM.MOTOR_FAULT.<axis>=<fault>``, ``<fault>`` one of (any case):

  * ``stall``: the axis stops at once where it is; the motor's record keeps
    reporting it moving (``DMOV=0``) as a stuck amplifier would, and neither
    ``STOP`` nor a new move moves it;
  * ``stall_reported``: stopped the same, but the controller detects it
    (MSTA slip/stall bit) and reports the move done (``DMOV=1``, ``MISS=1``);
  * ``high_limit``, ``low_limit``: the limit switch at the axis's positive
    (counts increasing) or negative end is on where the axis is: it
    decelerates to rest on it; moves further that way do not start, moves
    back work and turn the switch off once past where it tripped;
  * ``none``: clears the fault (a stalled move ends where the axis stands).

* ``*SIM.MOTOR_FAULT.<axis>?``: ``OK =<fault>``, the axis's current fault.

An unknown axis or fault word is answered ``ERR <why>`` and changes nothing.
``*SIM.MOVE`` and ``*SIM.POSITION`` still move a faulted axis: they steer the
world, not the motor.

Faults (answered by the control port itself, :mod:`.protocol.control`, as
they concern the server's sockets rather than the world):

* ``*SIM.DROP_CONNECTIONS=``: reset (TCP RST, as a network fault would) every
  open control and data connection except the sender's, which gets ``OK``
  once they are gone: e.g. the IOC's connections, to test its recovery;
* ``*SIM.CONNECTIONS?``: ``OK =<control> <data>``, how many connections of
  each port are open (the sender's included).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..world import FaultKind, World
from .fields import FieldError, parse_float
from .models.fmc import (
    CHANNELS,
    SAMPLE_TICKS,
    AxisSignal,
    Constant,
    FmcIn,
    Noise,
    Ramp,
    Signal,
    Sine,
)

if TYPE_CHECKING:
    from .device import SimulatedPanda

#: What ``*SIM.SIGNAL`` controls: ``FMC_IN<ch>``.
FMC_BLOCK = "FMC_IN"


@dataclass(frozen=True)
class _Param:
    """A parameter of a signal kind: its name and how its text is read."""

    name: str
    kind: str = "float"  # "float", "int" (an integer) or "name" (a word)


#: The parameters of each signal kind, in positional order.
SIGNAL_PARAMS: dict[str, tuple[_Param, ...]] = {
    "constant": (_Param("value"),),
    "ramp": (_Param("start"), _Param("slope"), _Param("period"), _Param("t0", "int")),
    "sine": (
        _Param("amplitude"),
        _Param("frequency"),
        _Param("phase"),
        _Param("offset"),
    ),
    "noise": (_Param("sigma"), _Param("mean"), _Param("seed", "int")),
    "axis": (_Param("axis", "name"), _Param("gain"), _Param("offset")),
}


def _number(name: str, text: str) -> float:
    value = parse_float(text)
    if not math.isfinite(value):
        raise FieldError(f"{name} must be a finite number, not {text!r}")
    return value


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FieldError(f"{name} must be an integer, not {text!r}") from None


def _arguments(kind: str, words: list[str]) -> dict[str, str]:
    """``words`` (positional, then ``name=value``) by parameter name."""
    params = SIGNAL_PARAMS[kind]
    names = [p.name for p in params]
    given: dict[str, str] = {}
    keywords = False
    for i, word in enumerate(words):
        name, eq, text = word.partition("=")
        if not eq:
            if keywords:
                raise FieldError(f"Positional value {word!r} after name=value")
            if i >= len(names):
                raise FieldError(
                    f"{kind} takes at most {len(names)} values: {' '.join(names)}"
                )
            name, text = names[i], word
        else:
            keywords = True
            if name not in names:
                raise FieldError(
                    f"{kind} has no parameter {name!r} (it has {', '.join(names)})"
                )
        if name in given:
            raise FieldError(f"{name} given twice")
        if not text:
            raise FieldError(f"{name} needs a value")
        given[name] = text
    return given


def parse_signal(text: str, world: World, now: int) -> Signal:
    """The :class:`~.models.fmc.Signal` a ``*SIM.SIGNAL`` value describes.

    ``now`` is the tick the command takes effect on (a ramp's default
    ``t0`` is the first conversion from then on); axes are looked up in
    ``world``. Raises :class:`FieldError` saying what is wrong.
    """
    words = text.split()
    if not words:
        raise FieldError(f"Signal needs a kind: {', '.join(SIGNAL_PARAMS)}")
    kind = words[0].lower()
    if kind not in SIGNAL_PARAMS:
        raise FieldError(
            f"Unknown signal {words[0]!r}: expected one of {', '.join(SIGNAL_PARAMS)}"
        )
    given = _arguments(kind, words[1:])
    values: dict[str, float] = {}
    for p in SIGNAL_PARAMS[kind]:
        if p.name in given and p.kind != "name":
            read: Callable[[str, str], float] = _integer if p.kind == "int" else _number
            values[p.name] = read(p.name, given[p.name])
    match kind:
        case "constant":
            return Constant(values.get("value", 0.0))
        case "ramp":
            period = values.get("period")
            if period is not None and period <= 0:
                raise FieldError("period must be positive")
            t0 = values.get("t0")
            if t0 is None:
                t0 = -(-now // SAMPLE_TICKS) * SAMPLE_TICKS
            elif t0 < 0:
                raise FieldError("t0 must not be negative")
            return Ramp(
                start=values.get("start", 0.0),
                slope=values.get("slope", 1.0),
                t0=int(t0),
                period=period,
            )
        case "sine":
            return Sine(
                amplitude=values.get("amplitude", 1.0),
                frequency=values.get("frequency", 1000.0),
                phase=values.get("phase", 0.0),
                offset=values.get("offset", 0.0),
            )
        case "noise":
            sigma = values.get("sigma", 0.01)
            if sigma < 0:
                raise FieldError("sigma must not be negative")
            return Noise(
                sigma=sigma,
                mean=values.get("mean", 0.0),
                seed=int(values.get("seed", 0)),
            )
        case _:  # axis
            name = given.get("axis")
            if name is None:
                raise FieldError("axis needs an axis name, e.g. axis INENC1")
            if name not in world.axes:
                raise FieldError(
                    f"No such axis {name!r} (there are {', '.join(sorted(world.axes))})"
                )
            return AxisSignal(
                world.axes[name],
                gain=values.get("gain", 1.0),
                offset=values.get("offset", 0.0),
            )


def fmc_channel(name: str) -> int:
    """The ADC channel ``FMC_IN<ch>`` names (1-8)."""
    number = name.removeprefix(FMC_BLOCK)
    if number == name or not number.isdigit() or not 1 <= int(number) <= CHANNELS:
        raise FieldError(
            f"*SIM.SIGNAL drives {FMC_BLOCK}1..{FMC_BLOCK}{CHANNELS}, not {name!r}"
        )
    return int(number)


def parse_fault(text: str) -> FaultKind:
    """The :class:`~sim_ioc.world.FaultKind` a ``*SIM.MOTOR_FAULT`` value names."""
    try:
        return FaultKind(text.strip().lower())
    except ValueError:
        raise FieldError(
            f"Unknown motor fault {text.strip()!r}: expected one of "
            f"{', '.join(k.value for k in FaultKind)}"
        ) from None


def _faulted_axis(world: World, name: str) -> str:
    """``name``, checked to be one of ``world``'s axes."""
    if not name:
        raise FieldError("*SIM.MOTOR_FAULT needs an axis, e.g. *SIM.MOTOR_FAULT.INENC1")
    if name not in world.axes:
        raise FieldError(
            f"No such axis {name!r} (there are {', '.join(sorted(world.axes))})"
        )
    return name


def motor_fault(panda: SimulatedPanda, name: str) -> str:
    """``*SIM.MOTOR_FAULT.<name>?``: the fault on axis ``name``'s motor."""
    return panda.world.axes[_faulted_axis(panda.world, name)].fault.kind.value


def apply_sim_command(panda: SimulatedPanda, target: str, value: str) -> None:
    """Apply ``*SIM.<target>=<value>`` (see the module docstring)."""
    verb, _, name = target.partition(".")
    if not name:
        example = "FMC_IN1" if verb == "SIGNAL" else "INENC1"
        raise FieldError(f"*SIM.{verb} needs a name, e.g. *SIM.{verb}.{example}")
    ts = panda.now + 1
    if verb == "MOTOR_FAULT":
        axis = panda.world.axes[_faulted_axis(panda.world, name)]
        axis.set_fault(ts, parse_fault(value))
        panda.resync_encoders()
        return
    if verb == "SIGNAL":
        channel = fmc_channel(name)
        signal = parse_signal(value, panda.world, ts)
        fmc = panda.engine.blocks.get(FMC_BLOCK)
        if not isinstance(fmc, FmcIn):
            raise FieldError(f"No {FMC_BLOCK} block")
        fmc.set_signal(channel, signal)
        panda.engine.set_input(FMC_BLOCK, "RESYNC", 1, ts)
        return
    if verb not in ("MOVE", "POSITION"):
        raise FieldError(
            f"Unknown command *SIM.{verb} "
            "(MOVE, POSITION, SIGNAL, MOTOR_FAULT, DROP_CONNECTIONS)"
        )
    axis = panda.world.axis(name)
    args = value.split()
    match verb, len(args):
        case "MOVE", 2:
            target_pos, speed = parse_float(args[0]), parse_float(args[1])
            if speed <= 0:
                raise FieldError("Speed must be positive")
            axis.move(ts, target_pos, speed)
        case "POSITION", 1:
            axis.set_position(ts, parse_float(args[0]))
        case _:
            raise FieldError(f"Unknown or malformed *SIM.{verb} command")
    panda.resync_encoders()
