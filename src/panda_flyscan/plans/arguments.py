"""Checking the plans' arguments before anything is read, written or armed.

Numbers are checked by a small pydantic model per plan (:class:`PlanArguments`
subclasses, in the plan modules) built from the constrained types here
(:data:`Count`, :data:`Seconds`, :data:`Speed`, :data:`Coordinate`); rules
across arguments are the models' ``model_validator``\\ s. A bad value is a
:class:`PlanArgumentError` naming the argument, the value and what to change.
The devices, wiring and captures a plan is given are checked here too.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Self, get_args

from ophyd_async.core import StandardDetector
from ophyd_async.fastcs.panda import HDFPanda
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from ..devices import Capture, CaptureError, FlyscanPanda, PandaWiring
from ..devices.capture import check_captures
from .errors import PlanArgumentError

__all__ = [
    "TS_TRIG",
    "Coordinate",
    "Count",
    "PlanArguments",
    "Seconds",
    "Speed",
    "Unit",
    "check_detectors",
    "check_fly_motor",
    "panda_defaults",
]

#: The timestamp every plan captures (added if not declared).
TS_TRIG = Capture("PCAP.TS_TRIG", "trigger_time")


@dataclass(frozen=True)
class Unit:
    """Marks a number's unit, for error messages (``Annotated[float, Unit("s")]``)."""

    symbol: str


def _whole_number(value: Any) -> int:
    # pydantic's int also takes True, 3.0 and "3"; a count must be an integer
    # (numpy's included).
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PydanticCustomError("whole_number", "must be a whole number")
    return int(value)


def _real_number(value: Any) -> float:
    # pydantic's float also takes True and "1.5".
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PydanticCustomError("real_number", "must be a number")
    return float(value)


#: A whole number, at least 1.
Count = Annotated[int, BeforeValidator(_whole_number), Field(ge=1)]
# gt=0 also refuses NaN (NaN > 0 is false); lt=inf refuses infinity.
#: A positive, finite time in seconds.
Seconds = Annotated[
    float, BeforeValidator(_real_number), Field(gt=0, lt=math.inf), Unit("s")
]
#: A positive, finite speed in the motor's units per second.
Speed = Annotated[
    float, BeforeValidator(_real_number), Field(gt=0, lt=math.inf), Unit("units/s")
]
#: A finite position in the motor's units.
Coordinate = Annotated[float, BeforeValidator(_real_number), Field(allow_inf_nan=False)]


class PlanArguments(BaseModel):
    """A plan's numeric arguments, validated; build with :meth:`check`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def check(cls, **arguments: Any) -> Self:
        """The validated arguments; :class:`PlanArgumentError` naming each bad one.

        A ``model_validator`` raises :class:`PlanArgumentError` with its own
        message, which is passed on as it is.
        """
        try:
            return cls(**arguments)
        except ValidationError as err:
            problems = [_describe(cls, e) for e in err.errors(include_url=False)]
            raise PlanArgumentError("; ".join(problems)) from None


def _describe(model: type[BaseModel], error: ErrorDetails) -> str:
    """One pydantic error as today's plan messages phrase it."""
    ctx = error.get("ctx", {})
    if error["type"] == "value_error":  # raised by a model validator
        return str(ctx["error"])
    name = str(error["loc"][0]) if error["loc"] else model.__name__
    value = error["input"]
    unit = _unit(model.model_fields.get(name))
    match error["type"]:
        case "whole_number" | "real_number":
            return f"{name} {error['msg']}, got {value!r}"
        case "greater_than_equal":
            return f"{name} must be at least {ctx['ge']}, got {value}"
        case "greater_than" if ctx["gt"] == 0:
            return f"{name} must be positive, got {value} {unit}".rstrip()
        case "less_than" | "finite_number":
            return f"{name} must be finite, got {value} {unit}".rstrip()
        case _:
            return f"{name}: {error['msg']}, got {value!r}"


def _unit(info: FieldInfo | None) -> str:
    """The :class:`Unit` a field is annotated with (also inside ``X | None``)."""

    def markers(annotation: Any) -> Iterator[Any]:
        yield from getattr(annotation, "__metadata__", ())
        for arg in get_args(annotation):
            yield from markers(arg)

    if info is None:
        return ""
    found = (m for m in (*info.metadata, *markers(info.annotation)))
    return next((m.symbol for m in found if isinstance(m, Unit)), "")


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
