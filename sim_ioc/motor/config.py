"""How a simulated motor is built (and its fields at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MotorConfig"]


@dataclass(frozen=True)
class MotorConfig:
    """How a simulated motor is built (and its fields at start-up)."""

    #: World axis it drives; the PandA's INENC of the same name reads it.
    axis: str = "INENC1"
    #: Encoder counts per engineering unit (1000: one count per micrometre).
    resolution: float = 1000.0
    #: Encoder counts at dial position 0.
    offset: float = 0.0
    egu: str = "mm"
    precision: int = 4
    velocity: float = 1.0  # VELO, EGU/s
    max_velocity: float = 10.0  # VMAX, EGU/s
    acceleration_time: float = 0.1  # ACCL, s from rest to VELO
    low_limit: float = -100.0  # DLLM
    high_limit: float = 100.0  # DHLM
    description: str = "Simulated motor"
