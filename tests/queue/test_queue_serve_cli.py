"""``panda-flyscan queue serve`` as a user runs it: a process of its own
that starts Tiled, Redis and the RE Manager, prints the client environment,
answers, and on SIGTERM leaves none of its processes behind. With
``--no-sim`` on the session's beamline (its environment is this process's),
which also spares the two cores a second one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from panda_flyscan.app.queue.server import connect_queue_server
from panda_flyscan.app.simulated import SimulatedBeamline
from panda_flyscan.polling import poll_until


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, ppid in parents.items() if ppid in frontier}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent has not reaped it yet).
    try:
        return (
            Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
        )
    except OSError:
        return False


def test_serve_prints_the_addresses_and_stops_everything_on_sigterm(
    beamline: SimulatedBeamline, tmp_path: Path
) -> None:
    env_file = tmp_path / "queue.env"
    argv = [
        *(sys.executable, "-m", "panda_flyscan", "queue", "serve"),
        *("--work-dir", str(tmp_path / "work"), "--env-file", str(env_file)),
        *("--control-port", "0", "--info-port", "0", "--no-sim"),
    ]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    # conftest and the beamline fixture put the beamline's EPICS settings and
    # PVs in os.environ, which the command inherits.
    serve = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    children: set[int] = set()
    try:
        poll_until(
            lambda: env_file.exists() or serve.poll() is not None,
            timeout=150,
            interval=0.5,
        )
        assert serve.poll() is None, (tmp_path / "serve.log").read_text()
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert env["QSERVER_ZMQ_CONTROL_ADDRESS"].startswith("tcp://127.0.0.1:")
        assert env["TILED_URI"].startswith("http://127.0.0.1:")
        api = connect_queue_server(env["QSERVER_ZMQ_CONTROL_ADDRESS"])
        try:
            status = api.status()
            assert status is not None and status["worker_environment_exists"]
        finally:
            api.close()
        children = _descendants(serve.pid)
        # Redis, the RE Manager's three (watchdog, manager, worker), Tiled.
        assert len(children) >= 5, children
        start = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0
        took = time.monotonic() - start
        left = {pid for pid in children if _alive(pid)}
        assert not left, f"left running: {left}"
        print(f"queue serve stopped {len(children)} processes in {took:.1f} s")
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(30)
            except subprocess.TimeoutExpired:
                serve.kill()
        # Whatever it left behind, by PID.
        for pid in children or set():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
