"""Run bluesky-queueserver against a beamline: Redis, the RE Manager, and
(for ``panda-flyscan queue serve``) the simulated beamline and Tiled.

* :class:`QueueServer`: Redis (Debian's ``redis-server``, or one given) and
  ``start-re-manager`` with the shipped profile (:data:`PROFILE_DIR`), both
  on 127.0.0.1; ready once the manager answers and (by default) its worker
  environment is open, i.e. the devices are connected and the Tiled writer
  subscribed.
* :class:`QueueStack`: that, plus the simulated beamline and the bundled
  Tiled service unless existing ones are given: what ``panda-flyscan queue
  serve`` runs.
* :func:`connect_queue_server` / :func:`check_listening`: a client's first
  contact, failing at once with the address when nothing answers (the
  queue-server API and ``start-re-manager`` would otherwise time out with no
  address, or retry Redis for ever).

Every process is a :class:`~panda_flyscan.processes.ManagedProcess`: its own
process group (the RE Manager's watchdog, manager and worker go with it),
its log in the work directory, stopped by PID on exit, error or signal.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...polling import poll_until
from ...processes import ManagedProcess
from ...storage.cluster import RedisServer, free_loopback_port
from .settings import (
    BUS_NAME_ENV,
    BUS_URL_ENV,
    DATA_DIR_ENV,
    TILED_API_KEY_ENV,
    TILED_URI_ENV,
    ProfileSettings,
)

if TYPE_CHECKING:
    from bluesky_queueserver_api.zmq import REManagerAPI

    from ...storage import TiledService
    from ..simulated import SimulatedBeamline

__all__ = [
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_INFO_PORT",
    "PERMISSIONS_FILE",
    "PROFILE_DIR",
    "QueueServer",
    "QueueServerError",
    "QueueStack",
    "check_listening",
    "connect_queue_server",
]

#: The start-up directory the RE Manager's worker loads (shipped in the package).
PROFILE_DIR = Path(__file__).resolve().parent / "profile"
#: Who may run what: policy, so shipped beside the profile.
PERMISSIONS_FILE = PROFILE_DIR / "user_group_permissions.yaml"
#: The queue server's own defaults, which its clients (``qserver``) assume.
DEFAULT_CONTROL_PORT = 60615
DEFAULT_INFO_PORT = 60625
#: The file the RE Manager writes the plans and devices it found into, each
#: time its environment opens (in the work directory: generated, not shipped).
EXISTING_PLANS_FILE = "existing_plans_and_devices.yaml"


class QueueServerError(RuntimeError):
    """The queue server (or Redis, or Tiled) is unreachable or did not start."""


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    """``tcp://H:P``, ``redis://H:P/0``, ``http://H:P/...``, ``H:P`` or ``H``
    -> ``(H, P)``; ``*`` (every interface) as loopback."""
    text = address if "://" in address else f"tcp://{address}"
    parts = urlsplit(text)
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port or default_port
    except ValueError as err:
        raise QueueServerError(f"{address!r}: not HOST:PORT ({err})") from err
    return ("127.0.0.1" if host == "*" else host), port


def check_listening(
    address: str, what: str, *, default_port: int = 0, timeout: float = 2.0
) -> None:
    """Raise :class:`QueueServerError` naming ``what`` and ``address`` unless
    something accepts TCP connections there (within ``timeout`` seconds)."""
    host, port = _host_port(address, default_port)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else err.strerror or err
        raise QueueServerError(
            f"no {what} at {address}: nothing accepts connections on "
            f"{host}:{port} ({reason})"
        ) from err


def _check_free(port: int, what: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            raise QueueServerError(
                f"cannot serve the {what} on 127.0.0.1:{port}: {err.strerror} "
                "(another queue server? choose another port, or 0 for a free one)"
            ) from err


def connect_queue_server(
    zmq_control_addr: str, *, timeout: float = 5.0
) -> REManagerAPI:
    """A queue-server client (bluesky_queueserver_api's ``REManagerAPI`` over
    0MQ) that has had an answer from the RE Manager at ``zmq_control_addr``.

    Raises :class:`QueueServerError` naming the address, at once if nothing
    listens there, after ``timeout`` seconds if what listens does not answer
    as an RE Manager. Close the client with ``.close()``.
    """
    from bluesky_queueserver_api.zmq import REManagerAPI

    check_listening(zmq_control_addr, "queue server (RE Manager)", timeout=timeout)
    api = REManagerAPI(zmq_control_addr=zmq_control_addr, timeout_recv=timeout)
    try:
        api.status()
    except Exception as err:
        api.close()
        raise QueueServerError(
            f"no queue server answers at {zmq_control_addr} within {timeout:g} s: {err}"
        ) from err
    return api


def _start_re_manager() -> str:
    """``start-re-manager`` beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "start-re-manager"
    if beside.exists():
        return str(beside)
    import shutil

    found = shutil.which("start-re-manager")
    if found is None:
        raise QueueServerError(
            "start-re-manager not found: install panda-flyscan[facility] "
            "(bluesky-queueserver)"
        )
    return found


