"""A simulated area detector sharing the simulated PandA's clock and world.

* :mod:`.timing`: exposures, readout dead time, dropped triggers (pure);
* :mod:`.frames`: what a frame shows at a motor position (pure);
* :mod:`.attributes`: NDAttribute definitions (pure);
* :mod:`.hdf5`: files as areaDetector's HDF5 plugin writes them;
* :mod:`.ioc`: the cam and HDF5 plugin PVs (caproto), wired to the PandA.
"""

from .frames import Stamp, decode, render
from .ioc import DetectorConfig, SimAreaDetector
from .timing import Acquisition, Exposure, Timing, TriggerMode

__all__ = [
    "Acquisition",
    "DetectorConfig",
    "Exposure",
    "SimAreaDetector",
    "Stamp",
    "Timing",
    "TriggerMode",
    "decode",
    "render",
]
