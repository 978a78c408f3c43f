"""The simulated beamline's area detector, and what plans ask of any detector.

The simulated detector (``sim_ioc.detector``) serves ADKinetix's cam PVs plus
three of its own: ``ReadoutTime_RBV`` (dead time after each exposure),
``DroppedTriggers_RBV`` (triggers that arrived while it was busy, since the
last ``Acquire=1``) and ``TriggerSource`` (which PandA TTLOUT its trigger
cable comes from). :class:`SimulatedDetector` is ophyd-async's stock
``KinetixDetector`` with those three signals, and a trigger logic whose dead
time is the detector's own readout time instead of a constant.

The plans look for a ``dropped_triggers`` signal on any detector (or its
``driver``, see :func:`dropped_triggers_signal`): a real detector that counts
missed triggers can expose one the same way and get the same check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated as A
from typing import Any

from ophyd_async.core import PathProvider, SignalDict, SignalR, SignalRW
from ophyd_async.epics.adcore import ADAcquireLogic, ADWriterFactory, AreaDetector
from ophyd_async.epics.adkinetix import KinetixDriverIO, KinetixTriggerLogic
from ophyd_async.epics.core import PvSuffix

__all__ = [
    "SimulatedDetector",
    "SimulatedDetectorDriverIO",
    "SimulatedDetectorTriggerLogic",
    "dropped_triggers_signal",
]


class SimulatedDetectorDriverIO(KinetixDriverIO):
    """ADKinetix's cam, plus the simulated detector's own PVs."""

    readout_time: A[SignalR[float], PvSuffix("ReadoutTime_RBV")]
    dropped_triggers: A[SignalR[int], PvSuffix("DroppedTriggers_RBV")]
    trigger_source: A[SignalRW[str], PvSuffix("TriggerSource")]


@dataclass
class SimulatedDetectorTriggerLogic(KinetixTriggerLogic):
    """Kinetix triggering; the dead time is the detector's ``ReadoutTime_RBV``."""

    driver: SimulatedDetectorDriverIO  # type: ignore[assignment]

    def config_sigs(self) -> set[SignalR[Any]]:
        return {self.driver.readout_time}

    def get_deadtime(self, config_values: SignalDict) -> float:
        return float(config_values[self.driver.readout_time])


class SimulatedDetector(AreaDetector[SimulatedDetectorDriverIO]):
    """The simulated area detector (cam ``cam1:``, HDF5 plugin ``HDF1:``).

    Args:
        prefix: The detector's PV prefix, e.g. ``"SIM:DET:"``.
        path_provider: Where its HDF5 plugin writes.
        name: The device (and data key) name.
    """

    def __init__(
        self, prefix: str, path_provider: PathProvider, name: str = ""
    ) -> None:
        driver = SimulatedDetectorDriverIO(prefix + "cam1:")
        super().__init__(
            driver,
            prefix,
            ADWriterFactory.hdf(path_provider),
            acquire_logic=ADAcquireLogic(driver),
            trigger_logic=SimulatedDetectorTriggerLogic(driver),
            name=name,
        )


def dropped_triggers_signal(detector: Any) -> SignalR[int] | None:
    """The detector's count of dropped triggers, if it has one.

    Looked up as ``detector.dropped_triggers`` or
    ``detector.driver.dropped_triggers``; the count must restart when the
    detector is armed (as areaDetector counters do on ``Acquire=1``).
    """
    for owner in (detector, getattr(detector, "driver", None)):
        signal = getattr(owner, "dropped_triggers", None)
        if isinstance(signal, SignalR):
            return signal
    return None
