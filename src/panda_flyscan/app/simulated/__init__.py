"""The simulated beamline from the client's side: starting it, and its devices.

* :class:`SimulatedBeamline` / :func:`simulated_beamline`: start the simulator
  (PandA, motor records, area detectors; :mod:`sim_ioc`) and the real
  PandABlocks-ioc, isolated on loopback, and stop them all; the simulator
  is built from one :class:`sim_ioc.config.SimulatorConfig`. The launcher's
  parts: :mod:`.ports`, :mod:`.epics_env`, :mod:`.probe`.
* :func:`simulated_beamline_devices` / :func:`connect_simulated_beamline`:
  connect ophyd-async devices to it as a :class:`~panda_flyscan.devices.Beamline`.
* :class:`SimulatedDetector`: the simulated area detector as an ophyd-async
  device; :class:`SimAxis`: the simulator's ``*SIM`` axis as a flyable motor
  (an exactly constant-speed motion, for tests).
"""

from .beamline import (
    SIM_DETECTOR,
    SIM_DETECTORS,
    SIM_MOTOR,
    SIM_MOTORS,
    connect_simulated_beamline,
    simulated_beamline_devices,
)
from .detector import (
    SimulatedDetector,
    SimulatedDetectorDriverIO,
    SimulatedDetectorTriggerLogic,
)
from .launcher import BeamlineError, SimulatedBeamline, simulated_beamline
from .sim_axis import SimAxis

__all__ = [
    "SIM_DETECTOR",
    "SIM_DETECTORS",
    "SIM_MOTOR",
    "SIM_MOTORS",
    "BeamlineError",
    "SimAxis",
    "SimulatedBeamline",
    "SimulatedDetector",
    "SimulatedDetectorDriverIO",
    "SimulatedDetectorTriggerLogic",
    "connect_simulated_beamline",
    "simulated_beamline",
    "simulated_beamline_devices",
]
