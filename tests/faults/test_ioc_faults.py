"""The PandA's IOC killed mid-scan, and its link to the PandA dropped: the
scan ends within seconds with an error naming the IOC, the run is closed
"fail" with that reason, every row in Tiled is in the file, and the next scan
works once the supervisor has restarted the IOC on the same ports."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import numpy as np
import pytest
from conftest import FaultEnv
from fault_table import Outcome, describe, record

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
    faults.rows_flowing.clear()
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
    record(
        Outcome(
            "the IOC killed (SIGKILL by PID) mid-scan",
            took,
            describe(raised.value),
            rows,
            rows,
            True,
            "test_ioc_killed_mid_scan",
        )
    )


def control(host: str, *lines: bytes, timeout: float = 10.0) -> list[str]:
    """Send raw lines to the simulated PandA's control port as a second
    client; the reply lines (one per request)."""
    with socket.create_connection((host, 8888), timeout=timeout) as sock:
        for line in lines:
            sock.sendall(line + b"\n")
        replies: list[str] = []
        buffer = b""
        while len(replies) < len(lines):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            *done, buffer = buffer.split(b"\n")
            replies += [d.decode(errors="replace") for d in done]
        return replies


def test_panda_connection_dropped_mid_scan(faults: FaultEnv) -> None:
    """The simulator resets the IOC's TCP connections, as a network fault
    would: PandABlocks-ioc 0.11 never reconnects, so the supervisor restarts
    it (its log says it lost the PandA)."""
    sim = faults.sim
    restarts = len(sim.restarts)

    def drop_connections() -> None:
        control(sim.panda_host, b"*SIM.DROP_CONNECTIONS=")

    fault = faults.during(faults.rows_flowing, drop_connections)
    with pytest.raises(PandaLinkLost) as raised:
        faults.RE(time_scan(faults.devices.panda, 20_000, 1e-3))
    took = time.monotonic() - fault.done()
    print(f"\nconnection dropped: the plan ended {took:.1f} s later: {raised.value}")
    assert took <= ENDS_WITHIN
    assert sim.ioc_prefix in raised.value.component
    [start], [stop] = faults.of("start"), faults.of("stop")
    assert stop["exit_status"] == "fail" and "PandaLinkLost" in stop["reason"]
    rows = _assert_rows_kept(faults, start["uid"])
    assert 0 < rows < 20_000
    restart = sim.wait_for_restart(restarts, timeout=60)
    assert restart.ok and "lost its PandA" in restart.reason, restart
    print(f"  rows kept {rows}; {restart.describe()}")
    _next_scan_works(faults)
    record(
        Outcome(
            "the IOC's TCP link to the PandA reset (*SIM.DROP_CONNECTIONS=)",
            took,
            describe(raised.value),
            rows,
            rows,
            True,
            "test_panda_connection_dropped_mid_scan",
        )
    )


def test_garbage_on_the_control_port_during_a_scan(faults: FaultEnv) -> None:
    """A second client sends binary garbage, a 1 MB line, malformed tables
    and repeated ARMs while a scan runs: each gets ERR, the scan completes
    with every row, and the IOC keeps its connection."""
    sim = faults.sim
    restarts = len(sim.restarts)
    garbage = [
        bytes(range(256)).replace(b"\n", b""),
        b"x" * (1 << 20),
        b"SEQ1.TABLE<B\n!!!not base64!!!\n",
        b"NOSUCH1.TABLE<\n1 2 3\n",
        b"*PCAP.ARM=",
        b"*PCAP.ARM=",
    ]
    replies: list[str] = []
    fault = faults.during(
        faults.rows_flowing, lambda: replies.extend(control(sim.panda_host, *garbage))
    )
    frames = 3000
    (uid,) = faults.RE(time_scan(faults.devices.panda, frames, 1e-3))
    fault.done()
    print(f"\ngarbage answered: {[r[:60] for r in replies]}")
    assert len(replies) == len(garbage)
    assert all(r.startswith("ERR") for r in replies), replies
    [stop] = faults.of("stop")
    assert stop["exit_status"] == "success"
    assert _assert_rows_kept(faults, uid) == frames
    assert len(sim.restarts) == restarts  # the IOC never lost its PandA
    record(
        Outcome(
            "garbage on the control port from a second client (binary, a 1 MB "
            "line, bad tables, repeated ARM): each answered ERR",
            None,
            "",
            frames,
            frames,
            True,
            "test_garbage_on_the_control_port_during_a_scan",
        )
    )


def test_a_grown_ioc_is_restarted_between_scans_never_during_one(
    faults: FaultEnv,
) -> None:
    """PandABlocks-ioc 0.11 grows ~5 MB a capture: past the policy's RSS
    threshold the supervisor restarts it, but only once it is idle (no file
    open, PCAP and DATA:CAPTURE off); a scan under way is never cut."""
    sim = faults.sim
    policy = sim.heal_policy
    assert policy is not None
    restarts = len(sim.restarts)
    # Once the scan flies, any RSS is over the threshold: the restart then
    # waits only for the IOC to be idle.
    lowered = replace(policy, idle_restart_rss_bytes=1, idle_check_every=0.5)
    fault = faults.during(
        faults.rows_flowing, lambda: setattr(sim, "heal_policy", lowered)
    )
    try:
        (uid,) = faults.RE(time_scan(faults.devices.panda, 4000, 1e-3))
        fault.done()
        restart = sim.wait_for_restart(restarts, timeout=60)
    finally:
        sim.heal_policy = policy
    [stop] = faults.of("stop")
    after = restart.started_at - stop["time"]
    print(f"\n{restart.describe()}, {after:.1f} s after the run")
    assert stop["exit_status"] == "success"
    assert _assert_rows_kept(faults, uid) == 4000
    assert restart.ok and restart.reason.startswith("between scans")
    assert restart.started_at > stop["time"]  # not while the run was open
    _next_scan_works(faults)
    record(
        Outcome(
            f"the IOC over its RSS threshold mid-scan: restarted {after:.1f} s "
            "after the run closed",
            None,
            "",
            4000,
            4000,
            True,
            "test_a_grown_ioc_is_restarted_between_scans_never_during_one",
        )
    )
