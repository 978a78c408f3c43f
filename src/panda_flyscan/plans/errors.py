"""The errors the plans raise of their own."""

from __future__ import annotations

__all__ = ["DroppedTriggersError", "PlanArgumentError"]


class PlanArgumentError(ValueError):
    """A plan argument that cannot work; raised before anything is armed."""


class DroppedTriggersError(RuntimeError):
    """A detector reported triggers it missed: its frames no longer line up
    one-to-one with the PandA's rows, so the scan was stopped (the run keeps
    what was captured)."""
