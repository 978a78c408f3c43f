"""How a simulated detector is built (fixed for the life of the IOC)."""

from __future__ import annotations

from dataclasses import dataclass

from .ttl import LevelSignal

__all__ = ["DetectorConfig"]


@dataclass(frozen=True)
class DetectorConfig:
    """How a simulated detector is built."""

    #: The PandA TTLOUT its trigger input is cabled to (``TriggerSource``).
    ttlout: int = 1
    #: Dead time after each exposure, seconds (ophyd-async's Kinetix logic
    #: assumes 1 ms).
    readout_time: float = 1e-3
    #: The PandA TTLIN the detector's exposure output is cabled to (0: none).
    ttlin: int = 1
    #: What that output shows: ``exposing`` or ``busy`` (exposing or reading
    #: out); see :mod:`.ttl`.
    ttlin_signal: LevelSignal = "exposing"
    width: int = 64
    height: int = 64
