"""How the PandA is cabled to the beamline, as data.

Plans look block numbers up here instead of hard-coding them: which TTL output
triggers which detector, which encoder input reads which motor, and which
SEQ/PCOMP/PCAP-facing blocks a plan may use.

>>> wiring = PandaWiring(
...     detectors=(DetectorWiring("saxs", ttlout=1),),
...     encoders=(EncoderWiring("x", inenc=1),),
... )
>>> wiring.encoder_for("x")
1
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["DetectorWiring", "EncoderWiring", "PandaWiring", "WiringError"]


class WiringError(ValueError):
    """A device the plan needs is not described in the wiring."""


@dataclass(frozen=True)
class DetectorWiring:
    """PandA output ``TTLOUT<ttlout>`` is cabled to the trigger input of
    ``detector`` (the ophyd device name)."""

    detector: str
    ttlout: int


@dataclass(frozen=True)
class EncoderWiring:
    """PandA input ``INENC<inenc>`` reads the encoder of ``motor``.

    The PandA's ``INENC<inenc>.VAL.SCALE`` and ``.OFFSET`` must convert counts to
    the motor's units (``position = counts * scale + offset``); plans read them
    from the PandA to place position-compare points.
    """

    motor: str
    inenc: int


@dataclass(frozen=True)
class PandaWiring:
    """Everything a plan needs to know about the cabling.

    ``seq`` and ``pcomp`` name the instances the plans program (default 1);
    change them if those are used for something else.
    """

    detectors: tuple[DetectorWiring, ...] = ()
    encoders: tuple[EncoderWiring, ...] = ()
    seq: int = 1
    pcomp: int = 1
    #: Free-form notes shown in the run's metadata.
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
            "detectors": {d.detector: f"TTLOUT{d.ttlout}" for d in self.detectors},
            "encoders": {e.motor: f"INENC{e.inenc}" for e in self.encoders},
            "seq": f"SEQ{self.seq}",
            "pcomp": f"PCOMP{self.pcomp}",
            **({"notes": dict(self.notes)} if self.notes else {}),
        }
