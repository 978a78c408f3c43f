"""ophyd-async devices for PandA flyscans.

* :class:`FlyscanPanda`: ophyd-async's ``HDFPanda`` with the beamline's
  :class:`PandaWiring` and default :class:`Capture` list.
* :class:`RunFilePathProvider`: a new file for every run.
* :class:`Capture`, :func:`capture_settings`, :func:`apply_captures`: declare
  what the PandA captures (validated before anything is written).
* :class:`PandaWiring`, :class:`DetectorWiring`, :class:`EncoderWiring`: the
  cabling, as data.
* :class:`SimAxis`: the simulator's axis as a flyable motor.
* :func:`simulated_beamline_devices`, :func:`real_beamline_devices` (and their
  ``async`` forms): build and connect a :class:`Beamline`.
"""

from .beamline import (
    SIM_AXIS,
    Beamline,
    connect_beamline,
    connect_simulated_beamline,
    real_beamline_devices,
    simulated_beamline_devices,
)
from .capture import (
    SINGLE_DATASET_MODES,
    Capture,
    CaptureError,
    FieldRef,
    apply_captures,
    capture_settings,
    check_captures,
    parse_field,
)
from .panda import FlyscanPanda
from .paths import RunFilePathProvider
from .sim_axis import SimAxis
from .wiring import DetectorWiring, EncoderWiring, PandaWiring, WiringError

__all__ = [
    "SIM_AXIS",
    "SINGLE_DATASET_MODES",
    "Beamline",
    "Capture",
    "CaptureError",
    "DetectorWiring",
    "EncoderWiring",
    "FieldRef",
    "FlyscanPanda",
    "PandaWiring",
    "RunFilePathProvider",
    "SimAxis",
    "WiringError",
    "apply_captures",
    "capture_settings",
    "check_captures",
    "connect_beamline",
    "connect_simulated_beamline",
    "parse_field",
    "real_beamline_devices",
    "simulated_beamline_devices",
]
