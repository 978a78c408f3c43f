"""The sockets a process has bound, from Linux ``/proc`` (no tools needed)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

#: TCP state LISTEN in /proc/net/tcp.
_LISTEN = "0A"


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _is_loopback(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


@dataclass(frozen=True)
class Bound:
    """One socket of a process: TCP (listening or connected) or UDP."""

    protocol: str
    address: Address
    port: int
    #: The peer of a connected socket (None: listening, or unconnected UDP).
    remote: tuple[Address, int] | None = None
    listening: bool = False

    @property
    def loopback(self) -> bool:
        return _is_loopback(self.address)

    @property
    def remote_loopback(self) -> bool:
        return self.remote is None or _is_loopback(self.remote[0])

    def __str__(self) -> str:
        peer = "" if self.remote is None else f" -> {self.remote[0]}:{self.remote[1]}"
        return f"{self.protocol} {self.address}:{self.port}{peer}"


def _address(
    hex_address: str,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        address: Address = ipaddress.IPv4Address(raw[::-1])
    else:  # four little-endian 32-bit words
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        address = ipaddress.IPv6Address(words)
    return address, int(port, 16)


def bound_sockets(pid: int) -> list[Bound]:
    """The TCP and UDP sockets of process ``pid``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found: list[Bound] = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        table = Path(f"/proc/{pid}/net/{protocol}")
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            parts = line.split()
            local, peer, state, inode = parts[1], parts[2], parts[3], parts[9]
            if inode not in inodes:
                continue
            address, port = _address(local)
            remote_address, remote_port = _address(peer)
            remote = None if remote_port == 0 else (remote_address, remote_port)
            listening = protocol.startswith("tcp") and state == _LISTEN
            found.append(Bound(protocol, address, port, remote, listening))
    return found
