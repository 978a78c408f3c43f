"""The local Tiled service, managed from Python: :class:`TiledService`.

It runs ``panda-flyscan tiled serve`` (:mod:`.runner`) in a subprocess under
:class:`panda_flyscan.processes.ManagedProcess`, waits until the server
answers and stops it by PID: a context manager for notebooks, tests and
scripts. The subprocess keeps the server's work off the RunEngine's GIL.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ..processes import ManagedProcess, ProcessError, log_tail
from .config import (
    DEFAULT_API_KEY,
    SERVER_API_KEY_ENV,
    LocalLayout,
    check_api_key,
    default_data_dir,
)
from .errors import TiledServiceError
from .runner import STARTUP_TIMEOUT

if TYPE_CHECKING:
    from tiled.client.container import Container

__all__ = ["READY_LINE", "TiledService"]

#: The line ``panda-flyscan tiled serve`` prints on stdout once the server
#: answers: its API URI (its logs go to stderr, so no other line is bare).
READY_LINE = re.compile(r"https?://\S+/api/v1")


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
        self._process: ManagedProcess | None = None
        self._uri: str | None = None

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
        pid = None if self._process is None else self._process.pid
        if pid is None:
            raise TiledServiceError("the service is not running: call start()")
        return pid

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
        return self._process is not None and self._process.running

    # -- life cycle ---------------------------------------------------------
    def command(self) -> list[str]:
        """The command line that runs the server (``panda-flyscan tiled serve``)."""
        cmd = [sys.executable, "-m", "panda_flyscan", "tiled", "serve"]
        cmd += ["--port", str(self.port)]
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
        env = dict(os.environ)
        env[SERVER_API_KEY_ENV] = self.api_key  # not on the command line (ps)
        # A new supervisor per start: each one watches one process's output.
        self._process = ManagedProcess(
            "tiled", self.command(), self.log_path, env, ready=READY_LINE
        )
        try:
            self._process.start()
            uri = self._process.wait_ready(self.startup_timeout)
        except ProcessError as err:
            self.stop()
            raise TiledServiceError(f"The Tiled server did not start: {err}") from err
        except BaseException:
            self.stop()
            raise
        self._uri = uri
        # Keep the port across restarts: writers and clients holding the URI
        # keep working when the service comes back.
        self.port = httpx.URL(uri).port or self.port
        return self

    def stop(self) -> None:
        """Stop the server: SIGTERM, wait, SIGKILL if it does not exit."""
        process, self._process, self._uri = self._process, None, None
        if process is not None:
            process.stop(self.stop_timeout)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would (for outage tests)."""
        process, self._process, self._uri = self._process, None, None
        if process is not None:
            process.kill()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log."""
        return log_tail(self.log_path, lines)

    def client(self, **kwargs: Any) -> Container:
        """A Tiled client of this server's root, authenticated with its key."""
        from tiled.client import from_uri

        return from_uri(self.uri, api_key=self.api_key, **kwargs)  # type: ignore[return-value]

    def __enter__(self) -> TiledService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self._uri if self.running else "stopped"
        return f"<TiledService {state} data_dir={str(self.layout.data_dir)!r}>"
