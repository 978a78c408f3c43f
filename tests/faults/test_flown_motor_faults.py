"""The flown motor stalling, or hitting a limit switch, mid-line (the
simulator's ``*SIM.MOTOR_FAULT``): the scan ends within seconds with a
MotorFault naming the motor, the rows before are kept (Tiled = file), and
the next scan works once the fault is cleared."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import FaultEnv
from fault_table import Outcome, describe, record
from test_ioc_faults import ENDS_WITHIN, control

from panda_flyscan.plans import position_scan
from panda_flyscan.plans.errors import MotorFault
from panda_flyscan.storage import read_field
from panda_flyscan.storage.hdf5 import read_datasets

pytestmark = pytest.mark.ioc

#: The motor M1 drives the PandA's INENC1.
AXIS = "INENC1"


def _motor_fault(faults: FaultEnv, fault: str) -> None:
    [reply] = control(
        faults.sim.panda_host, f"*SIM.MOTOR_FAULT.{AXIS}={fault}".encode()
    )
    assert reply == "OK", reply


@pytest.mark.parametrize(
    ("fault", "words"),
    [("high_limit", "hit its high limit switch"), ("stall", "has stalled")],
)
def test_flown_motor_fails_mid_line(faults: FaultEnv, fault: str, words: str) -> None:
    x = faults.devices.motor("x")
    panda = faults.devices.panda
    num = 2001  # 0..20 mm at 2 mm/s: a 10 s line
    injected = faults.during(faults.rows_flowing, lambda: _motor_fault(faults, fault))
    try:
        with pytest.raises(MotorFault) as raised:
            faults.RE(position_scan(panda, x, 0, 20, num, velocity=2))
        took = time.monotonic() - injected.done()
    finally:
        _motor_fault(faults, "none")
    print(f"\nmotor {fault}: the plan ended {took:.1f} s later: {raised.value}")
    assert took <= ENDS_WITHIN
    assert raised.value.component == f"motor {x.name}" and words in str(raised.value)
    [start], [stop] = faults.of("start"), faults.of("stop")
    assert stop["exit_status"] == "fail" and "MotorFault" in stop["reason"]
    in_tiled = read_field(faults.client(), start["uid"], "primary", "x")
    (in_file,) = read_datasets(faults.panda_file(), "x", timeout=10)
    assert 0 < len(in_tiled) == len(in_file) < num
    np.testing.assert_array_equal(in_tiled, in_file)
    # Cleared: the next scan flies the whole line.
    faults.docs.clear()
    (uid,) = faults.RE(position_scan(panda, x, 0, 1, 11, velocity=2))
    assert len(read_field(faults.client(), uid, "primary", "x")) == 11
    record(
        Outcome(
            f"the flown motor mid-line: *SIM.MOTOR_FAULT.{AXIS}={fault}",
            took,
            describe(raised.value),
            len(in_file),
            len(in_tiled),
            True,
            f"test_flown_motor_fails_mid_line[{fault}]",
        )
    )
