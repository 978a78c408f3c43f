"""Tiled as a cluster: several server processes on one PostgreSQL catalog and
storage database, sharing a Redis streaming cache for live updates.

Tiled keeps no state of its own in a server process beyond caches: with the
catalog, the table storage and the streaming cache in shared services, any
number of processes (on any hosts) serve the same data, and a websocket
subscription on one sees what a writer did through another (the Redis
streaming cache carries the updates). :class:`TiledCluster` starts N
:class:`~.service.TiledService` processes on one configuration
(:func:`~.config.render_postgres_config` with ``streaming_cache_uri``);
:class:`RedisServer` runs Debian's ``redis-server`` on loopback for a laptop
or a test. A site runs the same configuration under its process manager, one
server per core or host behind a load balancer (docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from ..processes import ManagedProcess, ProcessError
from .errors import TiledServiceError
from .service import TiledService

__all__ = ["RedisServer", "TiledCluster"]

#: The line redis-server logs once it accepts connections (after its PID,
#: role and time).
REDIS_READY = re.compile(r".* Ready to accept connections.*")


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Debian's ``redis-server`` on 127.0.0.1, without persistence.

    Args:
        work_dir: Its working directory and log.
        port: Its port (0: a free one).
        password: Required of clients if given (``requirepass``); it is passed
            on the command line, so use it on single-user hosts only.
        startup_timeout: Seconds to wait for it to accept connections.
    """

    def __init__(
        self,
        work_dir: str | Path,
        *,
        port: int = 0,
        password: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.port = port or free_loopback_port()
        self.password = password
        self.startup_timeout = startup_timeout
        self._process: ManagedProcess | None = None

    @property
    def uri(self) -> str:
        """``redis://127.0.0.1:PORT`` (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise TiledServiceError(
                "redis-server not found: install Debian's redis-server "
                "(scripts/setup.sh does, as root)"
            )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            *("--bind", "127.0.0.1", "--port", str(self.port)),
            *("--protected-mode", "yes", "--save", "", "--appendonly", "no"),
            *("--dir", str(self.work_dir)),
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        self._process = ManagedProcess(
            "redis",
            argv,
            self.work_dir / "redis.log",
            dict(os.environ),
            ready=REDIS_READY,
        )
        try:
            self._process.start()
            self._process.wait_ready(self.startup_timeout)
        except ProcessError as err:
            self.stop()
            raise TiledServiceError(
                f"Redis did not start on 127.0.0.1:{self.port}: {err}"
            ) from err
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop(5.0)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class TiledCluster:
    """``servers`` Tiled processes serving one configuration file (PostgreSQL
    catalog and storage, a Redis streaming cache), each on its own port.

    They are started one after another (the first creates the catalog's
    tables); :attr:`services` are the processes, :attr:`uris` their API URIs.
    """

    def __init__(
        self,
        config_file: str | Path,
        *,
        servers: int = 2,
        api_key: str,
        log_dir: str | Path,
        ports: Sequence[int] = (),
    ) -> None:
        if servers < 1:
            raise ValueError(f"a cluster has at least one server, got {servers}")
        log_dir = Path(log_dir)
        self.services = [
            TiledService(
                config_file=config_file,
                api_key=api_key,
                port=ports[i] if i < len(ports) else 0,
                log_path=log_dir / f"tiled-{i}.log",
            )
            for i in range(servers)
        ]

    @property
    def uris(self) -> list[str]:
        return [service.uri for service in self.services]

    def start(self) -> TiledCluster:
        try:
            for service in self.services:
                service.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()

    def __enter__(self) -> TiledCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[TiledService]:
        return iter(self.services)
