"""The errors the plans raise of their own."""

from __future__ import annotations

__all__ = [
    "CaptureStalled",
    "DetectorStalled",
    "DiskFull",
    "DroppedTriggersError",
    "HealthError",
    "MotorFault",
    "PandaLinkLost",
    "PlanArgumentError",
    "TableRanDry",
    "WriterFailed",
]


class PlanArgumentError(ValueError):
    """A plan argument that cannot work; raised before anything is armed."""


class DroppedTriggersError(RuntimeError):
    """A detector reported triggers it missed: its frames no longer line up
    one-to-one with the PandA's rows, so the scan was stopped (the run keeps
    what was captured)."""


class HealthError(RuntimeError):
    """Something a running flyscan depends on failed; the scan was stopped and
    the run closed (exit status "fail") with the rows captured before.

    The message names the component, what was seen and what to do;
    :attr:`component` names the component alone (e.g. ``"TEST:PANDA (IOC)"``).
    """

    def __init__(self, component: str, message: str) -> None:
        super().__init__(message)
        self.component = component


class PandaLinkLost(HealthError):
    """The PandA's IOC stopped answering, or says it lost the PandA."""

    def __init__(
        self,
        component: str,
        message: str,
        *,
        ioc_answers: bool,
        restarted: bool = False,
    ) -> None:
        super().__init__(component, message)
        #: Whether the IOC itself still answers (it lost the PandA, or a new
        #: one took its place), so its records can be written during clean-up.
        self.ioc_answers = ioc_answers
        #: A new IOC answers in place of the one the scan armed (which took
        #: the capture with it): the PandA can be disarmed through it, but no
        #: more rows will come.
        self.restarted = restarted


class CaptureStalled(HealthError):
    """The PandA sent no new row for much longer than the scan allows."""


class WriterFailed(HealthError):
    """The PandA IOC's HDF5 writer stopped writing the rows it receives."""


class DiskFull(WriterFailed):
    """The data directory has (almost) no free space left."""


class DetectorStalled(HealthError):
    """A detector stopped delivering frames while the PandA kept triggering."""


class MotorFault(HealthError):
    """A motor hit a limit switch, reports a problem, or stopped moving."""


class TableRanDry(HealthError):
    """A streamed SEQ table ran out of lines before the next buffer reached
    the PandA (the firmware's "DMA underrun"): the sequencer stopped, no frame
    after :attr:`frame` was triggered, and the run keeps the frames before."""

    def __init__(self, component: str, message: str, *, frame: int) -> None:
        super().__init__(component, message)
        #: The first frame not triggered (from 0).
        self.frame = frame
