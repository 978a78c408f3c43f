"""The launcher: isolated simulated beamlines, and processes that always stop."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from panda_flyscan.app.simulated.epics_env import client_env, ioc_env
from panda_flyscan.app.simulated.errors import BeamlineError
from panda_flyscan.app.simulated.launcher import (
    SimulatedBeamline,
    ioc_venv_path,
    simulated_beamline,
)
from panda_flyscan.app.simulated.ports import LOOPBACK, PANDA_PORTS, free_epics_ports
from panda_flyscan.app.simulated.ports import bindable as _tcp_bindable
from panda_flyscan.processes import ManagedProcess, ProcessError

REPO_ROOT = Path(__file__).resolve().parent.parent
SIMULATOR = REPO_ROOT / "sim_ioc" / "panda" / "__main__.py"

IOC = ioc_venv_path() / "bin" / "pandablocks-ioc"


def test_epics_ports_are_distinct_and_every_address_is_loopback() -> None:
    ports = free_epics_ports()
    numbers = dataclasses.astuple(ports)
    assert len(set(numbers)) == 4
    for name, value in ioc_env(ports).items():
        if name.endswith(("ADDR_LIST", "NAME_SERVERS")) and "AUTO" not in name:
            assert value == LOOPBACK, name
        if "AUTO" in name:
            assert value == "NO", name
    env = client_env(ports)
    assert env["EPICS_CA_SERVER_PORT"] == str(ports.ca_server)
    assert env["EPICS_PVA_BROADCAST_PORT"] == str(ports.pva_broadcast)


def test_missing_ioc_environment_is_a_clear_error(tmp_path: Path) -> None:
    beamline = SimulatedBeamline("X", ioc_venv=tmp_path / "nowhere", log_dir=tmp_path)
    with pytest.raises(BeamlineError, match=r"scripts/setup\.sh"):
        beamline.start()
    assert beamline.processes == []


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but unreaped, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc, prctl")
def test_a_child_ignoring_sigterm_is_killed_with_its_group(tmp_path: Path) -> None:
    # The child ignores SIGTERM and has a grandchild in its process group.
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'input()'],"
        " stdin=subprocess.PIPE)\n"
        "print(grandchild.pid)\n"
        "print('READY', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = ManagedProcess(
        "stubborn",
        [sys.executable, "-c", code],
        tmp_path / "stubborn.log",
        {},
        ready="READY",
    )
    # Orphans of our children become ours, so the test can reap the grandchild
    # (where PID 1 reaps nothing, it would stay a zombie).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    try:
        process.start()
        process.wait_ready(30)
        grandchild = int(process.log_path.read_text().splitlines()[-2])
        started = time.monotonic()
        process.stop(timeout=0.5)
        assert time.monotonic() - started < 10
        assert process.exit_code() == -signal.SIGKILL
        # SIGKILL is delivered asynchronously: give the grandchild a moment.
        deadline = time.monotonic() + 5
        while _alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _alive(grandchild)
        os.waitpid(grandchild, 0)
    finally:
        libc.prctl(36, 0)


def test_exit_before_ready_reports_the_log(tmp_path: Path) -> None:
    process = ManagedProcess(
        "broken",
        [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
        tmp_path / "broken.log",
        {},
        ready="READY",
    )
    process.start()
    with pytest.raises(ProcessError, match=r"(?s)exited before ready.*code 3.*boom"):
        process.wait_ready(30)
    process.stop()


def _fake_ioc_venv(root: Path, script: str) -> Path:
    """An IOC environment whose ``pandablocks-ioc`` is the shell ``script``."""
    ioc = root / "bin" / "pandablocks-ioc"
    ioc.parent.mkdir(parents=True)
    ioc.write_text(f"#!/bin/sh\n{script}\n")
    ioc.chmod(0o755)
    return root


@pytest.mark.skipif(not SIMULATOR.exists(), reason="no simulator yet")
def test_an_ioc_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    venv = _fake_ioc_venv(tmp_path / "venv", 'echo "fake IOC cannot reach $2"; exit 7')
    beamline = SimulatedBeamline("DIES", ioc_venv=venv, log_dir=tmp_path / "logs")
    with pytest.raises(BeamlineError, match=r"(?s)ioc exited.*code 7.*fake IOC cannot"):
        beamline.start()
    assert [p.name for p in beamline.processes] == ["panda", "ioc"]
    assert all(p.exited() for p in beamline.processes)


@pytest.mark.skipif(not SIMULATOR.exists(), reason="no simulator yet")
def test_an_ioc_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    venv = _fake_ioc_venv(tmp_path / "venv", "echo silent IOC; exec sleep 600")
    beamline = SimulatedBeamline(
        "MUTE", ioc_venv=venv, log_dir=tmp_path / "logs", ioc_timeout=3
    )
    with pytest.raises(
        BeamlineError, match=r"(?s)did not answer within 3 s.*silent IOC"
    ):
        beamline.start()
    assert all(p.exited() for p in beamline.processes)


@pytest.mark.ioc
@pytest.mark.skipif(not SIMULATOR.exists(), reason="no simulator yet")
@pytest.mark.skipif(not IOC.exists(), reason="no IOC environment: run scripts/setup.sh")
def test_two_beamlines_side_by_side_are_isolated(tmp_path: Path) -> None:
    """Two beamlines with the same record names: each IOC is reached only on
    its own ports and drives only its own simulator."""
    from p4p.client.thread import Context
    from pandablocks.blocking import BlockingClient
    from pandablocks.commands import Get

    with (
        simulated_beamline("TWIN", log_dir=tmp_path / "a") as a,
        simulated_beamline("TWIN", log_dir=tmp_path / "b") as b,
    ):
        assert a.panda_host != b.panda_host
        assert set(dataclasses.astuple(a.ports)).isdisjoint(
            dataclasses.astuple(b.ports)
        )
        assert a.panda_prefix == b.panda_prefix == "TWIN:PANDA:"
        assert set(a.logs) == {"panda", "ioc"}
        widths = {a.panda_host: 1.5, b.panda_host: 2.5}
        for beamline in (a, b):
            # A context of its own, configured explicitly rather than from
            # os.environ (which belongs to the session's beamline).
            conf = client_env(beamline.ports)
            with Context("pva", conf=conf, useenv=False) as ctx:
                pv = f"{beamline.panda_prefix}PULSE1:WIDTH"
                ctx.put(pv, widths[beamline.panda_host], timeout=10)
                readback: Any = ctx.get(pv, timeout=10)
                assert float(readback) == widths[beamline.panda_host]
        for beamline in (a, b):
            # The IOC forwards the write to its simulator asynchronously.
            with BlockingClient(beamline.panda_host) as client:
                deadline = time.monotonic() + 10
                while True:
                    reply = client.send(Get("PULSE1.WIDTH"), timeout=5)
                    assert isinstance(reply, str)
                    value = float(reply)
                    if (
                        value == widths[beamline.panda_host]
                        or time.monotonic() > deadline
                    ):
                        break
                    time.sleep(0.05)
            assert value == widths[beamline.panda_host]
    # Everything stopped, and the simulators' addresses are free again.
    for beamline in (a, b):
        assert all(p.exited() for p in beamline.processes)
        assert all(_tcp_bindable(beamline.panda_host, port) for port in PANDA_PORTS)


def test_simulator_config_defaults_are_those_of_the_devices() -> None:
    """The one definition of the simulator's options agrees with the devices'
    own defaults, and reaches the simulator unchanged as JSON."""
    from sim_ioc.config import SimulatorConfig, choices
    from sim_ioc.detector import DetectorConfig
    from sim_ioc.detector.ttl import LEVEL_SIGNALS
    from sim_ioc.motor import MotorConfig

    config = SimulatorConfig()
    assert config.motor_config() == MotorConfig()
    assert config.detector_config() == DetectorConfig()
    assert choices("detector_ttlin_signal") == LEVEL_SIGNALS
    custom = SimulatorConfig(readout_time=0.01, fmc_signals=("FMC_IN2=constant 1",))
    assert SimulatorConfig.model_validate_json(custom.model_dump_json()) == custom


def test_sim_command_refuses_a_bad_fmc_signal_before_starting() -> None:
    from click.testing import CliRunner

    from panda_flyscan.app.cli import main

    result = CliRunner().invoke(main, ["sim", "--fmc-signal", "FMC_IN1=square 2"])
    assert result.exit_code == 2
    assert "--fmc-signal" in result.output and "square" in result.output
    assert "Starting" not in result.output


@pytest.mark.ioc
def test_simulator_arguments_reach_the_simulator(beamline) -> None:
    """The session's beamline was started with FMC_IN8 = 1.25 V constant: the
    PandA reads it (18-bit code, +-10 V range, left-aligned in 32 bits)."""
    import asyncio

    from pandablocks.asyncio import AsyncioClient
    from pandablocks.commands import Get

    async def read() -> str:
        async with AsyncioClient(beamline.panda_host) as client:
            reply = await client.send(Get("FMC_IN.VAL8"))
        assert isinstance(reply, str)
        return reply

    code = round(1.25 / 10 * 2**17) * 2**14
    assert int(asyncio.run(read())) == code
