"""Start a simulated beamline: the simulated PandA with the real PandABlocks-ioc,
and a motor and an area detector that share the PandA's world and clock.

Two processes (each in a process group of its own, stopped by PID):

* ``python -m sim_ioc`` (named ``panda``): the simulated PandA, plus the motor
  record ``<prefix>:M1`` and the detector ``<prefix>:DET:`` served over Channel
  Access by caproto, all in one asyncio loop (see :mod:`sim_ioc.__main__`);
* the real PandABlocks-ioc (``ioc``), serving ``<prefix>:PANDA:`` over CA and PVA.

Every beamline is isolated from every other one on the same host:

* the simulated PandA listens on a loopback address of its own, ``127.0.0.N``
  (N from 2 upward): the PandABlocks client hard-codes ports 8888/8889, so the
  address is what tells two simulators apart;
* its IOC serves CA and PVA on ports chosen free at start and on 127.0.0.1 only,
  with beacons and searches confined to 127.0.0.1, so two IOCs with the same
  record names never answer each other's clients and nothing leaves loopback;
* the motor and detector's CA server has a port of its own too
  (:class:`DevicePorts`; two CA servers on one UDP port and address do not both
  get unicast searches), which clients reach through an ``127.0.0.1:PORT``
  entry of ``EPICS_CA_ADDR_LIST``.

Clients reach a beamline through :attr:`SimulatedBeamline.env`. CA (aioca,
libca) and PVA (p4p) clients read those variables from ``os.environ`` once, when
their first context is made, so a process sets them before its first CA/PVA use
and then talks to one beamline for the rest of its life.

Usage::

    with simulated_beamline(prefix="SIM") as beamline:
        os.environ.update(beamline.env)  # before the first CA/PVA use
        panda = HDFPanda(beamline.panda_prefix, path_provider)
        motor = Motor(beamline.motor_pv)
        detector = SimDetector(beamline.detector_prefix, ADWriterFactory.hdf(...))
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import sim_ioc

from ...polling import poll_until
from ...processes import ManagedProcess, ProcessError, log_tail

__all__ = [
    "BeamlineError",
    "DevicePorts",
    "EpicsPorts",
    "ManagedProcess",
    "SimulatedBeamline",
    "client_env",
    "device_server_env",
    "free_device_ports",
    "free_epics_ports",
    "ioc_env",
    "ioc_venv_path",
    "simulated_beamline",
]

#: Where ``scripts/setup.sh`` puts the IOC's own environment (numpy<2, pvi 0.10):
#: ``sim_ioc/.venv`` beside the simulator's package.
DEFAULT_IOC_VENV = Path(sim_ioc.__file__).resolve().parent / ".venv"
#: Set to use an IOC environment somewhere else (e.g. an installed copy).
IOC_VENV_ENV_VAR = "PANDA_FLYSCAN_IOC_VENV"
#: The ports the PandABlocks client and server always use.
PANDA_PORTS = (8888, 8889)
LOOPBACK = "127.0.0.1"


class BeamlineError(ProcessError):
    """A simulated beamline could not be started."""


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


def ioc_venv_path() -> Path:
    """The IOC environment: ``$PANDA_FLYSCAN_IOC_VENV`` or ``sim_ioc/.venv``."""
    override = os.environ.get(IOC_VENV_ENV_VAR)
    return Path(override) if override else DEFAULT_IOC_VENV


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
    on ``devices.ca_server`` at 127.0.0.1, without beacons.

    caproto takes its UDP search port and first TCP port from
    ``EPICS_CA_SERVER_PORT``. Beacons only speed up reconnection, and caproto
    logs an error for every one no repeater receives, so there are none.
    """
    return {
        **client_env(ports, devices),
        "EPICS_CA_SERVER_PORT": str(devices.ca_server),
        "EPICS_CAS_SERVER_PORT": str(devices.ca_server),
        "EPICS_CAS_INTF_ADDR_LIST": LOOPBACK,
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": "",
    }


