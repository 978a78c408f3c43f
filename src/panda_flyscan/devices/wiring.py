"""How the PandA is cabled to the beamline, as data.

Plans look block numbers up here instead of hard-coding them: which TTL output
triggers which detector, which encoder input reads which motor, and which
SEQ/PCOMP/PCAP-facing blocks a plan may use.

The classes are pydantic dataclasses: names must be non-empty and block
numbers at least 1, and a bad value is a :class:`WiringError` when the wiring
is built, not a failed scan later.

>>> wiring = PandaWiring(
...     detectors=(DetectorWiring("saxs", ttlout=1),),
...     encoders=(EncoderWiring("x", inenc=1),),
... )
>>> wiring.encoder_for("x")
1
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails

__all__ = ["DetectorWiring", "EncoderWiring", "PandaWiring", "WiringError"]


class WiringError(ValueError):
    """A device the plan needs is not described in the wiring, or the wiring
    itself is wrong (a bad block number, a device wired twice)."""


_Cls = TypeVar("_Cls", bound=type)

#: An ophyd device name.
DeviceName = Annotated[str, Field(min_length=1)]
#: A PandA block instance: TTLOUT1, INENC2, SEQ1, ... (numbered from 1).
BlockNumber = Annotated[int, Field(ge=1)]


def _raises_wiring_error(cls: _Cls) -> _Cls:
    """Make pydantic's ValidationError on construction a :class:`WiringError`."""
    init: Callable[..., None] = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as err:
            names = [f.name for f in dataclasses.fields(cls)]
            problems = [_describe(cls.__name__, names, e) for e in err.errors()]
            raise WiringError("; ".join(problems)) from None

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def _describe(owner: str, names: list[str], error: ErrorDetails) -> str:
    if error["type"] == "value_error":  # a model validator's WiringError
        return str(error.get("ctx", {})["error"])
    # Positional arguments are located by index.
    where = ".".join(
        names[part] if isinstance(part, int) and i == 0 else str(part)
        for i, part in enumerate(error["loc"])
    )
    return f"{owner}.{where}: {error['msg']} (got {error['input']!r})"


@_raises_wiring_error
@dataclass(frozen=True)
class DetectorWiring:
    """PandA output ``TTLOUT<ttlout>`` is cabled to the trigger input of
    ``detector`` (the ophyd device name).

    ``divider``: the ``DIV<divider>`` block that divides the detector's
    trigger train when a plan runs it at a fraction of the frame rate (e.g.
    ``spec_scan(..., divisors={"det2": 10})``); None if it never does.
    """

    detector: DeviceName
    ttlout: BlockNumber
    divider: BlockNumber | None = None


@_raises_wiring_error
@dataclass(frozen=True)
class EncoderWiring:
    """PandA input ``INENC<inenc>`` reads the encoder of ``motor``.

    The PandA's ``INENC<inenc>.VAL.SCALE`` and ``.OFFSET`` must convert counts to
    the motor's units (``position = counts * scale + offset``); plans read them
    from the PandA to place position-compare points.
    """

    motor: DeviceName
    inenc: BlockNumber


@_raises_wiring_error
@dataclass(frozen=True)
class PandaWiring:
    """Everything a plan needs to know about the cabling.

    ``seq`` and ``pcomp`` name the instances the plans program (default 1);
    change them if those are used for something else. ``bit`` is the
    ``BITS`` output (A-D) a plan raises to tell the SEQ that the motors have
    arrived at a point of a step path (``spec_scan``).
    """

    detectors: tuple[DetectorWiring, ...] = ()
    encoders: tuple[EncoderWiring, ...] = ()
    seq: BlockNumber = 1
    pcomp: BlockNumber = 1
    bit: Literal["A", "B", "C", "D"] = "A"
    #: Free-form notes shown in the run's metadata.
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    @model_validator(mode="after")
    def _each_wired_once(self) -> Self:
        for kind, names in (
            ("detector", [d.detector for d in self.detectors]),
            ("motor", [e.motor for e in self.encoders]),
        ):
            if dupes := sorted({n for n in names if names.count(n) > 1}):
                raise WiringError(f"{kind}(s) {dupes} wired more than once")
        ttl = [d.ttlout for d in self.detectors]
        if dupes := sorted({n for n in ttl if ttl.count(n) > 1}):
            # Two detectors on one output is legal cabling (a splitter) but
            # almost always a typo; say so rather than guess.
            raise WiringError(f"TTLOUT{dupes} drive more than one detector")
        div = [d.divider for d in self.detectors if d.divider is not None]
        if dupes := sorted({n for n in div if div.count(n) > 1}):
            raise WiringError(
                f"DIV{dupes} divide the trigger of more than one detector"
            )
        return self

    def ttlout_for(self, detector: str) -> int:
        """The TTL output that triggers ``detector``."""
        for d in self.detectors:
            if d.detector == detector:
                return d.ttlout
        known = ", ".join(d.detector for d in self.detectors) or "none"
        raise WiringError(
            f"detector {detector!r} is not in the PandA wiring (wired detectors: "
            f"{known}); add DetectorWiring({detector!r}, ttlout=N)"
        )

    def divider_for(self, detector: str) -> int:
        """The DIV block that divides ``detector``'s trigger train."""
        self.ttlout_for(detector)  # raises if the detector is not wired at all
        found = next(d.divider for d in self.detectors if d.detector == detector)
        if found is None:
            raise WiringError(
                f"detector {detector!r} has no divider in the PandA wiring: to "
                "trigger it every k-th frame, give it a DIV block, e.g. "
                f"DetectorWiring({detector!r}, ttlout=N, divider=1)"
            )
        return found

    def ttlouts_for(self, detectors: Iterable[str]) -> dict[str, int]:
        """TTL output of each detector, by name."""
        return {name: self.ttlout_for(name) for name in detectors}

    def encoder_for(self, motor: str) -> int:
        """The INENC block that reads ``motor``."""
        for e in self.encoders:
            if e.motor == motor:
                return e.inenc
        known = ", ".join(e.motor for e in self.encoders) or "none"
        raise WiringError(
            f"motor {motor!r} has no encoder in the PandA wiring (wired motors: "
            f"{known}); add EncoderWiring({motor!r}, inenc=N)"
        )

    def as_metadata(self) -> dict[str, object]:
        """A JSON-able description for the run's start document."""
        return {
            "detectors": {
                d.detector: f"TTLOUT{d.ttlout}"
                + ("" if d.divider is None else f" (divided by DIV{d.divider})")
                for d in self.detectors
            },
            "encoders": {e.motor: f"INENC{e.inenc}" for e in self.encoders},
            "seq": f"SEQ{self.seq}",
            "pcomp": f"PCOMP{self.pcomp}",
            "bit": f"BITS.OUT{self.bit}",
            **({"notes": dict(self.notes)} if self.notes else {}),
        }