class QueueServer:
    """Redis and the RE Manager with panda-flyscan's profile, on loopback.

    Args:
        work_dir: Logs, Redis's directory and the generated
            ``existing_plans_and_devices.yaml``.
        settings: What the worker builds its session from (Tiled, the
            beamline's PVs); handed to it as environment variables.
        env: The rest of the worker's environment (default ``os.environ``):
            the EPICS client settings reaching the beamline's IOCs.
        redis_addr: An existing Redis (``HOST:PORT``); default: start one.
        control_port: The RE Manager's 0MQ control port (0: a free one).
        info_port: Its 0MQ info (console output) port (0: a free one).
        startup_dir: The profile; default :data:`PROFILE_DIR`.
        open_environment: Open the worker environment at start (connects the
            devices; a broken profile fails :meth:`start`, with the log).
        startup_timeout: Seconds for the RE Manager to answer.
        environment_timeout: Seconds for the environment to open.
        device_max_depth: How deep the RE Manager lists (and clients may name)
            sub-devices (``x.velocity``): 0, the default, all (some 450 on
            the simulated beamline, listed in under a second); 1: top-level
            devices only.
    """

    def __init__(
        self,
        work_dir: str | Path,
        settings: ProfileSettings,
        *,
        env: Mapping[str, str] | None = None,
        redis_addr: str | None = None,
        control_port: int = 0,
        info_port: int = 0,
        startup_dir: str | Path = PROFILE_DIR,
        open_environment: bool = True,
        startup_timeout: float = 60.0,
        environment_timeout: float = 120.0,
        device_max_depth: int = 0,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.device_max_depth = device_max_depth
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self._given_redis = redis_addr
        self.control_port = control_port or free_loopback_port()
        self.info_port = info_port or free_loopback_port()
        self.startup_dir = Path(startup_dir)
        self.open_environment = open_environment
        self.startup_timeout = startup_timeout
        self.environment_timeout = environment_timeout
        self.redis: RedisServer | None = None
        self.manager: ManagedProcess | None = None

    @property
    def control_addr(self) -> str:
        """The 0MQ control address clients send requests to."""
        return f"tcp://127.0.0.1:{self.control_port}"

    @property
    def info_addr(self) -> str:
        """The 0MQ address the RE Manager publishes its console output on."""
        return f"tcp://127.0.0.1:{self.info_port}"

    @property
    def redis_addr(self) -> str:
        """``HOST:PORT`` of the Redis holding the queue."""
        if self._given_redis is not None:
            return self._given_redis
        if self.redis is None:
            raise QueueServerError("queue server not started")
        return f"127.0.0.1:{self.redis.port}"

    @property
    def existing_plans_file(self) -> Path:
        """The plans and devices the RE Manager found, written at each
        environment open."""
        return self.work_dir / EXISTING_PLANS_FILE

    @property
    def processes(self) -> list[ManagedProcess]:
        """Started processes (Redis if started here, the RE Manager)."""
        redis = self.redis.process if self.redis is not None else None
        return [p for p in (redis, self.manager) if p is not None]

    def dead_processes(self) -> list[ManagedProcess]:
        """Started processes that have exited."""
        return [p for p in self.processes if p.exited()]

    def client(self, timeout: float = 5.0) -> REManagerAPI:
        """A client of this RE Manager (:func:`connect_queue_server`)."""
        return connect_queue_server(self.control_addr, timeout=timeout)

    def start(self) -> QueueServer:
        """Start Redis (unless given) and the RE Manager; wait until it
        answers and, with ``open_environment``, until its worker is ready."""
        # Refused before anything starts, naming the address.
        if self._given_redis is not None:
            check_listening(self._given_redis, "Redis", default_port=6379)
        _check_free(self.control_port, "RE Manager's control port")
        _check_free(self.info_port, "RE Manager's info port")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self._given_redis is None:
                self.redis = RedisServer(self.work_dir / "redis").start()
            self._start_manager()
            if self.open_environment:
                self._open_environment()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_manager(self) -> None:
        argv = [
            _start_re_manager(),
            *("--startup-dir", str(self.startup_dir)),
            *("--existing-plans-devices", str(self.existing_plans_file)),
            *("--update-existing-plans-devices", "ENVIRONMENT_OPEN"),
            *("--user-group-permissions", str(PERMISSIONS_FILE)),
            *("--redis-addr", self.redis_addr),
            *("--zmq-control-addr", self.control_addr),
            *("--zmq-info-addr", self.info_addr),
            *("--zmq-publish-console", "ON"),
            *("--device-max-depth", str(self.device_max_depth)),
        ]
        env = {**self.env, **self.settings.to_env()}
        # The worker imports the profile's package from this interpreter's env.
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.manager = ManagedProcess(
            "re-manager", argv, self.work_dir / "re-manager.log", env
        )
        self.manager.start()
        manager = self.manager

        def answers() -> bool:
            if manager.exited():
                raise QueueServerError(manager.failure("the RE Manager exited"))
            with contextlib.suppress(QueueServerError):
                connect_queue_server(self.control_addr, timeout=1.0).close()
                return True
            return False

        poll_until(
            answers,
            timeout=self.startup_timeout,
            interval=0.2,
            on_timeout=lambda: QueueServerError(
                manager.failure(
                    f"the RE Manager did not answer at {self.control_addr} "
                    f"within {self.startup_timeout:g} s"
                )
            ),
        )

    def _open_environment(self) -> None:
        assert self.manager is not None
        api = self.client()
        try:
            api.environment_open()
            api.wait_for_idle(timeout=math.ceil(self.environment_timeout))
            status: Any = api.status()
        except Exception as err:
            raise QueueServerError(
                self.manager.failure(f"the worker environment did not open: {err}")
            ) from err
        finally:
            api.close()
        if not status.get("worker_environment_exists"):
            raise QueueServerError(
                self.manager.failure(
                    "the worker environment did not open (the profile failed; "
                    "its traceback is in the log)"
                )
            )

    def stop(self) -> None:
        """Stop what was started, by PID: the RE Manager, then Redis."""
        manager, self.manager = self.manager, None
        try:
            if manager is not None:
                manager.stop(10.0)
        finally:
            redis, self.redis = self.redis, None
            if redis is not None:
                redis.stop()

    def __enter__(self) -> QueueServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class QueueStack:
    """Everything ``panda-flyscan queue serve`` runs, started and stopped
    together: the simulated beamline (unless ``sim`` is false: then the
    beamline the environment describes), the bundled Tiled (unless
    ``tiled_uri``), and the :class:`QueueServer`.

    Args:
        work_dir: Logs, the data directory (``data/``: HDF5 files, unless
            ``data_dir``) and the bundled Tiled's catalog (``tiled/``); a new
            temporary directory unless given; kept afterwards.
        sim: Start a simulated beamline with record prefix ``prefix``.
        tiled_uri: An existing Tiled server (its API key ``tiled_api_key``);
            it must be able to read ``data_dir``.
        data_dir: Where the PandA and detectors write (as their IOCs see it).
        redis_addr, control_port, info_port: as for :class:`QueueServer`.
        bus_url: Publish the worker's documents to this NATS JetStream server
            (as ``bus_name``) instead of writing Tiled in the worker; a
            writer service (``panda-flyscan tiled writer --bus``) writes them.
    """

    def __init__(
        self,
        work_dir: str | Path | None = None,
        *,
        sim: bool = True,
        prefix: str = "QS",
        tiled_uri: str | None = None,
        tiled_api_key: str | None = None,
        data_dir: str | Path | None = None,
        redis_addr: str | None = None,
        control_port: int = DEFAULT_CONTROL_PORT,
        info_port: int = DEFAULT_INFO_PORT,
        bus_url: str | None = None,
        bus_name: str | None = None,
    ) -> None:
        self.bus_url = bus_url
        self.bus_name = bus_name
        self.work_dir = Path(
            work_dir
            if work_dir is not None
            else tempfile.mkdtemp(prefix="panda-flyscan-queue-")
        )
        self.sim = sim
        self.prefix = prefix
        self.tiled_uri = tiled_uri
        self.tiled_api_key = tiled_api_key
        self.data_dir = Path(data_dir) if data_dir else self.work_dir / "data"
        self.redis_addr = redis_addr
        self.control_port = control_port
        self.info_port = info_port
        self.beamline: SimulatedBeamline | None = None
        self.tiled: TiledService | None = None
        self.server: QueueServer | None = None
        self._stack = contextlib.ExitStack()

    def client_env(self) -> dict[str, str]:
        """What a client needs: the queue server's addresses (the names
        ``qserver`` reads), Redis's, and where runs land in Tiled."""
        assert self.server is not None, "not started"
        env = {
            "QSERVER_ZMQ_CONTROL_ADDRESS": self.server.control_addr,
            "QSERVER_ZMQ_INFO_ADDRESS": self.server.info_addr,
            "QSERVER_REDIS_ADDRESS": self.server.redis_addr,
            TILED_URI_ENV: self.server.settings.tiled_uri,
        }
        if self.server.settings.tiled_api_key:
            env[TILED_API_KEY_ENV] = self.server.settings.tiled_api_key
        return env

    def _check_given(self) -> None:
        """Refuse unreachable servers given before starting anything."""
        if self.redis_addr is not None:
            check_listening(self.redis_addr, "Redis", default_port=6379)
        if self.tiled_uri is not None:
            check_listening(self.tiled_uri, "Tiled server", default_port=80)
        if self.bus_url is not None:
            check_listening(self.bus_url, "NATS server (the bus)", default_port=4222)
        for port, what in ((self.control_port, "control"), (self.info_port, "info")):
            if port:
                _check_free(port, f"RE Manager's {what} port")

    def start(self) -> QueueStack:
        """Start everything, in order; on failure stop what was started."""
        self._check_given()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            env = self._start_beamline()
            uri, key = self._start_tiled()
            settings = ProfileSettings.from_env(
                {
                    **env,
                    TILED_URI_ENV: uri,
                    **({TILED_API_KEY_ENV: key} if key else {}),
                    DATA_DIR_ENV: str(self.data_dir.resolve()),
                    **({BUS_URL_ENV: self.bus_url} if self.bus_url else {}),
                    **({BUS_NAME_ENV: self.bus_name} if self.bus_name else {}),
                }
            )
            self.server = self._stack.enter_context(
                QueueServer(
                    self.work_dir / "queue",
                    settings,
                    env=env,
                    redis_addr=self.redis_addr,
                    control_port=self.control_port,
                    info_port=self.info_port,
                )
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _start_beamline(self) -> dict[str, str]:
        if not self.sim:
            return dict(os.environ)
        from ..simulated.epics_env import without_epics
        from ..simulated.launcher import HealPolicy, SimulatedBeamline

        beamline = SimulatedBeamline(
            self.prefix, log_dir=self.work_dir / "beamline", heal=HealPolicy()
        )
        self.beamline = self._stack.enter_context(beamline)
        # Only the started beamline's EPICS settings: inherited ones would
        # send the worker's CA searches elsewhere.
        return {**without_epics(os.environ), **beamline.env}

    def _start_tiled(self) -> tuple[str, str | None]:
        if self.tiled_uri is not None:
            return self.tiled_uri, self.tiled_api_key
        from ...storage import TiledService

        self.tiled = self._stack.enter_context(
            TiledService(self.work_dir / "tiled", readable=[self.data_dir])
        )
        return self.tiled.uri, self.tiled.api_key

    def dead_processes(self) -> list[ManagedProcess]:
        """Started processes that have exited (the beamline's IOC is
        restarted by its supervisor, so it is not one of them)."""
        dead = self.server.dead_processes() if self.server is not None else []
        if self.beamline is not None:
            dead += self.beamline.dead_processes()
        return dead

    def stop(self) -> None:
        """Stop everything started, in reverse order, by PID."""
        self._stack.close()
        self.server = None

    def __enter__(self) -> QueueStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