def _without_epics(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` less any inherited EPICS settings, which would override ours."""
    return {k: v for k, v in env.items() if not k.startswith("EPICS_")}


def _bindable(host: str, port: int, kind: int) -> bool:
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
        if all(_bindable(host, p, socket.SOCK_STREAM) for p in PANDA_PORTS):
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
        if _bindable(LOOPBACK, port, socket.SOCK_STREAM) and _udp_free(port):
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


# The readiness probe runs in a child process with the client environment, so
# it checks exactly what a client will see, and leaves this process's own CA
# and PVA contexts (which read os.environ once) untouched.
_PROBE_CODE = (
    "import sys; from panda_flyscan.app.simulated.launcher import _probe_main; "
    "sys.exit(_probe_main(sys.argv[1]))"
)


def _probe_main(spec: str) -> int:
    """Wait until every PV in ``spec`` answers; 0 when they all do, 1 if not.

    ``spec`` is JSON: ``{"pva": [names], "ca": {name: wanted int or null},
    "timeout": seconds}``. Uses p4p and aioca, the clients ophyd-async uses.
    """
    import asyncio

    from aioca import caget
    from p4p.client.asyncio import Context

    params: dict[str, Any] = json.loads(spec)
    pva: set[str] = set(params["pva"])
    ca: dict[str, int | None] = dict(params["ca"])
    deadline = time.monotonic() + float(params["timeout"])
    problems: dict[str, str] = {}

    async def check() -> int:
        with Context("pva") as ctx:  # reads the EPICS_PVA_* we were given
            while True:
                for name in sorted(pva):
                    try:
                        await asyncio.wait_for(ctx.get(name), timeout=1.0)
                    except Exception as exc:
                        problems[name] = f"PVA: {exc!r}"
                    else:
                        pva.discard(name)
                        problems.pop(name, None)
                for name, wanted in sorted(ca.items()):
                    try:
                        value: Any = await caget(name, timeout=1.0)
                    except Exception as exc:
                        problems[name] = f"CA: {exc!r}"
                        continue
                    if wanted is not None and int(value) != wanted:
                        problems[name] = f"CA: {value!r}, waiting for {wanted}"
                        continue
                    del ca[name]
                    problems.pop(name, None)
                if not pva and not ca:
                    print("ALL ANSWERED", flush=True)
                    return 0
                if time.monotonic() >= deadline:
                    for name, problem in sorted(problems.items()):
                        print(f"{name}: {problem}", flush=True)
                    return 1
                await asyncio.sleep(0.2)

    return asyncio.run(check())


class SimulatedBeamline:
    """The simulated PandA, its IOC, the motor and the detector, started together
    and stopped together.

    Use as a context manager (or call :meth:`start` and :meth:`stop`). Every
    process is started in its own process group and stopped on exit, on error
    and on Ctrl-C; logs go to ``log_dir`` (a new temporary directory unless
    given) and are kept for inspection.
    """

    def __init__(
        self,
        prefix: str = "SIM",
        *,
        log_dir: Path | str | None = None,
        ports: EpicsPorts | None = None,
        device_ports: DevicePorts | None = None,
        ioc_venv: Path | str | None = None,
        simulator_args: Sequence[str] = (),
        panda_timeout: float = 30.0,
        ioc_timeout: float = 120.0,
        stop_timeout: float = 5.0,
    ) -> None:
        """
        Args:
            prefix: Record prefix; the PandA's records are ``<prefix>:PANDA:...``.
            log_dir: Where the processes log; default: a new temporary directory.
            ports: The IOC's CA/PVA ports; default: free ports chosen at start.
                Choose them early (:func:`free_epics_ports`) to set a process's
                client environment before the beamline starts.
            device_ports: The motor and detector's CA port; default: a free
                port chosen at start (:func:`free_device_ports`, early, as
                ``ports``).
            ioc_venv: The IOC's environment; default: :func:`ioc_venv_path`.
            simulator_args: More arguments of ``python -m sim_ioc`` (see its
                ``--help``), e.g. ``["--fmc-signal", "FMC_IN1=sine 2 1000"]``.
            panda_timeout: Seconds for the simulator (PandA, motor, detector)
                to print ``READY``.
            ioc_timeout: Seconds for the IOC to answer over CA and PVA.
            stop_timeout: Seconds each process gets to stop before SIGKILL.
        """
        self.prefix = prefix
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._requested_ports = ports
        self._requested_device_ports = device_ports
        self.ioc_venv = Path(ioc_venv) if ioc_venv is not None else ioc_venv_path()
        self.simulator_args = list(simulator_args)
        self.panda_timeout = panda_timeout
        self.ioc_timeout = ioc_timeout
        self.stop_timeout = stop_timeout
        self._panda_host: str | None = None
        self._ports: EpicsPorts | None = None
        self._device_ports: DevicePorts | None = None
        #: Started processes, in start order; stopped in reverse, kept after.
        self.processes: list[ManagedProcess] = []
        self._started = False

    # -- what clients need ------------------------------------------------------

    @property
    def panda_host(self) -> str:
        """The simulated PandA's address (control port 8888, data port 8889)."""
        if self._panda_host is None:
            raise BeamlineError("beamline not started")
        return self._panda_host

    @property
    def ports(self) -> EpicsPorts:
        """The IOC's CA and PVA ports."""
        if self._ports is None:
            raise BeamlineError("beamline not started")
        return self._ports

    @property
    def device_ports(self) -> DevicePorts:
        """The motor and detector's CA server port."""
        if self._device_ports is None:
            raise BeamlineError("beamline not started")
        return self._device_ports

    @property
    def motor_pv(self) -> str:
        """The motor record, for ophyd-async's ``Motor``: ``<prefix>:M1``."""
        return f"{self.prefix}:M1"

    @property
    def detector_prefix(self) -> str:
        """The detector's PV prefix (``cam1:`` and ``HDF1:`` below it), for
        ophyd-async's areaDetector classes: ``<prefix>:DET:``."""
        return f"{self.prefix}:DET:"

    @property
    def ioc_prefix(self) -> str:
        """The prefix handed to PandABlocks-ioc, ``<prefix>:PANDA``."""
        return f"{self.prefix}:PANDA"

    @property
    def panda_prefix(self) -> str:
        """The PV prefix for ophyd-async's ``HDFPanda``: ``<prefix>:PANDA:``."""
        return f"{self.ioc_prefix}:"

    @property
    def env(self) -> dict[str, str]:
        """The client environment: CA/PVA settings plus PANDA_HOST,
        PANDA_PREFIX, MOTOR_PV and DETECTOR_PREFIX."""
        return {
            **client_env(self.ports, self.device_ports),
            "PANDA_HOST": self.panda_host,
            "PANDA_PREFIX": self.panda_prefix,
            "MOTOR_PV": self.motor_pv,
            "DETECTOR_PREFIX": self.detector_prefix,
        }

    def env_lines(self) -> list[str]:
        """:attr:`env` as ``KEY=VALUE`` lines (a shell- and docker-style env
        file).

        A value with spaces (``EPICS_CA_ADDR_LIST`` lists both CA servers) is
        double-quoted, as POSIX shells (``set -a; . ./sim.env``), docker
        compose's ``env_file`` and systemd's ``EnvironmentFile`` read it.
        """
        return [
            f'{key}="{value}"' if " " in value else f"{key}={value}"
            for key, value in sorted(self.env.items())
        ]

    @property
    def logs(self) -> dict[str, Path]:
        """Log file of each started process, by name (``panda``, ``ioc``)."""
        return {p.name: p.log_path for p in self.processes}

    # -- lifetime ---------------------------------------------------------------

    def start(self) -> SimulatedBeamline:
        """Start every process and wait until each answers."""
        if self._started:
            raise BeamlineError("beamline already started")
        self._started = True
        ioc = self.ioc_venv / "bin" / "pandablocks-ioc"
        if not ioc.exists():
            raise BeamlineError(
                f"{ioc} not found: create the IOC environment with scripts/setup.sh"
            )
        if self.log_dir is None:
            self.log_dir = Path(
                tempfile.mkdtemp(prefix=f"panda-flyscan-{self.prefix}-")
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._ports = self._requested_ports or free_epics_ports()
        self._device_ports = self._requested_device_ports or free_device_ports(
            self._ports
        )
        try:
            self._start_panda()
            self._start_ioc(ioc)
            self._wait_for_iocs()
        except ProcessError as exc:
            self.stop()
            if isinstance(exc, BeamlineError):
                raise
            raise BeamlineError(str(exc)) from exc
        except BaseException:
            self.stop()
            raise
        return self

    def _start_panda(self) -> None:
        """Start the simulator on the first free loopback address: the PandA,
        and in the same process (one world, one clock) the motor and detector
        on their CA port.

        Another launcher may take the same address between the check and the
        bind: then the simulator fails with EADDRINUSE and the next address is
        tried.
        """
        assert self.log_dir is not None
        env = {
            **_without_epics(os.environ),
            **device_server_env(self.ports, self.device_ports),
        }
        for attempt, host in enumerate(free_loopback_hosts()):
            panda = ManagedProcess(
                "panda",
                [
                    sys.executable,
                    *("-m", "sim_ioc", "--host", host, "--prefix", self.prefix),
                    *self.simulator_args,
                ],
                self.log_dir / "panda.log",
                env,
                ready="READY",
            )
            self.processes.append(panda)
            panda.start()
            try:
                panda.wait_ready(self.panda_timeout)
            except ProcessError:
                lost_race = panda.exited() and (
                    "Errno 98" in log_tail(panda.log_path, 5)
                    or os.strerror(errno.EADDRINUSE) in log_tail(panda.log_path, 5)
                )
                self.processes.remove(panda)
                panda.stop(self.stop_timeout)
                if lost_race and attempt < 5:
                    continue
                raise
            self._panda_host = host
            return
        raise BeamlineError(
            "no loopback address 127.0.0.2-254 has ports 8888 and 8889 free "
            "(is something listening on 0.0.0.0:8888?)"
        )

    def _start_ioc(self, ioc: Path) -> None:
        assert self.log_dir is not None
        process = ManagedProcess(
            "ioc",
            [str(ioc), "softioc", self.panda_host, self.ioc_prefix],
            self.log_dir / "ioc.log",
            {**_without_epics(os.environ), **ioc_env(self.ports)},
            # The IOC runs an interactive shell and exits at end of input.
            keep_stdin_open=True,
        )
        self.processes.append(process)
        process.start()

    def _wait_for_iocs(self) -> None:
        """Wait until the IOC answers over PVA (its PVI structure) and CA (its
        connection status reads CONNECTED, set once every record is served),
        and the motor and detector answer over CA with the client
        environment (so its address list is proven too)."""
        assert self.log_dir is not None
        spec = {
            "pva": [f"{self.ioc_prefix}:PVI"],
            "ca": {
                f"{self.ioc_prefix}:Status": 2,  # Statuses.CONNECTED
                f"{self.motor_pv}.DMOV": None,
                f"{self.detector_prefix}cam1:Acquire_RBV": None,
                f"{self.detector_prefix}HDF1:Capture_RBV": None,
            },
            "timeout": self.ioc_timeout,
        }
        probe = ManagedProcess(
            "probe",
            [sys.executable, "-c", _PROBE_CODE, json.dumps(spec)],
            self.log_dir / "probe.log",
            {**_without_epics(os.environ), **self.env},
        )
        probe.start()
        # The probe keeps its own deadline; this one only guards against a
        # probe that hangs (its imports and clean-up get a generous margin).

        def probe_done() -> bool:
            for process in self.processes:
                if process.exited():
                    raise BeamlineError(
                        process.failure(f"{process.name} exited during start-up")
                    )
            return probe.exited()

        try:
            poll_until(
                probe_done,
                timeout=self.ioc_timeout + 30,
                interval=0.1,
                on_timeout=lambda: BeamlineError(
                    probe.failure("the readiness probe hung")
                ),
            )
            if probe.exit_code() != 0:
                ioc = self.processes[-1]
                raise BeamlineError(
                    f"the IOC did not answer within {self.ioc_timeout:g} s:\n"
                    f"{log_tail(probe.log_path)}\n" + ioc.failure("IOC still running")
                )
        finally:
            probe.stop(self.stop_timeout)

    def dead_processes(self) -> list[ManagedProcess]:
        """Started processes that have exited (for a foreground runner to
        notice a crash)."""
        return [p for p in self.processes if p.exited()]

    def stop(self) -> None:
        """Stop every process started, newest first; idempotent."""
        for process in reversed(self.processes):
            process.stop(self.stop_timeout)

    def __enter__(self) -> SimulatedBeamline:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def simulated_beamline(
    prefix: str = "SIM", **kwargs: Any
) -> Iterator[SimulatedBeamline]:
    """Start a :class:`SimulatedBeamline`; stop it on leaving the block.

    Keyword arguments are those of :class:`SimulatedBeamline`.
    """
    with SimulatedBeamline(prefix, **kwargs) as beamline:
        yield beamline
