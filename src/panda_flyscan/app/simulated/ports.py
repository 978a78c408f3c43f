"""Loopback addresses and ports for one simulated beamline, free on this host.

* the simulated PandA gets a loopback address of its own, ``127.0.0.N`` (N from
  2 upward): the PandABlocks client hard-codes ports 8888/8889
  (:data:`PANDA_PORTS`), so the address is what tells two simulators apart;
* its IOC serves CA and PVA on ports chosen free at start, on 127.0.0.1 only
  (:class:`EpicsPorts`);
* the motor and detector's CA server has a port of its own too
  (:class:`DevicePorts`): two CA servers on one UDP port and address do not
  both get unicast searches.
"""

from __future__ import annotations

import dataclasses
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import BeamlineError

__all__ = [
    "LOOPBACK",
    "PANDA_PORTS",
    "DevicePorts",
    "EpicsPorts",
    "bindable",
    "free_device_ports",
    "free_epics_ports",
    "free_loopback_hosts",
]

#: The ports the PandABlocks client and server always use.
PANDA_PORTS = (8888, 8889)
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class EpicsPorts:
    """The CA and PVA ports of one IOC (all on 127.0.0.1)."""

    ca_server: int  # TCP and UDP: name searches and circuits
    ca_repeater: int  # UDP: where the server's beacons go
    pva_server: int  # TCP
    pva_broadcast: int  # UDP: name searches and beacons


@dataclass(frozen=True)
class DevicePorts:
    """The port of the motor and detector's CA server (on 127.0.0.1)."""

    ca_server: int  # TCP and UDP: name searches and circuits


def bindable(host: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """Whether ``port`` on ``host`` could be bound now (TCP unless ``kind``)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        # As asyncio's servers do: a port in TIME_WAIT is still usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_loopback_hosts(first: int = 2) -> Iterator[str]:
    """Loopback addresses, from ``127.0.0.<first>`` up, where both PandA ports
    are free right now."""
    for n in range(first, 255):
        host = f"127.0.0.{n}"
        if all(bindable(host, p, socket.SOCK_STREAM) for p in PANDA_PORTS):
            yield host


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out for outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _random_pool() -> range:
    low, high = _ephemeral_range()
    return range(10000, low) if low > 11000 else range(high + 1, 65536)


def _udp_free(port: int) -> bool:
    """Whether ``port`` is free for UDP on 127.0.0.1, also to a binder that
    shares ports (SO_REUSEADDR, as CA servers set it): checked without."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def free_device_ports(avoid: EpicsPorts | None = None) -> DevicePorts:
    """A port on 127.0.0.1, free now for TCP and UDP, for the motor and
    detector's CA server; not one of ``avoid``'s (chosen as
    :func:`free_epics_ports` chooses)."""
    taken = set() if avoid is None else set(dataclasses.astuple(avoid))
    rng = random.SystemRandom()
    pool = _random_pool()
    for _ in range(1000):
        port = rng.choice(pool)
        if port in taken:
            continue
        if bindable(LOOPBACK, port, socket.SOCK_STREAM) and _udp_free(port):
            return DevicePorts(ca_server=port)
    raise BeamlineError(f"no free port for the devices' CA server in {pool}")


def free_epics_ports() -> EpicsPorts:
    """Four distinct ports on 127.0.0.1 that are free now.

    Drawn at random from outside the kernel's ephemeral range, so no outgoing
    connection or UDP client elsewhere on the host takes one by chance before
    the IOC binds it (the session fixture chooses its ports minutes before
    its IOC may start). The CA server port must be free for both TCP and UDP.
    The sockets are held until all four are chosen, so they differ.
    """
    pool = _random_pool()
    rng = random.SystemRandom()
    held: list[socket.socket] = []
    try:

        def grab(*kinds: int) -> int:
            for _ in range(1000):
                port = rng.choice(pool)
                socks = [socket.socket(socket.AF_INET, kind) for kind in kinds]
                held.extend(socks)
                try:
                    for sock in socks:
                        sock.bind((LOOPBACK, port))
                except OSError:
                    continue  # taken (possibly by one we hold): draw again
                return port
            raise BeamlineError(f"no free port for EPICS in {pool}")

        return EpicsPorts(
            ca_server=grab(socket.SOCK_STREAM, socket.SOCK_DGRAM),
            ca_repeater=grab(socket.SOCK_DGRAM),
            pva_server=grab(socket.SOCK_STREAM),
            pva_broadcast=grab(socket.SOCK_DGRAM),
        )
    finally:
        for sock in held:
            sock.close()
