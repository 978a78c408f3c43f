"""A simulated motor record that drives an axis of the PandA's world.

Served over Channel Access by caproto (see :mod:`sim_ioc.ca`), field by field as
the EPICS motor record names them (``SIM:M1``, ``SIM:M1.RBV``, ``.DMOV``...), so
ophyd-async's stock :class:`ophyd_async.epics.motor.Motor` connects unchanged.

The world's axis (``INENC1`` by default, in encoder counts) is the single source
of truth: a move replans it with a trapezoidal velocity profile
(:func:`sim_ioc.world.trapezoid`), the INENC block of the same name counts it
tick by tick, and the readback is read back from it. So PCOMP fires where the
motor really is, and a ``*SIM.MOVE`` on the PandA's control port shows in
``RBV`` too. Dial position and encoder counts are related by::

    counts = dial * resolution + offset      (resolution: counts per EGU)

and user and dial positions as in the motor record: ``user = dial * DIR + OFF``
(DIR +1 for ``Pos``, -1 for ``Neg``).

Motor-record behaviour kept: put-callback on ``VAL`` completes when the move
is done (``DMOV`` back to 1); soft limits in dial (``DHLM``/``DLLM``, both 0 =
none) refuse a move by setting ``LVIO=1`` and restoring ``VAL``; ``STOP``
decelerates at the ``ACCL`` rate and sets ``VAL`` to where it stopped; a new
``VAL`` during a move stops and then moves to it; ``VELO`` is clamped to
``VMAX``; ``SET=Set`` with ``FOFF=Variable`` redefines the user position
through ``OFF``. Not simulated: backlash, retries, homing, jogging, hard limit
switches (``HLS``/``LLS`` stay 0), ``SPMG``.

* :mod:`.config`: :class:`MotorConfig`, how a motor is built;
* :mod:`.record`: the record's fields as CA PVs;
* :mod:`.motion`: :class:`SimMotor`, moves on the world's axis and readbacks.
"""

from .config import MotorConfig
from .motion import SimMotor

__all__ = ["MotorConfig", "SimMotor"]
