"""Fixtures shared by the whole suite: one simulated beamline per test session.

CA (aioca/libca) and PVA (p4p) clients read their ``EPICS_*`` settings from
``os.environ`` once, when the first context is made, and keep them for the life
of the process. So the session's IOC ports are chosen, and the client
environment set, when pytest starts, before any test can make a context; the
beamline itself starts on those ports the first time a test asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from panda_flyscan.app.simulated.epics_env import client_env
from panda_flyscan.app.simulated.launcher import (
    HealPolicy,
    SimulatedBeamline,
    ioc_venv_path,
    simulated_beamline,
)
from panda_flyscan.app.simulated.ports import (
    DevicePorts,
    EpicsPorts,
    free_device_ports,
    free_epics_ports,
)
from sim_ioc.config import MotorSettings, SimulatorConfig

#: Record prefix of the session's beamline (the PandA is ``TEST:PANDA:``, the
#: motors ``TEST:M1``..``M3``, the detectors ``TEST:DET:`` and ``TEST:DET2:``).
SESSION_PREFIX = "TEST"
#: Soft limits of the session's M3 (z), narrower than the others' -100..100 mm
#: (checked by tests/sim_beamline/test_beamline_axes.py).
SESSION_Z_LIMITS = (-5.0, 5.0)
#: Simulator configuration of the session's beamline (checked by
#: test_launcher): a constant on the last ADC channel, which no test changes,
#: and M3 with limits of its own.
SESSION_SIMULATOR = SimulatorConfig(
    fmc_signals=("FMC_IN8=constant 1.25",),
    motors=(
        MotorSettings(axis="INENC1"),
        MotorSettings(axis="INENC2"),
        MotorSettings(
            axis="INENC3", low_limit=SESSION_Z_LIMITS[0], high_limit=SESSION_Z_LIMITS[1]
        ),
    ),
)

_session_ports: EpicsPorts | None = None
_session_device_ports: DevicePorts | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Point this process's CA/PVA clients at the session's beamline, and only
    there (no broadcasts, loopback only), before anything can read them."""
    global _session_ports, _session_device_ports
    _session_ports = free_epics_ports()
    _session_device_ports = free_device_ports(_session_ports)
    os.environ.update(client_env(_session_ports, _session_device_ports))


@pytest.fixture(scope="session")
def beamline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedBeamline]:
    """The simulated PandA and the real PandABlocks-ioc, with the simulated
    motor and detector (``.motor_pv``, ``.detector_prefix``), shared by the
    session, its IOC supervised (restarted on the same ports).

    Skips when the IOC environment (``sim_ioc/.venv``) is missing; fails, with
    the IOC's log, when it is there but does not come up. The processes' logs
    stay in pytest's temporary directory (``beamline0/``) after the session.
    """
    ioc = ioc_venv_path() / "bin" / "pandablocks-ioc"
    if not ioc.exists():
        pytest.skip(f"{ioc} missing: create the IOC environment with scripts/setup.sh")
    assert _session_ports is not None, "pytest_configure did not run"
    with simulated_beamline(
        SESSION_PREFIX,
        ports=_session_ports,
        device_ports=_session_device_ports,
        log_dir=tmp_path_factory.mktemp("beamline"),
        simulator=SESSION_SIMULATOR,
        # Supervised, as `panda-flyscan sim` runs it: tests/faults kill its
        # IOC and the session's devices carry on with the restarted one.
        heal=HealPolicy(),
    ) as started:
        os.environ.update(started.env)  # adds PANDA_HOST and PANDA_PREFIX
        yield started


#: Fixtures that start real servers, and the marker a test using one (directly
#: or through another fixture) gets: `./run test --fast` deselects them.
_SERVER_FIXTURES = {
    "beamline": "ioc",
    "sqlite_backend": "tiled",
    "postgres_backend": "postgres",
}
#: Modules whose tests start servers themselves (no fixture to see).
_SERVER_MODULES = {
    "test_launcher.py": "ioc",
    "test_beamline_flyscan.py": "ioc",
    "test_fastcs_panda.py": "ioc",
    "test_bench.py": "ioc",
    "test_storage_outage.py": "tiled",
    "test_storage_server.py": "tiled",
    "test_storage_bad_input.py": "tiled",
    "test_storage_user_document.py": "tiled",
    "test_tiled_cluster.py": "postgres",
    "test_bus_writer_service.py": "ioc",
    "test_bus_tiled_cluster.py": "postgres",
    "test_queue_e2e.py": "ioc",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, mark in _SERVER_FIXTURES.items():
            if fixture in names:
                item.add_marker(mark)
        mark = _SERVER_MODULES.get(item.path.name)
        if mark is not None:
            item.add_marker(mark)
