"""A local NATS server with JetStream, for a laptop, a test or a demo.

Debian's ``nats-server`` (one static binary) on 127.0.0.1, JetStream file
storage under ``store_dir`` (documents survive a server restart), run under
:class:`panda_flyscan.processes.ManagedProcess` like the other servers.
"""

from __future__ import annotations

import re
from pathlib import Path

from .._loopback_server import LoopbackServer
from .errors import BusServerError

__all__ = ["NatsServer"]


class NatsServer(LoopbackServer):
    """``nats-server -js`` on 127.0.0.1.

    Args:
        store_dir: JetStream's storage (kept across restarts) and the log.
        port: Client port (0: a free one).
        user, password: Required of clients if given; or ``token``. They are
            on the server's command line: local development only; a site
            configures accounts in the server's configuration file.
        startup_timeout: Seconds to wait for it to accept clients.
    """

    binary = "nats-server"
    #: What nats-server logs once it accepts clients.
    ready = re.compile(r".*Server is ready.*")
    error = BusServerError
    install_hint = (
        "install Debian's nats-server (scripts/setup.sh does, as root) or the "
        "release binary"
    )

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
        super().__init__(store_dir, port=port, startup_timeout=startup_timeout)
        self.user, self.password, self.token = user, password, token

    @property
    def store_dir(self) -> Path:
        return self.work_dir

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT`` (credentials are passed separately)."""
        return f"nats://127.0.0.1:{self.port}"

    def argv(self, binary: str) -> list[str]:
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
        return argv
