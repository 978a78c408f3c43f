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
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from ._loopback_server import LoopbackServer, free_loopback_port
from .errors import TiledServiceError
from .service import TiledService

__all__ = ["RedisServer", "TiledCluster", "free_loopback_port"]


class RedisServer(LoopbackServer):
    """Debian's ``redis-server`` on 127.0.0.1, without persistence.

    Args:
        work_dir: Its working directory and log.
        port: Its port (0: a free one).
        password: Required of clients if given (``requirepass``); it is passed
            on the command line, so use it on single-user hosts only.
        startup_timeout: Seconds to wait for it to accept connections.
    """

    binary = "redis-server"
    name = "redis"
    #: The line redis-server logs once it accepts connections (after its
    #: PID, role and time).
    ready = re.compile(r".* Ready to accept connections.*")
    error = TiledServiceError
    install_hint = "install Debian's redis-server (scripts/setup.sh does, as root)"

    def __init__(
        self,
        work_dir: str | Path,
        *,
        port: int = 0,
        password: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        super().__init__(work_dir, port=port, startup_timeout=startup_timeout)
        self.password = password

    @property
    def uri(self) -> str:
        """``redis://127.0.0.1:PORT`` (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    def argv(self, binary: str) -> list[str]:
        argv = [
            binary,
            *("--bind", "127.0.0.1", "--port", str(self.port)),
            *("--protected-mode", "yes", "--save", "", "--appendonly", "no"),
            *("--dir", str(self.work_dir)),
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv


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
