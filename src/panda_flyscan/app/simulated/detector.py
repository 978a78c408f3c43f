"""The simulated beamline's area detector, as an ophyd-async device.

The simulated detector (``sim_ioc.detector``) serves ADKinetix's cam PVs plus
three of its own: ``ReadoutTime_RBV`` (dead time after each exposure),
``DroppedTriggers_RBV`` (triggers that arrived while it was busy, since the
last ``Acquire=1``) and ``TriggerSource`` (which PandA TTLOUT its trigger
cable comes from). :class:`SimulatedDetector` is ophyd-async's stock
``KinetixDetector`` with those three signals, and a trigger logic whose dead
time is the detector's own readout time instead of a constant. Its
``dropped_triggers`` signal is the one the plans watch
(:func:`panda_flyscan.devices.dropped_triggers_signal`).
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
