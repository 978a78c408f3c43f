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
through ``OFF``. Not simulated: backlash, retries, homing, jogging, ``SPMG``,
alarm severities.

Faults, injected on the axis by ``*SIM.MOTOR_FAULT.<axis>=<fault>`` on the
PandA's control port (:mod:`sim_ioc.panda.world_control`; the state is the
world's, :class:`sim_ioc.world.MotorFault`), and what the record shows:

* ``stall``: the axis stops at once (``RBV`` and the INENC stay put) but a
  move under way never ends: ``DMOV=0``, ``MOVN=1``, MSTA ``RA_MOVING``, the
  put-callback held. ``STOP`` and new moves are taken (``VAL`` follows) but
  move nothing and keep ``DMOV=0``;
* ``stall_reported``: stopped the same, but the controller detects the stall,
  as controllers that watch the encoder or the following error do: MSTA
  ``EA_SLIP_STALL`` (bit 6) is set while the fault lasts, the move ends
  (``DMOV=1``, put-callback completes) and, as the record after its retries
  fail, ``MISS=1`` with ``VAL`` left at the target. New moves end the same
  at once;
* ``high_limit``/``low_limit``: the controller's plus/minus limit switch
  (MSTA ``RA_PLUS_LS``, bit 2, or ``RA_MINUS_LS``, bit 13; raw direction) is
  on where the axis is: it decelerates at the move's rate to rest on it, the
  move ends (``DMOV=1``) and ``VAL`` becomes where it stopped. ``HLS``/``LLS``
  read the switch in user direction (swapped by ``DIR=Neg`` or a negative
  resolution, as the record does). A move further into the switch does not
  start (``DMOV`` blinks, ``VAL`` goes back to ``RBV``); a move back works
  and the switch turns off once past where it tripped (a move that comes
  back runs into it again);
* ``none``: no fault; a silently stalled move ends where the axis stands
  (``DMOV=1``, ``VAL`` there), switches off, MSTA bits clear.

The real record also ignores a switch unless the last commanded direction
was towards it (``RHLS = PLUS_LS && CDIR``); here ``HLS``/``LLS`` follow the
switch alone.

* :mod:`.config`: :class:`MotorConfig`, how a motor is built;
* :mod:`.record`: the record's fields as CA PVs;
* :mod:`.motion`: :class:`SimMotor`, moves on the world's axis and readbacks.
"""

from .config import MotorConfig
from .motion import SimMotor

__all__ = ["MotorConfig", "SimMotor"]
