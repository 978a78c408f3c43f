"""Every server the project starts binds to loopback only (the simulated
PandA, its real IOC's CA and PVA servers, the motors' and detectors' CA
server, Tiled); and the Tiled service refuses requests without its key."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from pathlib import Path

import httpx
import pytest
from sockets import bound_sockets

from panda_flyscan.app.simulated import SimulatedBeamline
from panda_flyscan.storage import TiledService


def _assert_loopback_only(
    name: str,
    pid: int,
    server_ports: AbstractSet[int],
    wildcard_ok: AbstractSet[int] = frozenset(),
) -> None:
    """Every listening socket and every socket on one of ``server_ports``
    (except UDP on ``wildcard_ok``) is bound to loopback, and no socket is
    connected to anything but loopback."""
    sockets = bound_sockets(pid)
    assert sockets, f"{name} (PID {pid}) has no socket: wrong process?"
    print(f"{name}: {', '.join(sorted({str(b) for b in sockets}))}")
    beyond = [
        str(b)
        for b in sockets
        if not b.loopback
        and (b.listening or b.port in server_ports)
        and not (b.protocol.startswith("udp") and b.port in wildcard_ok)
    ]
    assert not beyond, f"{name} serves beyond loopback: {beyond}"
    talking = [str(b) for b in sockets if not b.remote_loopback]
    assert not talking, f"{name} is connected beyond loopback: {talking}"


@pytest.mark.ioc
def test_the_simulated_beamline_binds_to_loopback_only(
    beamline: SimulatedBeamline,
) -> None:
    ports, devices = beamline.ports, beamline.device_ports
    server_ports = {
        8888,
        8889,
        ports.ca_server,
        ports.ca_repeater,
        ports.pva_server,
        ports.pva_broadcast,
        devices.ca_server,
    }
    for process in beamline.processes:
        assert process.pid is not None
        # PVXS binds its UDP search socket to the wildcard address by design
        # and answers only searches sent to its interface list (127.0.0.1).
        _assert_loopback_only(
            process.name, process.pid, server_ports, wildcard_ok={ports.pva_broadcast}
        )


@pytest.mark.tiled
def test_tiled_binds_to_loopback_and_wants_its_key(tmp_path: Path) -> None:
    with TiledService(tmp_path / "tiled", api_key="securitytest") as tiled:
        port = int(tiled.uri.split(":")[2].split("/")[0])
        _assert_loopback_only("tiled", tiled.pid, {port})
        assert tiled.uri.startswith("http://127.0.0.1:")
        anonymous = httpx.get(f"{tiled.uri}/metadata/", timeout=10)
        assert anonymous.status_code == 401, anonymous.text
        wrong = httpx.get(
            f"{tiled.uri}/metadata/",
            headers={"Authorization": "Apikey not-the-key"},
            timeout=10,
        )
        assert wrong.status_code == 401, wrong.text
        right = httpx.get(
            f"{tiled.uri}/metadata/",
            headers={"Authorization": "Apikey securitytest"},
            timeout=10,
        )
        assert right.status_code == 200, right.text
