"""A server binary run on 127.0.0.1 under :class:`ManagedProcess`: the base
of :class:`.cluster.RedisServer` and :class:`.bus.NatsServer`, which differ
only in their binary, command line and readiness line."""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from ..processes import ManagedProcess, ProcessError

__all__ = ["LoopbackServer", "free_loopback_port"]


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackServer:
    """One server process on 127.0.0.1, in ``work_dir``, stopped by PID.

    Subclasses name the ``binary`` (found on PATH), the ``ready`` line it
    logs once it accepts clients, the ``error`` raised when it cannot start,
    and build its command line in :meth:`argv`.
    """

    binary: ClassVar[str]
    #: The process's name in logs and errors (default: the binary's).
    name: ClassVar[str] = ""
    ready: ClassVar[re.Pattern[str]]
    error: ClassVar[type[Exception]] = RuntimeError
    #: How to get the binary, for the error when it is not on PATH.
    install_hint: ClassVar[str] = ""

    def __init__(
        self, work_dir: str | Path, *, port: int = 0, startup_timeout: float = 20.0
    ) -> None:
        self.work_dir = Path(work_dir)
        self.port = port or free_loopback_port()
        self.startup_timeout = startup_timeout
        self._process: ManagedProcess | None = None

    def argv(self, binary: str) -> list[str]:
        """The command line that runs the server (``binary``: its full path)."""
        raise NotImplementedError

    @property
    def process(self) -> ManagedProcess | None:
        """The running process (None when stopped): what a supervisor watches."""
        return self._process

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path:
        return self.work_dir / f"{self.name or self.binary}.log"

    def start(self) -> Self:
        """Start it; returns once it accepts clients."""
        binary = shutil.which(self.binary)
        if binary is None:
            raise self.error(f"{self.binary} not found: {self.install_hint}")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._process = ManagedProcess(
            self.name or self.binary,
            self.argv(binary),
            self.log_path,
            dict(os.environ),
            ready=self.ready,
        )
        try:
            self._process.start()
            self._process.wait_ready(self.startup_timeout)
        except ProcessError as err:
            self.stop()
            raise self.error(
                f"{self.binary} did not start on 127.0.0.1:{self.port}: {err}"
            ) from err
        return self

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) by PID; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            process.stop(5.0)

    def kill(self) -> None:
        """SIGKILL it, as a crash would."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
