"""ophyd-async devices for PandA flyscans.

* :class:`FlyscanPanda`: ophyd-async's ``HDFPanda`` with the beamline's
  :class:`PandaWiring` and default :class:`Capture` list.
* :class:`RunFilePathProvider`: a new file for every run.
* :class:`Capture`, :func:`capture_settings`, :func:`apply_captures`: declare
  what the PandA captures (validated before anything is written).
* :class:`PandaWiring`, :class:`DetectorWiring`, :class:`EncoderWiring`: the
  cabling, as data.
* :func:`save_panda_configuration`, :func:`restore_panda_configuration`: the
  PandA's fields, wiring and captures saved to and restored from YAML
  (ophyd-async's settings machinery).
* :func:`dropped_triggers_signal`: a detector's dropped-trigger count, if any.
* :class:`PandaControl`, :class:`TableStream`: the PandA's control port,
  for SEQ tables streamed while the scan runs (no 4096-line limit).
* :func:`real_beamline_devices` (and :func:`connect_beamline`): build and
  connect a :class:`Beamline`. The simulated beamline's devices are in
  :mod:`panda_flyscan.app.simulated`.
"""

from .beamline import (
    Beamline,
    connect_beamline,
    in_bluesky_loop,
    real_beamline_devices,
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
from .detector import dropped_triggers_signal
from .panda import FlyscanPanda
from .paths import RunFilePathProvider
from .settings import (
    RUN_TIME_FIELDS,
    PandaConfiguration,
    PandaConfigurationError,
    check_panda_configuration,
    configuration_files,
    current_captures,
    parse_wiring_document,
    read_wiring,
    restore_panda_configuration,
    save_panda_configuration,
    wiring_document,
)
from .table_stream import PandaControl, TableStream, TableStreamError, TableUnderrun
from .wiring import DetectorWiring, EncoderWiring, PandaWiring, WiringError

__all__ = [
    "RUN_TIME_FIELDS",
    "SINGLE_DATASET_MODES",
    "Beamline",
    "Capture",
    "CaptureError",
    "DetectorWiring",
    "EncoderWiring",
    "FieldRef",
    "FlyscanPanda",
    "PandaConfiguration",
    "PandaConfigurationError",
    "PandaControl",
    "PandaWiring",
    "RunFilePathProvider",
    "TableStream",
    "TableStreamError",
    "TableUnderrun",
    "WiringError",
    "apply_captures",
    "capture_settings",
    "check_captures",
    "check_panda_configuration",
    "configuration_files",
    "connect_beamline",
    "current_captures",
    "dropped_triggers_signal",
    "in_bluesky_loop",
    "parse_field",
    "parse_wiring_document",
    "read_wiring",
    "real_beamline_devices",
    "restore_panda_configuration",
    "save_panda_configuration",
    "wiring_document",
]
