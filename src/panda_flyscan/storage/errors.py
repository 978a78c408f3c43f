"""Errors raised by the storage layer.

Each one says what went wrong *and* how to fix it: they are raised at set-up
time (connecting, subscribing, starting a server), never in the middle of a
run.
"""

from __future__ import annotations


class StorageError(RuntimeError):
    """Base class of every error raised by :mod:`panda_flyscan.storage`."""


class TiledUnreachableError(StorageError):
    """No Tiled server answers at the given URI."""


class TiledAuthenticationError(StorageError):
    """The server rejected the API key (HTTP 401)."""


class TiledPermissionError(StorageError):
    """The API key is valid but may not write what the TiledWriter writes."""


class TiledServerConfigError(StorageError):
    """The server accepts writes but is configured so that a run cannot be stored."""


class ExternalDataUnreadableError(StorageError):
    """The server cannot read files in a directory where detectors write."""


class TiledServiceError(StorageError):
    """The local Tiled service could not be started."""


class ReplayError(StorageError):
    """A journal could not be replayed into Tiled."""
