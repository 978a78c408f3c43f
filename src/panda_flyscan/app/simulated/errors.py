"""The simulated beamline's one error type."""

from __future__ import annotations

from ...processes import ProcessError

__all__ = ["BeamlineError"]


class BeamlineError(ProcessError):
    """A simulated beamline could not be started."""
