"""ophyd-async devices for PandA flyscans.

* :class:`FlyscanPanda`: ophyd-async's ``HDFPanda`` with the beamline's
  :class:`PandaWiring` and default :class:`Capture` list.
* :class:`RunFilePathProvider`: a new file for every run.
* :class:`Capture`, :func:`capture_settings`, :func:`apply_captures`: declare
  what the PandA captures (validated before anything is written).
* :class:`PandaWiring`, :class:`DetectorWiring`, :class:`EncoderWiring`: the
  cabling, as data.
* :class:`SimulatedDetector`: the simulated area detector (ADKinetix-like,
  with readout time and dropped-trigger count); :func:`dropped_triggers_signal`.
* :class:`SimAxis`: the simulator's axis as a flyable motor (``*SIM`` commands).
* :func:`simulated_beamline_devices`, :func:`real_beamline_devices` (and their
  ``async`` forms): build and connect a :class:`Beamline`.
"""

from .beamline import (
    SIM_DETECTOR,
    SIM_MOTOR,
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
from .detector import (
    SimulatedDetector,
    SimulatedDetectorDriverIO,
    SimulatedDetectorTriggerLogic,
    dropped_triggers_signal,
)
from .panda import FlyscanPanda
from .paths import RunFilePathProvider
from .sim_axis import SimAxis
from .wiring import DetectorWiring, EncoderWiring, PandaWiring, WiringError

__all__ = [
    "SIM_DETECTOR",
    "SIM_MOTOR",
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
    "SimulatedDetector",
    "SimulatedDetectorDriverIO",
    "SimulatedDetectorTriggerLogic",
    "WiringError",
    "apply_captures",
    "capture_settings",
    "check_captures",
    "connect_beamline",
    "connect_simulated_beamline",
    "dropped_triggers_signal",
    "parse_field",
    "real_beamline_devices",
    "simulated_beamline_devices",
]
