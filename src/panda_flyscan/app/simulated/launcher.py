"""Start a simulated beamline: the simulated PandA with the real PandABlocks-ioc,
and motors and area detectors that share the PandA's world and clock.

Two processes (each in a process group of its own, stopped by PID):

* ``python -m sim_ioc`` (named ``panda``): the simulated PandA, plus the motor
  records ``<prefix>:M1``..``M3`` and the detectors ``<prefix>:DET:`` and
  ``<prefix>:DET2:`` served over Channel Access by caproto, all in one asyncio
  loop (see :mod:`sim_ioc.__main__`);
* the real PandABlocks-ioc (``ioc``), serving ``<prefix>:PANDA:`` over CA and PVA.

With ``heal`` (a :class:`~.supervisor.HealPolicy`, the default of
``panda-flyscan sim``), a supervisor thread restarts the IOC on the same
CA/PVA ports when it dies, loses its PandA or runs away, so clients'
channels reconnect by themselves (:mod:`.supervisor`).

The simulator is built from one :class:`~sim_ioc.config.SimulatorConfig`,
validated here and handed over as ``--config-json`` (the command line in
``panda.log`` shows it). Every beamline is isolated from every other one on the
same host, on loopback addresses and ports of its own (:mod:`.ports`) and with
EPICS environments confined to them (:mod:`.epics_env`); it counts as started
once the readiness probe (:mod:`.probe`) sees every server answer.

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
import errno
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import sim_ioc
from sim_ioc.config import CONFIG_JSON_OPTION, SimulatorConfig

from ...processes import ManagedProcess, ProcessError, log_tail
from .epics_env import client_env, device_server_env, ioc_env, without_epics
from .errors import BeamlineError
from .ports import (
    LOOPBACK,
    PANDA_PORTS,
    DevicePorts,
    EpicsPorts,
    free_device_ports,
    free_epics_ports,
    free_loopback_hosts,
)
from .probe import run_probe
from .supervisor import HealPolicy, IocRestart, IocSupervisor, LogWatch

__all__ = [
    "LOOPBACK",
    "MOTOR_PV_VARIABLES",
    "PANDA_PORTS",
    "BeamlineError",
    "DevicePorts",
    "EpicsPorts",
    "HealPolicy",
    "IocRestart",
    "SimulatedBeamline",
    "SimulatorConfig",
    "client_env",
    "device_server_env",
    "free_device_ports",
    "free_epics_ports",
    "free_loopback_hosts",
    "ioc_env",
    "ioc_venv_path",
    "simulated_beamline",
]

logger = logging.getLogger(__name__)

#: Where ``scripts/setup.sh`` puts the IOC's own environment (numpy<2, pvi 0.10):
#: ``sim_ioc/.venv`` beside the simulator's package.
DEFAULT_IOC_VENV = Path(sim_ioc.__file__).resolve().parent / ".venv"
#: Set to use an IOC environment somewhere else (e.g. an installed copy).
IOC_VENV_ENV_VAR = "PANDA_FLYSCAN_IOC_VENV"

T = TypeVar("T")

#: The environment variables naming the motor records M1, M2, M3 (x, y, z).
MOTOR_PV_VARIABLES = ("MOTOR_PV", "MOTOR_PV_Y", "MOTOR_PV_Z")


def ioc_venv_path() -> Path:
    """The IOC environment: ``$PANDA_FLYSCAN_IOC_VENV`` or ``sim_ioc/.venv``."""
    override = os.environ.get(IOC_VENV_ENV_VAR)
    return Path(override) if override else DEFAULT_IOC_VENV


def _once_started(value: T | None) -> T:
    """``value``, set by :meth:`SimulatedBeamline.start`; BeamlineError before."""
    if value is None:
        raise BeamlineError("beamline not started")
    return value


class SimulatedBeamline:
    """The simulated PandA, its IOC, the motors and the detectors, started
    together and stopped together.

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
        simulator: SimulatorConfig | None = None,
        panda_timeout: float = 30.0,
        ioc_timeout: float = 120.0,
        stop_timeout: float = 5.0,
        heal: HealPolicy | None = None,
        on_restart: Callable[[IocRestart], None] | None = None,
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
            simulator: The simulator's configuration (motor, detector, FMC
                signals...), e.g. ``SimulatorConfig(fmc_signals=["FMC_IN1=sine
                2 1000"])``; its host and prefix are the beamline's (chosen at
                start, and ``prefix``). Default: the defaults.
            panda_timeout: Seconds for the simulator (PandA, motor, detector)
                to print ``READY``.
            ioc_timeout: Seconds for the IOC to answer over CA and PVA.
            stop_timeout: Seconds each process gets to stop before SIGKILL.
            heal: Supervise the IOC with this policy (restart it on the same
                ports when it dies, loses its PandA or runs away); None: not
                supervised (a dead IOC stays dead, see :meth:`dead_processes`).
            on_restart: Called (in the supervisor's thread) after each restart
                or failed attempt, e.g. to log it; restarts are also kept in
                :attr:`restarts`.
        """
        self.prefix = prefix
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._requested_ports = ports
        self._requested_device_ports = device_ports
        self.ioc_venv = Path(ioc_venv) if ioc_venv is not None else ioc_venv_path()
        simulator = simulator if simulator is not None else SimulatorConfig()
        if (simulator.control_port, simulator.data_port) != PANDA_PORTS:
            # PandABlocks-ioc has no option for other ports.
            raise ValueError(f"the IOC reaches a PandA on ports {PANDA_PORTS} only")
        #: What the simulator is built from (its host is chosen at start).
        self.simulator = simulator.model_copy(update={"prefix": prefix})
        self.panda_timeout = panda_timeout
        self.ioc_timeout = ioc_timeout
        self.stop_timeout = stop_timeout
        self._panda_host: str | None = None
        self._ports: EpicsPorts | None = None
        self._device_ports: DevicePorts | None = None
        #: Started processes, in start order; stopped in reverse, kept after.
        self.processes: list[ManagedProcess] = []
        self._started = False
        self.heal = heal
        self._on_restart = on_restart
        #: Every IOC restart (by the supervisor or :meth:`restart_ioc`), in order.
        self.restarts: list[IocRestart] = []
        self._restart_seen = threading.Condition()
        self._ioc_lock = threading.RLock()
        self._supervisor: IocSupervisor | None = None
        self._stopping = False

    # -- what clients need ------------------------------------------------------

    @property
    def panda_host(self) -> str:
        """The simulated PandA's address (control port 8888, data port 8889)."""
        return _once_started(self._panda_host)

    @property
    def ports(self) -> EpicsPorts:
        """The IOC's CA and PVA ports."""
        return _once_started(self._ports)

    @property
    def device_ports(self) -> DevicePorts:
        """The motor and detector's CA server port."""
        return _once_started(self._device_ports)

    @property
    def motor_pv(self) -> str:
        """The first motor record (x), for ophyd-async's ``Motor``:
        ``<prefix>:M1``."""
        return f"{self.prefix}:M1"

    @property
    def motor_pvs(self) -> tuple[str, ...]:
        """Every motor record, M1 first: ``<prefix>:M1``, ``M2``, ``M3`` with
        the default simulator (one per entry of its ``motors``)."""
        return tuple(
            f"{self.prefix}:M{n}" for n in range(1, len(self.simulator.motors) + 1)
        )

    @property
    def detector_prefix(self) -> str:
        """The detector's PV prefix (``cam1:`` and ``HDF1:`` below it), for
        ophyd-async's areaDetector classes: ``<prefix>:DET:``."""
        return f"{self.prefix}:DET:"

    @property
    def detector2_prefix(self) -> str:
        """The second (slow) detector's PV prefix: ``<prefix>:DET2:``."""
        return f"{self.prefix}:DET2:"

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
        PANDA_PREFIX, MOTOR_PV (M1, x), MOTOR_PV_Y (M2) and MOTOR_PV_Z (M3)
        when there are those motors, DETECTOR_PREFIX and DETECTOR2_PREFIX."""
        motors = dict(zip(MOTOR_PV_VARIABLES, self.motor_pvs, strict=False))
        return {
            **client_env(self.ports, self.device_ports),
            "PANDA_HOST": self.panda_host,
            "PANDA_PREFIX": self.panda_prefix,
            **motors,
            "DETECTOR_PREFIX": self.detector_prefix,
            "DETECTOR2_PREFIX": self.detector2_prefix,
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
            if self.heal is not None:
                self._supervisor = IocSupervisor(self, self.heal, self._restarted)
                self._supervisor.start()
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
            **without_epics(os.environ),
            **device_server_env(self.ports, self.device_ports),
        }
        for attempt, host in enumerate(free_loopback_hosts()):
            config = self.simulator.model_copy(update={"host": host})
            panda = ManagedProcess(
                "panda",
                # Validated here already; serialised once, read back as is.
                [
                    *(sys.executable, "-m", "sim_ioc"),
                    *(CONFIG_JSON_OPTION, config.model_dump_json()),
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

    def _start_ioc(self, ioc: Path) -> ManagedProcess:
        assert self.log_dir is not None
        process = ManagedProcess(
            "ioc",
            [str(ioc), "softioc", self.panda_host, self.ioc_prefix],
            # One log across restarts (each start writes its command line).
            self.log_dir / "ioc.log",
            {**without_epics(os.environ), **ioc_env(self.ports)},
            # The IOC runs an interactive shell and exits at end of input.
            keep_stdin_open=True,
            # A restart by the supervisor's thread, which lives until the
            # beamline stops.
            thread_outlives_child=threading.current_thread() is self._supervisor,
        )
        self.processes.append(process)
        process.start()
        return process

    def _ioc_ca(self) -> dict[str, int | None]:
        return {f"{self.ioc_prefix}:Status": 2}  # Statuses.CONNECTED

    def _wait_for_iocs(self, *, ioc_only: bool = False) -> None:
        """Wait until the IOC answers over PVA (its PVI structure) and CA (its
        connection status reads CONNECTED, set once every record is served),
        and (unless ``ioc_only``) the motor and detector answer over CA with
        the client environment (so its address list is proven too)."""
        assert self.log_dir is not None
        devices: dict[str, int | None] = {
            **{f"{pv}.DMOV": None for pv in self.motor_pvs},
            **{
                f"{det}{pv}": None
                for det in (self.detector_prefix, self.detector2_prefix)
                for pv in ("cam1:Acquire_RBV", "HDF1:Capture_RBV")
            },
        }
        probe = run_probe(
            pva=[f"{self.ioc_prefix}:PVI"],
            ca={**self._ioc_ca(), **({} if ioc_only else devices)},
            timeout=self.ioc_timeout,
            log_path=self.log_dir / "probe.log",
            env={**without_epics(os.environ), **self.env},
            watch=self.processes,
            stop_timeout=self.stop_timeout,
        )
        if probe.exit_code() != 0:
            ioc = self.ioc_process()
            raise BeamlineError(
                f"the IOC did not answer within {self.ioc_timeout:g} s:\n"
                f"{log_tail(probe.log_path)}\n" + ioc.failure("IOC still running")
            )

    # -- the IOC's supervision --------------------------------------------------

    @property
    def heal_policy(self) -> HealPolicy | None:
        """The supervision policy (None: not supervised)."""
        return self.heal

    @heal_policy.setter
    def heal_policy(self, policy: HealPolicy) -> None:
        """Change the policy of a supervised beamline; the supervisor uses it
        from its next sample (e.g. a lower between-scans RSS threshold)."""
        if self._supervisor is None:
            raise BeamlineError("the IOC is not supervised (started without heal)")
        self.heal = policy
        self._supervisor.policy = policy

    def ioc_process(self) -> ManagedProcess:
        """The IOC's current process (a new one after each restart)."""
        with self._ioc_lock:
            for process in reversed(self.processes):
                if process.name == "ioc":
                    return process
        raise BeamlineError("beamline not started")

    def others_alive(self) -> bool:
        """Whether the simulator (PandA, motors, detectors) still runs."""
        return not self._stopping and all(
            p.running for p in self.processes if p.name != "ioc"
        )

    def ioc_idle(self, watch: LogWatch) -> bool:
        """Whether the IOC is between scans: no capture file open (its log)
        and PCAP:ACTIVE and DATA:CAPTURE both 0 (a short CA probe)."""
        if watch.file_open:
            return False
        assert self.log_dir is not None
        probe = run_probe(
            pva=[],
            ca={
                f"{self.ioc_prefix}:PCAP:ACTIVE": 0,
                f"{self.ioc_prefix}:DATA:CAPTURE": 0,
            },
            timeout=2.0,
            log_path=self.log_dir / "idle-probe.log",
            env={**without_epics(os.environ), **self.env},
            watch=[],
            stop_timeout=self.stop_timeout,
        )
        return probe.exit_code() == 0

    def heal_ioc(
        self, pid: int | None, reason: str, *, kill: bool
    ) -> IocRestart | None:
        """Restart the IOC (its process ``pid``) on the same ports; None when
        it is no longer ``pid`` (someone restarted it meanwhile).

        ``kill``: SIGKILL it (it is broken: a graceful stop would only wait);
        otherwise it is stopped as at the end (stdin closed, SIGTERM).
        """
        with self._ioc_lock:
            old = self.ioc_process()
            if old.pid != pid or self._stopping:
                return None
            started_at, t0 = time.time(), time.monotonic()
            if kill:
                old.kill()
            else:
                old.stop(self.stop_timeout)
            self.processes.remove(old)
            ioc = self.ioc_venv / "bin" / "pandablocks-ioc"
            error: str | None = None
            try:
                self._start_ioc(ioc)
                self._wait_for_iocs(ioc_only=True)
            except (ProcessError, BeamlineError) as exc:
                error = str(exc)
            new_pid = self.ioc_process().pid
            restart = IocRestart(
                reason, old.pid, new_pid, started_at, time.monotonic() - t0, error
            )
            with self._restart_seen:
                self.restarts.append(restart)
                self._restart_seen.notify_all()
            return restart

    def wait_for_restart(self, after: int, timeout: float) -> IocRestart:
        """The first restart after the first ``after`` ones (``after =
        len(beamline.restarts)`` taken before a fault), waiting up to
        ``timeout`` seconds; BeamlineError if none came."""
        with self._restart_seen:
            if not self._restart_seen.wait_for(
                lambda: len(self.restarts) > after, timeout
            ):
                raise BeamlineError(f"the IOC was not restarted within {timeout:g} s")
            return self.restarts[after]

    def restart_ioc(
        self, reason: str = "requested", *, kill: bool = False
    ) -> IocRestart:
        """Restart the IOC now on the same ports (e.g. between scans, to give
        back the memory PandABlocks-ioc 0.11 keeps per capture); waits until
        it answers. Raises BeamlineError if it does not."""
        restart = self.heal_ioc(self.ioc_process().pid, reason, kill=kill)
        assert restart is not None  # the lock is reentrant: ours is current
        self._report(restart)
        if not restart.ok:
            raise BeamlineError(restart.describe())
        return restart

    def _restarted(self, restart: IocRestart) -> None:
        """The supervisor's callback."""
        self._report(restart)

    def _report(self, restart: IocRestart) -> None:
        (logger.warning if restart.ok else logger.error)("%s", restart.describe())
        if self._on_restart is not None:
            self._on_restart(restart)

    def dead_processes(self) -> list[ManagedProcess]:
        """Started processes that have exited (for a foreground runner to
        notice a crash). A supervised IOC counts only once the supervisor has
        given up on it; until then it is being restarted."""
        supervisor = self._supervisor
        healing = supervisor is not None and not supervisor.gave_up.is_set()
        with self._ioc_lock:
            return [
                p
                for p in self.processes
                if p.exited() and not (healing and p.name == "ioc")
            ]

    def stop(self) -> None:
        """Stop the supervisor, then every process started, newest first;
        idempotent."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.stop()
        with self._ioc_lock:
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
