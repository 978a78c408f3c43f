"""A throw-away PostgreSQL cluster from the Debian binaries, for the tests.

Started with ``initdb``/``postgres`` from ``/usr/lib/postgresql/*/bin`` on a
free loopback port, trust authentication, fsync off. PostgreSQL refuses to
run as root, so as root the server runs as ``nobody`` (``Popen(user=...)``
switches user before exec, so the PID we hold is the postmaster's own).
:meth:`PostgresCluster.stop` ends that PID and removes the cluster.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def find_bin_dir() -> Path | None:
    """Directory of ``initdb`` and ``postgres``, or None if not installed."""
    if env := os.environ.get("PANDA_PG_BIN"):
        return Path(env)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for candidate in reversed(candidates):
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).resolve().parent / "postgres").exists():
        return Path(initdb).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresCluster:
    """A running cluster; superuser ``postgres``, no password."""

    bin_dir: Path
    base: Path
    port: int
    process: subprocess.Popen[bytes]

    def uri(self, database: str) -> str:
        """Connection URI of ``database``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql, return its output."""
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def create_database(self, name: str) -> str:
        """Create a database, return its URI."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def stop(self) -> None:
        """Fast shutdown of the postmaster we started (by PID), then clean up."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)  # "fast" shutdown
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Start a cluster; stop it (by PID) and delete it on exit, even on failure."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries not found")
    # /tmp itself, not pytest's 0700 tmp dirs: the server user must reach it.
    base = Path(tempfile.mkdtemp(prefix="panda-pg-"))
    data, sockets, log = base / "data", base / "sock", base / "postgres.log"
    sockets.mkdir()
    user: int | None = None
    group: int | None = None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        user, group = nobody.pw_uid, nobody.pw_gid
        for path in (base, sockets):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    process: subprocess.Popen[bytes] | None = None
    port = 0
    try:
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            capture_output=True,
            check=True,
            timeout=120,
            cwd=base,
            user=user,
            group=group,
        )
        for _ in range(5):  # the chosen port may be taken meanwhile: retry
            port = _free_port()
            with open(log, "ab") as log_file:
                process = subprocess.Popen(
                    [
                        str(bin_dir / "postgres"),
                        "-D",
                        str(data),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "-k",
                        str(sockets),
                        "-F",
                        "-c",
                        "max_connections=100",
                    ],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=base,
                    user=user,
                    group=group,
                )
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                ready = subprocess.run(
                    [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                    capture_output=True,
                )
                if ready.returncode == 0:
                    break
                time.sleep(0.1)
            if process.poll() is None:
                break
            process = None
        if process is None:
            raise RuntimeError(f"postgres did not start:\n{log.read_text()[-2000:]}")
        cluster = PostgresCluster(bin_dir, base, port, process)
    except BaseException:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def tiled_cluster_config(base: Path, api_key: str) -> Iterator[tuple[Path, Path]]:
    """A Tiled configuration on a fresh PostgreSQL (catalog and storage
    databases) and Redis under ``base``, and the directory the PandA writes
    to; skips the test where PostgreSQL or redis-server is missing."""
    import pytest

    from panda_flyscan.storage import RedisServer, render_postgres_config

    if find_bin_dir() is None:
        pytest.skip("PostgreSQL binaries not found (install Debian's postgresql)")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not found (install Debian's redis-server)")
    panda_data = base / "panda-data"
    panda_data.mkdir()
    with postgres_cluster() as pg, RedisServer(base / "redis") as redis:
        config = base / "tiled-cluster.yml"
        config.write_text(
            render_postgres_config(
                catalog_uri=pg.create_database("catalog"),
                storage_uri=pg.create_database("storage"),
                data_dir=str(base / "tiled-data"),
                api_key=api_key,
                readable=[str(panda_data)],
                streaming_cache_uri=redis.uri,
            )
        )
        yield config, panda_data
