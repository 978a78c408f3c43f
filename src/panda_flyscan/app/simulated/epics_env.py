"""The EPICS environments of one simulated beamline: its clients', its IOC's
and its device server's, all confined to loopback.

Two IOCs with the same record names never answer each other's clients, and
nothing leaves loopback: servers listen, beacon and answer searches on
127.0.0.1 only, on the beamline's own ports (:mod:`.ports`); clients search
only there. CA (aioca, libca) and PVA (p4p) clients read these variables from
``os.environ`` once, when their first context is made.
"""

from __future__ import annotations

from collections.abc import Mapping

from .ports import LOOPBACK, DevicePorts, EpicsPorts

__all__ = ["client_env", "device_server_env", "ioc_env", "without_epics"]


def client_env(ports: EpicsPorts, devices: DevicePorts | None = None) -> dict[str, str]:
    """The CA/PVA client variables that reach (only) an IOC on ``ports``, and
    the motor and detector on ``devices`` if given."""
    ca_addresses = [LOOPBACK]
    if devices is not None:
        # Searched on its own port: libca sends to each address of the list.
        ca_addresses.append(f"{LOOPBACK}:{devices.ca_server}")
    return {
        "EPICS_CA_ADDR_LIST": " ".join(ca_addresses),
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(ports.ca_server),
        # libca registers with a repeater on this port: one per beamline, not
        # the host's shared 5065.
        "EPICS_CA_REPEATER_PORT": str(ports.ca_repeater),
        "EPICS_PVA_ADDR_LIST": LOOPBACK,
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_BROADCAST_PORT": str(ports.pva_broadcast),
        "EPICS_PVA_SERVER_PORT": str(ports.pva_server),
    }


def ioc_env(ports: EpicsPorts) -> dict[str, str]:
    """The variables of an IOC process: its servers on ``ports``, loopback only.

    Both spellings are set where EPICS has two (the RSRV server reads
    ``EPICS_CAS_*`` before ``EPICS_CA_*``, the PVXS server ``EPICS_PVAS_*``
    before ``EPICS_PVA_*``), so either finds ours. PVXS binds its UDP socket to
    the wildcard address by design, but answers only searches sent to an
    address in its interface list, here 127.0.0.1.
    """
    return {
        **client_env(ports),  # the IOC's own CA/PVA links stay on loopback too
        # Channel Access server (RSRV, EPICS base 7).
        "EPICS_CAS_SERVER_PORT": str(ports.ca_server),
        "EPICS_CAS_INTF_ADDR_LIST": LOOPBACK,
        "EPICS_CAS_BEACON_ADDR_LIST": LOOPBACK,
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_PORT": str(ports.ca_repeater),
        # pvAccess server (PVXS, loaded by softioc).
        "EPICS_PVAS_SERVER_PORT": str(ports.pva_server),
        "EPICS_PVAS_BROADCAST_PORT": str(ports.pva_broadcast),
        "EPICS_PVAS_INTF_ADDR_LIST": LOOPBACK,
        "EPICS_PVA_INTF_ADDR_LIST": LOOPBACK,
        "EPICS_PVAS_BEACON_ADDR_LIST": LOOPBACK,
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
    }


def device_server_env(ports: EpicsPorts, devices: DevicePorts) -> dict[str, str]:
    """The variables of the ``python -m sim_ioc`` process: its CA server (caproto)
    on ``devices.ca_server`` at 127.0.0.1, beaconing to the beamline's
    repeater port on 127.0.0.1.

    caproto takes its UDP search port and first TCP port from
    ``EPICS_CA_SERVER_PORT``. The beacon list must name an address: caproto
    treats an empty one as "broadcast to 255.255.255.255" (onto the host's
    network) even with ``EPICS_CAS_AUTO_BEACON_ADDR_LIST=NO``.
    """
    return {
        **client_env(ports, devices),
        "EPICS_CA_SERVER_PORT": str(devices.ca_server),
        "EPICS_CAS_SERVER_PORT": str(devices.ca_server),
        "EPICS_CAS_INTF_ADDR_LIST": LOOPBACK,
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": LOOPBACK,
        "EPICS_CAS_BEACON_PORT": str(ports.ca_repeater),
    }


def without_epics(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` less any inherited EPICS settings, which would override ours."""
    return {k: v for k, v in env.items() if not k.startswith("EPICS_")}
