"""A simulated area detector sharing the simulated PandA's clock and world.

* :mod:`.timing`: exposures, readout dead time, dropped triggers (pure);
* :mod:`.frames`: what a frame shows at an (x, y) position (pure);
* :mod:`.attributes`: NDAttribute definitions (pure);
* :mod:`.hdf5`: files as areaDetector's HDF5 plugin writes them;
* :mod:`.ttl`: the exposure output on a PandA TTLIN;
* :mod:`.records`: areaDetector parameter PVs (caproto);
* :mod:`.cam`, :mod:`.hdf_plugin`: the cam's and the HDF5 plugin's PVs;
* :mod:`.acquisition_loop`: acquisitions on the PandA's clock, publishing
  frames; :mod:`.file_capture`: the plugin writing them to a file;
* :mod:`.ioc`: :class:`SimAreaDetector`, composing them.
"""

from .config import DetectorConfig
from .frames import Stamp, decode, render
from .ioc import SimAreaDetector
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
