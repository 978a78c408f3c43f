"""Tiled's private API: serializing its DuckDB connection in a server process.

Candidate upstream issue: Tiled 0.2.20 serves a DuckDB table store through a
``StaticPool``, one ADBC connection shared, unlocked, by every worker thread.
Nothing public lets a deployment make that sharing safe (a lock in
``SQLStorage``, or a pool that serializes DuckDB), so this module wraps
``tiled.storage.SQLStorage.connect`` at class level and relies on Tiled's use
of it (always ``with closing(storage.connect())``).
"""

from __future__ import annotations

import threading
from typing import Any

from tiled.storage import SQLStorage

from . import require

require(
    "tiled",
    "~=0.2.20",
    uses="tiled.storage.SQLStorage.connect (its StaticPool for DuckDB, patched)",
)

__all__ = ["serialize_duckdb_access"]


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

    Would be unnecessary if Tiled locked (or did not share) its DuckDB
    connection itself, e.g. a lock in ``SQLStorage.connect`` for dialects
    served through a ``StaticPool``.
    """
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
