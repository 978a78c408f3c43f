"""``*SIM.`` commands: steer the simulated world through the control port."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .fields import FieldError, parse_float

if TYPE_CHECKING:
    from .device import SimulatedPanda


def apply_sim_command(panda: SimulatedPanda, target: str, value: str) -> None:
    """Apply ``*SIM.<target>=<value>``."""
    verb, _, axis_name = target.partition(".")
    if not axis_name:
        raise FieldError(f"*SIM.{verb} needs an axis name, e.g. *SIM.{verb}.INENC1")
    axis = panda.world.axis(axis_name)
    ts = panda.now + 1
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
