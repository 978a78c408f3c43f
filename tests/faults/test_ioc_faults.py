"""The PandA's IOC killed mid-scan, and its link to the PandA dropped: the
scan ends within seconds with an error naming the IOC, the run is closed
"fail" with that reason, every row in Tiled is in the file, and the next scan
works once the supervisor has restarted the IOC on the same ports."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import FaultEnv

from panda_flyscan.plans import time_scan
from panda_flyscan.plans.errors import PandaLinkLost

pytestmark = pytest.mark.ioc

#: The issue's bound, fault -> plan ended (clean-up included).
ENDS_WITHIN = 10.0


def _assert_rows_kept(faults: FaultEnv, uid: str) -> int:
    """Every row Tiled lists is in the file, equal; returns how many."""
    in_tiled = faults.rows_in_tiled(uid)
    in_file = faults.rows_in_file()
    assert in_tiled == in_file, (in_tiled, in_file)
    from panda_flyscan.storage import read_field
    from panda_flyscan.storage.hdf5 import read_datasets

    (from_file,) = read_datasets(faults.panda_file(), "trigger_time", timeout=2.0)
    np.testing.assert_array_equal(
        read_field(faults.client(), uid, "primary", "trigger_time"), from_file
    )
    return in_tiled


def _next_scan_works(faults: FaultEnv) -> None:
    faults.docs.clear()
    (uid,) = faults.RE(time_scan(faults.devices.panda, 200, 1e-3))
    [stop] = faults.of("stop")
    assert stop["exit_status"] == "success", stop
    assert _assert_rows_kept(faults, uid) == 200


def test_ioc_killed_mid_scan(faults: FaultEnv) -> None:
    sim = faults.sim
    restarts = len(sim.restarts)
    old_pid = sim.ioc_process().pid
    fault = faults.during(faults.rows_flowing, lambda: sim.ioc_process().kill())
    with pytest.raises(PandaLinkLost) as raised:
        faults.RE(time_scan(faults.devices.panda, 20_000, 1e-3))
    ended = time.monotonic()
    took = ended - fault.done()
    print(f"\nIOC killed: the plan ended {took:.1f} s later: {raised.value}")
    assert took <= ENDS_WITHIN
    assert raised.value.component == f"{sim.ioc_prefix} (IOC)"
    # The supervisor may have restarted it before the link's bound expired.
    assert "then run the scan again" in str(raised.value)
    [start], [stop] = faults.of("start"), faults.of("stop")
    assert stop["exit_status"] == "fail"
    assert "PandaLinkLost" in stop["reason"] and sim.ioc_prefix in stop["reason"]
    rows = _assert_rows_kept(faults, start["uid"])
    assert 0 < rows < 20_000
    restart = sim.wait_for_restart(restarts, timeout=60)
    assert restart.ok and restart.old_pid == old_pid and "exited" in restart.reason
    print(f"  rows kept {rows}; {restart.describe()}")
    _next_scan_works(faults)
