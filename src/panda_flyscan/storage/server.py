"""The local Tiled service: run it in the foreground, or manage it from Python.

* :func:`run_server` serves a Tiled configuration in the calling process until
  SIGINT/SIGTERM (what ``panda-flyscan tiled serve`` does).
* :class:`TiledService` starts that command in a subprocess, waits until the
  server answers, and stops it by PID: a context manager for notebooks, tests
  and scripts. The subprocess keeps the server's work off the RunEngine's GIL.

The server binds a socket before it starts (port 0 picks a free port), so the
URI is known without races, and reports it once ``/healthz`` answers.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import httpx

from .config import (
    DEFAULT_API_KEY,
    DEFAULT_HOST,
    SERVER_API_KEY_ENV,
    LocalLayout,
    default_data_dir,
    local_tiled_config,
)
from .errors import TiledServiceError

if TYPE_CHECKING:
    from tiled.client.container import Container
    from tiled.config import Config

#: How long :class:`TiledService` waits for a new server to answer.
STARTUP_TIMEOUT = 90.0


def _unexpanded(value: Any) -> list[str]:
    """Strings in a parsed configuration still holding ``${VAR}`` placeholders."""
    if isinstance(value, str):
        return [value] if "${" in value or value.startswith("$") else []
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _unexpanded(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _unexpanded(v)]
    return []


def _check_readable_dirs(paths: Iterable[str]) -> None:
    """Fail now, naming the fix, if a readable directory is unusable.

    A missing directory does not stop Tiled from starting, but every external
    asset registered there would fail to read (500) later, mid-analysis.
    """
    for entry in paths:
        path = Path(entry.removeprefix("file://localhost").removeprefix("file://"))
        if "://" in entry and not entry.startswith("file:"):
            continue  # object storage etc.: not ours to check
        if not path.is_dir():
            raise TiledServiceError(
                f"Readable directory {path} does not exist. Create it (the "
                "directory where detectors and the PandA write their files) or "
                "remove it from --readable / readable_storage."
            )
        if not os.access(path, os.R_OK | os.X_OK):
            raise TiledServiceError(
                f"Readable directory {path} is not readable by this user "
                f"(uid {os.getuid()}). Fix its permissions (e.g. chmod o+rx) or "
                "run the server as a user that can read it."
            )


class _LockedConnection:
    """A pooled connection that holds a lock until it is closed."""

    def __init__(self, connection: Any, lock: threading.RLock) -> None:
        self._connection = connection
        self._lock: threading.RLock | None = lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def close(self) -> None:
        lock, self._lock = self._lock, None
        try:
            self._connection.close()
        finally:
            if lock is not None:
                lock.release()


def serialize_duckdb_access() -> None:
    """Serialize use of DuckDB table storage in this (server) process.

    Tiled 0.2.20 serves DuckDB through a ``StaticPool``: one ADBC connection
    shared, unlocked, by every worker thread. Reading a table while the
    TiledWriter appends to it (following a run live) then fails with 500s
    ("No active transaction") and can crash the server (segfault). Every use
    in Tiled is ``with closing(storage.connect())``, so holding a lock from
    ``connect()`` to ``close()`` makes the sharing safe. Idempotent; other
    dialects (SQLite, PostgreSQL) are left alone.
    """
    from tiled.storage import SQLStorage

    original = SQLStorage.connect
    if getattr(original, "_panda_flyscan_serialized", False):
        return
    lock = threading.RLock()

    def connect(self: Any) -> Any:
        if self.dialect != "duckdb":
            return original(self)
        lock.acquire()
        try:
            return _LockedConnection(original(self), lock)
        except BaseException:
            lock.release()
            raise

    connect._panda_flyscan_serialized = True  # type: ignore[attr-defined]
    SQLStorage.connect = connect  # type: ignore[method-assign]


def load_config(config: Mapping[str, Any] | str | Path) -> Config:
    """Parse and validate a Tiled configuration (a dict, or a YAML file/dir).

    Raises :class:`TiledServiceError` for placeholders left unexpanded (an
    environment variable not set) and for readable directories that do not
    exist, before any server starts.
    """
    from tiled.config import Config, parse_configs

    try:
        if isinstance(config, Mapping):
            parsed = Config.model_validate(copy.deepcopy(dict(config)))
        else:
            parsed = parse_configs(Path(config))
    except Exception as err:
        raise TiledServiceError(f"Invalid Tiled configuration: {err}") from err
    for tree in parsed.trees or []:
        args = tree.args or {}
        relevant = {
            k: args.get(k) for k in ("uri", "writable_storage", "readable_storage")
        }
        if missing := _unexpanded(relevant):
            raise TiledServiceError(
                f"The configuration still contains {missing}: set these "
                "environment variables before starting the server (see the "
                "header of the configuration file)."
            )
        _check_readable_dirs(args.get("readable_storage") or [])
    key = parsed.authentication.single_user_api_key
    if key is not None and _unexpanded(key):
        raise TiledServiceError(
            f"The API key is the placeholder {key!r}: set that environment variable."
        )
    return parsed


def check_api_key(api_key: str) -> str:
    """Return ``api_key`` if Tiled accepts it as a single-user key, else raise."""
    if not api_key or not api_key.isalnum():
        raise TiledServiceError(
            "The API key must be non-empty and alphanumeric (Tiled's rule, so that "
            "it survives URLs); generate one with `openssl rand -hex 32`."
        )
    return api_key


def _log_config() -> dict[str, Any]:
    """Tiled's logging configuration with every handler on stderr.

    stdout is kept for the one line scripts read: the URI.
    """
    from tiled.server.logging_config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    colour = sys.stderr.isatty()
    for handler in log_config["handlers"].values():
        if handler.get("class") == "logging.StreamHandler":
            handler["stream"] = "ext://sys.stderr"
    for formatter in log_config["formatters"].values():
        if "use_colors" in formatter:
            formatter["use_colors"] = colour
    return log_config


def _wait_until_answers(
    base_url: str, is_alive: Callable[[], bool], timeout: float
) -> None:
    """Poll ``/healthz`` until 200, the deadline, or the server dying."""
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False) as http:
        while True:
            if not is_alive():
                raise TiledServiceError("the Tiled server stopped while starting")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TiledServiceError(
                    f"the Tiled server did not answer within {timeout:.0f} s"
                )
            try:
                if http.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)


@contextlib.contextmanager
def _data_dir_lock(layout: LocalLayout) -> Iterator[None]:
    """Hold an exclusive lock on the data directory for the server's lifetime.

    SQLite and DuckDB files must not be served by two processes at once.
    """
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise TiledServiceError(
                f"Another Tiled service (pid {owner}) is using {layout.data_dir}. "
                "Stop it, or give this one its own --data-dir."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_server(
    config: Mapping[str, Any] | str | Path,
    *,
    host: str | None = None,
    port: int | None = None,
    api_key: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    data_dir_lock: Path | None = None,
) -> None:
    """Serve a Tiled configuration in this process until SIGINT or SIGTERM.

    ``host``/``port`` override the configuration's ``uvicorn`` section (port 0
    picks a free port), ``api_key`` its single-user API key. ``on_ready`` is
    called with the API URI once the server answers. ``data_dir_lock``: a local
    data directory to lock for the server's lifetime. Returns normally after a
    clean shutdown on a signal.
    """
    import uvicorn
    from tiled.server.app import build_app_from_config

    serialize_duckdb_access()
    parsed = load_config(config)
    if api_key is not None:
        parsed.authentication.single_user_api_key = check_api_key(api_key)
    host = host or str(parsed.uvicorn.get("host", DEFAULT_HOST))
    port = port if port is not None else int(parsed.uvicorn.get("port", 8000))

    lock = (
        _data_dir_lock(LocalLayout(data_dir_lock))
        if data_dir_lock is not None
        else contextlib.nullcontext()
    )
    with lock:
        app = build_app_from_config(parsed)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            sock.close()
            raise TiledServiceError(
                f"Cannot listen on {host}:{port}: {err.strerror}. Pick another "
                "--port (0 picks a free one) or stop what uses it."
            ) from err
        actual_port = sock.getsockname()[1]
        url_host = f"[{host}]" if family == socket.AF_INET6 else host
        base_url = f"http://{url_host}:{actual_port}"
        server = uvicorn.Server(
            uvicorn.Config(app, log_config=_log_config(), lifespan="on")
        )

        def announce() -> None:
            try:
                _wait_until_answers(
                    base_url, lambda: not server.should_exit, STARTUP_TIMEOUT
                )
            except TiledServiceError:
                return  # the main thread reports the failure
            if on_ready is not None:
                on_ready(f"{base_url}/api/v1")

        threading.Thread(target=announce, name="tiled-ready", daemon=True).start()

        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the
        # signal to the handler in place before it started: make that a no-op
        # so a requested stop is a normal return (exit status 0).
        previous = {
            sig: signal.signal(sig, lambda *_: None)
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sock.close()
        if not server.started:
            raise TiledServiceError("the Tiled server failed to start (see log above)")


class TiledService:
    """A local Tiled server in a subprocess, started and stopped from Python.

    Defaults to the embedded layout (:func:`.config.local_tiled_config`): a
    SQLite catalog, DuckDB tables and a file store under ``data_dir``, which
    persist across restarts. Pass ``config_file`` instead to serve any Tiled
    configuration (e.g. the PostgreSQL one). Binds 127.0.0.1 unless the
    configuration says otherwise; ``port=0`` picks a free port.

    >>> with TiledService("/tmp/tiled", readable=["/tmp/tiled_data"]) as svc:
    ...     client = svc.client()

    ``start()`` returns once the server answers; ``stop()`` sends SIGTERM to
    the PID it started and waits (SIGKILL after ``stop_timeout``); ``kill()``
    simulates a crash.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        port: int = 0,
        readable: Iterable[str | Path] = (),
        config_file: str | Path | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        stop_timeout: float = 15.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.config_file = Path(config_file).resolve() if config_file else None
        self.layout = LocalLayout(
            Path(data_dir).resolve() if data_dir else default_data_dir()
        )
        self.api_key = check_api_key(api_key)
        self.port = port
        self.readable = [Path(p).resolve() for p in readable]
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_path = Path(log_path) if log_path else self.layout.log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._uri: str | None = None
        self._log: IO[bytes] | None = None

    # -- properties -------------------------------------------------------
    @property
    def uri(self) -> str:
        """API URI of the running server, e.g. ``http://127.0.0.1:8123/api/v1``."""
        if self._uri is None:
            raise TiledServiceError("the service is not running: call start()")
        return self._uri

    @property
    def pid(self) -> int:
        """PID of the server process."""
        if self._process is None:
            raise TiledServiceError("the service is not running: call start()")
        return self._process.pid

    @property
    def data_dir(self) -> Path:
        """Data directory of the embedded layout."""
        return self.layout.data_dir

    @property
    def external_dir(self) -> Path:
        """A directory the server can read external files from (embedded layout)."""
        return self.layout.external_dir

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    # -- life cycle ---------------------------------------------------------
    def command(self, ready_file: Path) -> list[str]:
        """The command line that runs the server (``panda-flyscan tiled serve``)."""
        cmd = [sys.executable, "-m", "panda_flyscan", "tiled", "serve"]
        cmd += ["--port", str(self.port), "--ready-file", str(ready_file)]
        if self.config_file is not None:
            cmd += ["--config", str(self.config_file)]
        else:
            cmd += ["--data-dir", str(self.layout.data_dir)]
            for directory in self.readable:
                cmd += ["--readable", str(directory)]
        return cmd

    def start(self) -> TiledService:
        """Start the server and return once it answers (idempotent)."""
        if self.running:
            return self
        if self.config_file is None:
            self.layout.create()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        ready_dir = Path(tempfile.mkdtemp(prefix="panda-tiled-"))
        ready_file = ready_dir / "ready.json"
        env = dict(os.environ)
        env[SERVER_API_KEY_ENV] = self.api_key  # not on the command line (ps)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self._process = subprocess.Popen(
            self.command(ready_file),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + self.startup_timeout
            while not ready_file.exists():
                if self._process.poll() is not None:
                    raise TiledServiceError(
                        f"The Tiled server exited with status "
                        f"{self._process.returncode} while starting:\n"
                        f"{self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise TiledServiceError(
                        f"The Tiled server did not answer within "
                        f"{self.startup_timeout:.0f} s:\n{self.log_tail()}"
                    )
                time.sleep(0.05)
            uri = str(json.loads(ready_file.read_text())["uri"])
            self._uri = uri
            # Keep the port across restarts: writers and clients holding the
            # URI keep working when the service comes back.
            self.port = httpx.URL(uri).port or self.port
        except BaseException:
            self.stop()
            raise
        finally:
            ready_file.unlink(missing_ok=True)
            ready_dir.rmdir()
        return self

    def stop(self) -> None:
        """Stop the server: SIGTERM, wait, SIGKILL if it does not exit."""
        process, self._process, self._uri = self._process, None, None
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would (for outage tests)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None
        self._uri = None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def client(self, **kwargs: Any) -> Container:
        """A Tiled client of this server's root, authenticated with its key."""
        from tiled.client import from_uri

        return from_uri(self.uri, api_key=self.api_key, **kwargs)  # type: ignore[return-value]

    def __enter__(self) -> TiledService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self._uri if self.running else "stopped"
        return f"<TiledService {state} data_dir={str(self.layout.data_dir)!r}>"


def serve_local(
    data_dir: str | Path | None = None,
    *,
    api_key: str = DEFAULT_API_KEY,
    host: str = DEFAULT_HOST,
    port: int = 8000,
    readable: Iterable[str | Path] = (),
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the embedded local service in the foreground (see :func:`run_server`)."""
    layout = LocalLayout(Path(data_dir).resolve() if data_dir else default_data_dir())
    layout.create()
    config = local_tiled_config(
        layout.data_dir,
        api_key=check_api_key(api_key),
        readable=readable,
        host=host,
        port=port,
    )
    run_server(
        config, host=host, port=port, on_ready=on_ready, data_dir_lock=layout.data_dir
    )
