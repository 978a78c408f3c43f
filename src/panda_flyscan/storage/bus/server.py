"""A local NATS server with JetStream, for a laptop, a test or a demo.

Debian's ``nats-server`` (one static binary) on 127.0.0.1, JetStream file
storage under ``store_dir`` (documents survive a server restart), run under
:class:`panda_flyscan.processes.ManagedProcess` like the other servers.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from types import TracebackType

from ...processes import ManagedProcess, ProcessError
from ..cluster import free_loopback_port
from .errors import BusServerError

__all__ = ["NatsServer"]

#: What nats-server logs once it accepts clients.
NATS_READY = re.compile(r".*Server is ready.*")


class NatsServer:
    """``nats-server -js`` on 127.0.0.1.

    Args:
        store_dir: JetStream's storage (kept across restarts) and the log.
        port: Client port (0: a free one).
        user, password: Required of clients if given; or ``token``. They are
            on the server's command line: local development only; a site
            configures accounts in the server's configuration file.
        startup_timeout: Seconds to wait for it to accept clients.
    """

    def __init__(
        self,
        store_dir: str | Path,
        *,
        port: int = 0,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        if token and user:
            raise ValueError("nats-server takes a user/password or a token, not both")
        self.store_dir = Path(store_dir)
        self.port = port or free_loopback_port()
        self.user, self.password, self.token = user, password, token
        self.startup_timeout = startup_timeout
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT`` (credentials are passed separately)."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path:
        return self.store_dir / "nats-server.log"

    def start(self) -> NatsServer:
        """Start it; returns once it accepts clients."""
        binary = shutil.which("nats-server")
        if binary is None:
            raise BusServerError(
                "nats-server not found: install Debian's nats-server "
                "(scripts/setup.sh does, as root) or the release binary"
            )
        self.store_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            *("-a", "127.0.0.1", "-p", str(self.port)),
            *("-js", "-sd", str(self.store_dir)),
            # No HTTP monitoring port, no cluster port: clients only.
            *("--server_name", f"panda-flyscan-{self.port}"),
        ]
        if self.user:
            argv += ["--user", self.user, "--pass", self.password or ""]
        if self.token:
            argv += ["--auth", self.token]
        self._process = ManagedProcess(
            "nats-server", argv, self.log_path, dict(os.environ), ready=NATS_READY
        )
        try:
            self._process.start()
            self._process.wait_ready(self.startup_timeout)
        except ProcessError as err:
            self.stop()
            raise BusServerError(
                f"nats-server did not start on 127.0.0.1:{self.port}: {err}"
            ) from err
        return self

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) by PID; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            process.stop(5.0)

    def kill(self) -> None:
        """SIGKILL it, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
